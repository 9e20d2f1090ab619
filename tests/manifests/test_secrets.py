"""Per-cluster secrets (API keys, the job Redis password): generated git-ignored, rendered only where they
belong (the API keys nowhere: the cluster gets their salted hashes), never into the committed tree."""

from __future__ import annotations

import re
import stat
import subprocess
import urllib.parse
from pathlib import Path

import pytest

from harness.acceptance.targets.kube import API_KEY_CLIENTS
from harness.checks.manifests.overlays import OVERLAYS
from harness.checks.manifests.schemas import SchemaCatalog
from harness.checks.manifests.validate import check_objects
from harness.errors import HarnessError
from harness.provisioning.paths import REPO_ROOT
from harness.provisioning.render import render
from harness.provisioning.secrets import (
    API_KEY_IDS,
    API_KEY_NAMES,
    HASHES_FILE,
    generate_api_keys,
    generate_redis_password,
    generate_secrets,
    read_api_keys,
    read_key_hashes,
    read_redis_password,
    render_with_keys,
    uses_api_keys,
    uses_secrets,
)
from service.authz import server as authz
from tests.manifests.helpers import the


def hashes(objects: list[dict]) -> str:
    """The hashes file of the authorizer's Secret in a render."""
    return the(objects, "Secret", "ocr-api-key-hashes")["stringData"]["hashes.jsonl"]


def admitted(text: str, keys: dict[str, str]) -> dict[str, tuple[str, str] | None]:
    """What the authorizer makes of each key with this hashes file: (key id, tenant), or None if refused."""
    table = authz.KeyTable(authz.parse_hashes(text))
    found = {name: table.lookup(key) for name, key in keys.items()}
    return {name: (entry.key_id, entry.tenant) if entry else None for name, entry in found.items()}


def redis_password(objects: list[dict]) -> str:
    return the(objects, "Secret", "ocr-redis-auth")["stringData"]["password"]


def test_generated_keys_are_private_random_and_kept(tmp_path: Path) -> None:
    path = generate_api_keys(tmp_path / "secrets")
    keys = read_api_keys(path)
    assert set(keys) == set(API_KEY_NAMES)
    assert len(set(keys.values())) == 2 and all(len(v) >= 40 for v in keys.values())
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_api_keys(generate_api_keys(tmp_path / "secrets")) == keys  # kept
    assert read_api_keys(generate_api_keys(tmp_path / "secrets", force=True)) != keys  # replaced


def test_the_generated_redis_password_is_private_url_safe_and_kept(tmp_path: Path) -> None:
    path = generate_redis_password(tmp_path / "secrets")
    password = read_redis_password(path)
    assert len(password) >= 40 and re.fullmatch(r"[A-Za-z0-9_-]+", password)
    assert urllib.parse.quote(password, safe="") == password  # goes into redis://:PASSWORD@host unquoted
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_redis_password(generate_redis_password(tmp_path / "secrets")) == password
    assert read_redis_password(generate_redis_password(tmp_path / "secrets", force=True)) != password


def test_generate_secrets_makes_every_set_and_keeps_what_exists(tmp_path: Path) -> None:
    keys_path = generate_api_keys(tmp_path)
    keys = read_api_keys(keys_path)
    hashes_before = (tmp_path / HASHES_FILE).read_text()
    paths = generate_secrets(tmp_path)
    assert sorted(p.name for p in paths) == ["api-key-hashes.yaml", "api-keys.env", "redis-auth.env"]
    assert read_api_keys(keys_path) == keys
    assert (tmp_path / HASHES_FILE).read_text() == hashes_before  # same keys: same salts, no Secret churn
    assert read_redis_password(tmp_path / "redis-auth.env")


def test_the_hashes_admit_each_key_as_its_client_and_hold_no_key(tmp_path: Path) -> None:
    keys = read_api_keys(generate_api_keys(tmp_path))
    path = tmp_path / HASHES_FILE
    text = read_key_hashes(path)
    assert admitted(text, keys) == {name: API_KEY_IDS[name] for name in API_KEY_NAMES}
    # The clients the acceptance harness sends each key for are the tenants the authorizer names.
    assert {client: API_KEY_IDS[name][1] for client, name in API_KEY_CLIENTS.items()} == {c: c for c in API_KEY_CLIENTS}
    assert not [key for key in keys.values() if key in path.read_text()]
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_rotating_one_key_keeps_the_other(tmp_path: Path) -> None:
    before = read_api_keys(generate_api_keys(tmp_path))
    after = read_api_keys(generate_api_keys(tmp_path, rotate="secondary"))
    assert after["OCR_API_KEY_PRIMARY"] == before["OCR_API_KEY_PRIMARY"]
    assert after["OCR_API_KEY_SECONDARY"] != before["OCR_API_KEY_SECONDARY"]
    text = read_key_hashes(tmp_path / HASHES_FILE)
    assert admitted(text, after) == {name: API_KEY_IDS[name] for name in API_KEY_NAMES}
    assert admitted(text, {"old": before["OCR_API_KEY_SECONDARY"]}) == {"old": None}
    with pytest.raises(HarnessError, match="no API key 'tertiary'"):
        generate_api_keys(tmp_path, rotate="tertiary")


def test_hashes_out_of_step_with_the_keys_are_rewritten(tmp_path: Path) -> None:
    keys = read_api_keys(generate_api_keys(tmp_path))
    (tmp_path / HASHES_FILE).write_text("not: a secret\n")
    render_dir = tmp_path  # write_key_hashes runs for every cluster render
    from harness.provisioning.secrets import write_key_hashes

    write_key_hashes(render_dir)
    assert admitted(read_key_hashes(tmp_path / HASHES_FILE), keys) == {n: API_KEY_IDS[n] for n in API_KEY_NAMES}


def test_an_incomplete_keys_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "api-keys.env").write_text("OCR_API_KEY_PRIMARY=abc\n")
    with pytest.raises(HarnessError, match="lacks OCR_API_KEY_SECONDARY"):
        read_api_keys(tmp_path / "api-keys.env")
    with pytest.raises(HarnessError, match="harness manifests keys"):
        read_api_keys(tmp_path / "absent.env")


def test_the_committed_tree_renders_placeholders() -> None:
    objects = render("milestone2")
    # No key at all: an overlay applied as committed admits nobody, and the deploy's guard sees the mark.
    text = hashes(objects)
    assert authz.parse_hashes(text) == [] and "placeholder-" in text
    assert "set-by-replacement" not in str(objects)  # every slot the replacements fill is filled
    assert redis_password(render("milestone3")).startswith("placeholder-")


def test_a_cluster_render_carries_hashes_and_never_a_key(manifests_copy: Path, catalog: SchemaCatalog) -> None:
    generate_secrets(manifests_copy / "secrets")
    keys = read_api_keys(manifests_copy / "secrets" / "api-keys.env")
    password = read_redis_password(manifests_copy / "secrets" / "redis-auth.env")
    objects = render_with_keys("full", manifests_dir=manifests_copy)
    # The authorizer's Secret admits each key as the client the acceptance harness sends it for.
    assert admitted(hashes(objects), keys) == {name: API_KEY_IDS[name] for name in API_KEY_NAMES}
    assert hashes(objects) == read_key_hashes(manifests_copy / "secrets" / HASHES_FILE)
    assert redis_password(objects) == password
    # The Redis password source ConfigMap is local config: a replacement source, never applied.
    assert not [o for o in objects if o["kind"] == "ConfigMap" and o["metadata"]["name"] == "ocr-redis-auth-source"]
    text = "\n".join(str(o) for o in objects)
    # No key anywhere in the render, nor a part of one; the password once, in its Secret.
    for key in keys.values():
        assert key not in text and key[:12] not in text and key[-12:] not in text
    assert text.count(password) == 1
    assert "placeholder-" not in text and "set-by-replacement" not in text
    assert [str(f) for f in check_objects(objects, catalog, OVERLAYS["full"])] == []


def test_an_overlay_without_jobs_needs_no_redis_password(manifests_copy: Path) -> None:
    keys = read_api_keys(generate_api_keys(manifests_copy / "secrets"))
    objects = render_with_keys("milestone2", manifests_dir=manifests_copy)
    assert [o["metadata"]["name"] for o in objects if o["kind"] == "Secret"] == ["ocr-api-key-hashes"]
    assert admitted(hashes(objects), keys) == {name: API_KEY_IDS[name] for name in API_KEY_NAMES}
    assert not (manifests_copy / "secrets" / "redis-auth.env").exists()


def test_a_jobs_render_without_a_redis_password_says_how_to_make_it(manifests_copy: Path) -> None:
    generate_api_keys(manifests_copy / "secrets")
    with pytest.raises(HarnessError, match=r"no job Redis password .*harness manifests keys"):
        render_with_keys("milestone3", manifests_dir=manifests_copy)


def test_overlays_without_the_mesh_need_no_keys(manifests_copy: Path) -> None:
    assert not uses_api_keys("milestone1", manifests_copy / "overlays")
    assert uses_api_keys("milestone3", manifests_copy / "overlays")
    assert not uses_secrets("scale-to-zero", manifests_copy / "overlays")
    objects = render_with_keys("scale-to-zero", manifests_dir=manifests_copy)
    assert not (manifests_copy / "secrets").exists()
    assert the(objects, "InferenceService", "ocr")


def test_a_cluster_render_without_keys_says_how_to_make_them(manifests_copy: Path) -> None:
    with pytest.raises(HarnessError, match="harness manifests keys"):
        render_with_keys("milestone2", manifests_dir=manifests_copy)


def test_generated_files_are_git_ignored() -> None:
    paths = [
        "manifests/secrets/api-keys.env",
        "manifests/secrets/api-key-hashes.yaml",
        "manifests/secrets/redis-auth.env",
        "manifests/secrets/kustomization.yaml",
    ]
    done = subprocess.run(["git", "check-ignore", *paths], cwd=REPO_ROOT, capture_output=True, text=True, check=False)
    if done.returncode == 128:
        pytest.skip(f"not a git work tree: {done.stderr.strip()}")
    assert done.stdout.split() == paths
