"""The harness writes the authorizer's hashes file to the vectors both programs are tested against."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from harness.provisioning import keyhash

VECTORS = json.loads((Path(__file__).parents[1] / "vectors" / "api-key-hashes.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("vector", VECTORS, ids=[v["key_id"] for v in VECTORS])
def test_a_line_from_a_given_salt_is_the_vectors_line(vector: dict[str, str]) -> None:
    line = keyhash.hash_line(vector["key_id"], vector["tenant"], vector["key"], salt=bytes.fromhex(vector["salt"]))
    assert line == vector["line"]


def test_the_vectors_admit_exactly_their_keys() -> None:
    text = "# a comment\n\n" + "\n".join(v["line"] for v in VECTORS) + "\n"
    keys = {v["key"]: (v["key_id"], v["tenant"]) for v in VECTORS}
    assert keyhash.admits_exactly(text, keys)
    assert not keyhash.admits_exactly(text, {**keys, "one more": ("extra", "team-a")})
    wrong_tenant = {**keys, VECTORS[0]["key"]: (VECTORS[0]["key_id"], "team-z")}
    assert not keyhash.admits_exactly(text, wrong_tenant)
    assert not keyhash.admits_exactly("not json\n", keys)


def test_a_fresh_salt_is_16_bytes_and_differs_each_time() -> None:
    first, second = (json.loads(keyhash.hash_line("primary", "team-a", "k")) for _ in range(2))
    assert len(bytes.fromhex(first["salt"])) == 16 and first["salt"] != second["salt"]
