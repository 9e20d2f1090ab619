"""An ONNX file's metadata (``metadata_props``), read without loading the model.

Loading a model into an onnxruntime session parses and optimizes its whole graph; a start-up check that only
asks what the file's metadata says (does the recogniser carry its character list?) need not pay that. The
file is a protobuf ``ModelProto``: this walks its top-level fields, skips each one it does not need by its
length (the graph is most of the file and is never read), and decodes the ``metadata_props`` entries
(``StringStringEntryProto``: key 1, value 2).
"""

from __future__ import annotations

import mmap
from pathlib import Path

METADATA_PROPS = 14  # ModelProto.metadata_props
_VARINT, _I64, _LEN, _I32 = 0, 1, 2, 5


class NotOnnx(ValueError):
    """The file is not a well-formed ONNX model (a truncated or foreign file)."""


def _varint(data: memoryview | bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        if pos >= len(data) or shift > 63:
            raise NotOnnx("a varint runs past the end of the file")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: memoryview | bytes, start: int, end: int) -> list[tuple[int, int, int, int]]:
    """(field number, wire type, value start, value end or the varint's value) of one message's fields."""
    out = []
    pos = start
    while pos < end:
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == _VARINT:
            value, pos = _varint(data, pos)
            out.append((number, wire, value, value))
        elif wire == _LEN:
            length, pos = _varint(data, pos)
            if pos + length > end:
                raise NotOnnx(f"field {number} runs past the end of its message")
            out.append((number, wire, pos, pos + length))
            pos += length
        elif wire in (_I64, _I32):
            pos += 8 if wire == _I64 else 4
        else:
            raise NotOnnx(f"field {number} has the unknown wire type {wire}")
    if pos != end:
        raise NotOnnx("the last field runs past the end of the file")
    return out


def metadata(path: Path) -> dict[str, str]:
    """The model's ``metadata_props`` as a dict (empty when it has none). NotOnnx for a file that does not
    parse as a protobuf message; OSError when it cannot be read."""
    with path.open("rb") as handle:
        size = path.stat().st_size
        if size == 0:
            raise NotOnnx(f"{path} is empty")
        with mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mapped:
            data = memoryview(mapped)
            try:
                props: dict[str, str] = {}
                for number, wire, start, end in _fields(data, 0, size):
                    if number != METADATA_PROPS or wire != _LEN:
                        continue
                    entry = {n: bytes(data[s:e]).decode("utf-8", "replace")
                             for n, w, s, e in _fields(data, start, end) if w == _LEN}  # fmt: skip
                    props[entry.get(1, "")] = entry.get(2, "")
                return props
            finally:
                data.release()
