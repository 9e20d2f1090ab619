"""YAML reading with libyaml when PyYAML has it (CRD files are megabytes; the pure-Python parser is slow)."""

from __future__ import annotations

from typing import Any

import yaml

_Loader: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def load_all(text: str) -> list[Any]:
    """Every document of a YAML stream (safe types only)."""
    return list(yaml.load_all(text, Loader=_Loader))


def load(text: str) -> Any:
    """One YAML document (safe types only)."""
    return yaml.load(text, Loader=_Loader)
