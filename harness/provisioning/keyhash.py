"""The authorizer's API-key hashes file, as the harness writes and checks it, without importing the service.

The format is a contract between two programs: one JSON object a line, ``{"key_id", "tenant", "alg":
"hmac-sha256", "salt": <hex, 16 bytes or more>, "hash": <hex HMAC-SHA256 of the key, keyed with the salt>}``,
``#`` lines and blank lines ignored. The authorizer (``service.authz``) reads it; ``harness manifests keys``
writes it. Both sides are tested against the same vectors (``tests/vectors/api-key-hashes.json``): a line
each writes from a given salt is the vector's line, and each admits the vector's key under its id and tenant.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

ALG = "hmac-sha256"
SALT_BYTES = 16


@dataclass(frozen=True)
class KeyHash:
    key_id: str
    tenant: str
    salt: bytes
    digest: bytes

    def admits(self, key: str) -> bool:
        return hmac.compare_digest(self.digest, hmac.new(self.salt, key.encode("utf-8"), hashlib.sha256).digest())


def hash_line(key_id: str, tenant: str, key: str, *, salt: bytes | None = None) -> str:
    """One line of the hashes file for a key (a fresh 16-byte salt unless one is given)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hmac.new(salt, key.encode("utf-8"), hashlib.sha256).hexdigest()
    entry = {"key_id": key_id, "tenant": tenant, "alg": ALG, "salt": salt.hex(), "hash": digest}
    return json.dumps(entry, separators=(",", ":"))


def read(text: str) -> list[KeyHash]:
    """The entries of a hashes file; ValueError for a line that is not one (the authorizer checks more)."""
    out = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        entry = json.loads(line)
        if not isinstance(entry, dict) or entry.get("alg", ALG) != ALG:
            raise ValueError("not an entry of the hashes file")
        out.append(KeyHash(str(entry["key_id"]), str(entry["tenant"]), bytes.fromhex(entry["salt"]),
                           bytes.fromhex(entry["hash"])))  # fmt: skip
    return out


def admits_exactly(text: str, keys: Mapping[str, tuple[str, str]]) -> bool:
    """Whether a hashes file admits exactly these keys (key -> (key_id, tenant)), each under its id and
    tenant, and nothing else."""
    try:
        entries = read(text)
    except (ValueError, KeyError, TypeError):
        return False
    if len(entries) != len(keys):
        return False
    return all(
        any(e.admits(key) and (e.key_id, e.tenant) == identity for e in entries) for key, identity in keys.items()
    )
