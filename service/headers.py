"""What the service's programs read from HTTP headers: the tenant, and numbers (ASCII digits only).

``str.isdigit()`` is true for ``"²"``, ``"٣"`` and other Unicode digits; ``int()`` refuses some of them and
reads others as numbers no client meant, so a check with ``isdigit()`` followed by ``int()`` turns a hostile
header into a 500. Every number the service and the authorizer take from a header goes through here.
"""

from __future__ import annotations

import re

# X-Tenant-ID: what the API, the job admin command and the authorizer's key hashes all accept.
TENANT_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
DEFAULT_TENANT = "anonymous"
MAX_DIGITS = 18  # far past any length this service accepts, and short of anything costly to convert


def ascii_int(value: str | None) -> int | None:
    """The header's value as a non-negative integer, or None unless it is 1 to 18 ASCII digits (surrounding
    spaces and tabs allowed, as HTTP allows them around a field value)."""
    if value is None:
        return None
    text = value.strip(" \t")
    if not text or len(text) > MAX_DIGITS or not text.isascii() or not text.isdigit():
        return None
    return int(text)
