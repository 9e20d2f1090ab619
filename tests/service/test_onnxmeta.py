"""An ONNX file's metadata read without a session (``service.models.onnxmeta``), against onnxruntime's own
reading of the same files."""

from __future__ import annotations

from pathlib import Path

import onnxruntime as ort
import pytest

from service.models.layout import LayoutFiles
from service.models.ocr import ModelFiles
from service.models.onnxmeta import NotOnnx, metadata
from service.models.table import TableFiles


def _bundled() -> list[Path]:
    ocr = ModelFiles.bundled()
    return [ocr.det, ocr.rec, ocr.cls, LayoutFiles.bundled().model, TableFiles.bundled().model]


@pytest.mark.parametrize("path", _bundled(), ids=lambda p: p.name)
def test_the_metadata_is_what_onnxruntime_reads(path: Path) -> None:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    assert metadata(path) == dict(session.get_modelmeta().custom_metadata_map)


def test_the_recogniser_carries_its_character_list() -> None:
    assert len(metadata(ModelFiles.bundled().rec)["character"].splitlines()) > 1000


@pytest.mark.parametrize("cut", [0, 1, 100, 4096])
def test_a_truncated_or_empty_file_is_not_onnx(tmp_path: Path, cut: int) -> None:
    broken = tmp_path / "rec.onnx"
    broken.write_bytes(ModelFiles.bundled().rec.read_bytes()[: cut or 0])
    with pytest.raises(NotOnnx):
        metadata(broken)


def test_a_foreign_file_is_not_onnx(tmp_path: Path) -> None:
    foreign = tmp_path / "model.onnx"
    foreign.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 8)
    with pytest.raises(NotOnnx):
        metadata(foreign)
