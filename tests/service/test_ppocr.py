"""The service's PP-OCR pipeline (``service.models.ppocr``) against rapidocr's, the reference it replaces.

Both read the same ONNX files with the same settings (the service's: detector limit "max" at 960, pipeline
bound 2,000, one thread). On pages, lines, a tiny image, a page over the bound, a wide strip, a blank image
and an upside-down page, with the line classifier off and on and recogniser batches of 1 and 6, they must
give the same lines: the same text, the same score, corners within a pixel. The service never imports
rapidocr; this test does, as the reference.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from PIL import Image, ImageDraw, ImageFont

from harness.provisioning import samples
from service.errors import ModelLoadError
from service.geometry import PIPELINE_MAX_SIDE
from service.models import ppocr
from service.models.ocr import ModelFiles, OcrModel
from service.models.onnx import session


def _strip() -> Image.Image:
    image = Image.new("RGB", (1800, 40), "white")
    text = "a long strip of text " * 6
    ImageDraw.Draw(image).text((5, 5), text, fill="black", font=ImageFont.load_default(size=24))
    return image


IMAGES = {
    "page": lambda: samples.document(3).image,
    "layout page": lambda: samples.layout_page(1),
    "over the bound": lambda: samples.text_page(3000, 2400, "RGB"),
    "one line": lambda: samples.words_image(2).image,
    "tiny": lambda: samples.text_line("Hi 7", font_size=12, margin=2).image,
    "wide strip": _strip,
    "blank": lambda: Image.new("RGB", (400, 300), "white"),
    "upside down": lambda: samples.document(7).image.rotate(180),
}


def reference(files: ModelFiles, *, angle_cls: bool, batch: int) -> Any:
    from rapidocr import RapidOCR

    return RapidOCR(
        params={
            "Global.log_level": "error",
            "Det.model_path": str(files.det),
            "Rec.model_path": str(files.rec),
            "Cls.model_path": str(files.cls),
            "Det.limit_type": "max",
            "Det.limit_side_len": 960,
            "Global.max_side_len": PIPELINE_MAX_SIDE,
            "Rec.rec_batch_num": batch,
            "Global.use_cls": angle_cls,
            "EngineConfig.onnxruntime.intra_op_num_threads": 1,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
    )


def lines_of(out: Any) -> list[tuple[np.ndarray, str, float]]:
    if out.boxes is None or out.txts is None or len(out.txts) == 0:
        return []
    return [
        (np.asarray(q, dtype=np.float32), str(t), float(s))
        for q, t, s in zip(out.boxes, out.txts, out.scores, strict=True)
    ]


@pytest.fixture(scope="module")
def files() -> ModelFiles:
    return ModelFiles.bundled()


@pytest.mark.parametrize(("angle_cls", "batch"), [(False, 1), (True, 6)])
def test_the_pipeline_reads_what_rapidocr_reads(files: ModelFiles, angle_cls: bool, batch: int) -> None:
    ours = OcrModel(files, threads=1, angle_cls=angle_cls, rec_batch_size=batch)
    ref = reference(files, angle_cls=angle_cls, batch=batch)
    read_some = 0
    for name, make in IMAGES.items():
        image = make()
        got = ours._pipeline(np.asarray(image.convert("RGB")))
        want = lines_of(ref(image))
        assert [t for _, t, _ in got] == [t for _, t, _ in want], name
        assert [s for _, _, s in got] == pytest.approx([s for _, _, s in want], abs=1e-6), name
        for (quad, text, _), (ref_quad, _, _) in zip(got, want, strict=True):
            assert np.abs(quad - ref_quad).max() <= 1, (name, text, quad.tolist(), ref_quad.tolist())
        read_some += bool(got)
    assert read_some == len(IMAGES) - 1  # all but the blank image have text


def test_a_page_is_read_as_drawn(files: ModelFiles) -> None:
    sample = samples.document(5)
    result = OcrModel(files, threads=1).read(sample.image)
    assert result.text.splitlines() == list(sample.lines)


def test_the_classifier_session_is_made_only_when_it_is_on(files: ModelFiles) -> None:
    assert OcrModel(files, threads=1)._pipeline.classifier is None
    assert OcrModel(files, threads=1, angle_cls=True)._pipeline.classifier is not None


def test_a_keys_file_is_read_line_by_line_as_the_alphabet(tmp_path: Any, files: ModelFiles) -> None:
    keys = tmp_path / "keys.txt"
    keys.write_bytes(b"a\r\nb\n \nc")
    assert ppocr.characters(session(files.rec, 1), keys, files.rec) == ["a", "b", " ", "c"]


def test_a_recogniser_without_its_alphabet_and_without_keys_is_refused(tmp_path: Any, files: ModelFiles) -> None:
    # The detector carries no character list: loaded as a recogniser it must be refused, never completed.
    with pytest.raises(ModelLoadError, match=f"{files.det.name} has no embedded character list"):
        ppocr.characters(session(files.det, 1), None, files.det)


def test_a_file_that_is_not_a_model_is_refused_at_load(tmp_path: Any) -> None:
    broken = tmp_path / "rec.onnx"
    broken.write_bytes(b"not a model" * 100)
    with pytest.raises(ModelLoadError, match="cannot load"):
        session(broken, 1)


@pytest.mark.parametrize(
    ("size", "expected"),
    [
        ((100, 50), (50, 100)),  # within bounds: as it is
        ((4000, 1000), (512, 1984)),  # shrunk by half, sides to multiples of 32 (2,000 / 32 rounds to even)
        ((1000, 20), (32, 1504)),  # grown to a short side of 30, then 32
    ],
)
def test_an_image_is_brought_within_bounds_at_sides_of_multiples_of_32(
    size: tuple[int, int], expected: tuple[int, int]
) -> None:
    out = ppocr.within_bounds(np.zeros((size[1], size[0], 3), dtype=np.uint8), 30, 2000)
    assert out is not None and out.shape[:2] == expected


def test_an_image_that_would_vanish_is_not_read() -> None:
    assert ppocr.within_bounds(np.zeros((20, 2500, 3), dtype=np.uint8), 30, 2000) is None


def test_boxes_are_sorted_in_rows_then_left_to_right() -> None:
    def box(x: float, y: float) -> list[list[float]]:
        return [[x, y], [x + 10, y], [x + 10, y + 5], [x, y + 5]]

    boxes = np.array([box(50, 104), box(0, 100), box(0, 40), box(30, 108)], dtype=np.float32)
    order = [(b[0][0], b[0][1]) for b in ppocr.reading_sorted(boxes).tolist()]
    assert order == [(0, 40), (0, 100), (30, 108), (50, 104)]
