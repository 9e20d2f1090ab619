from io import BytesIO

import pytest
from PIL import Image

from harness.provisioning.image.build import BuildResult
from harness.provisioning.image.tier import (
    MODEL_LABEL,
    REQUIRED_LABELS,
    Check,
    CheckFailed,
    TierReport,
    contains_word,
    label_problems,
    process_uids,
    word_png,
)

STATUS = (
    "Name:\tpython\nUmask:\t0022\nState:\tS (sleeping)\n"
    "Uid:\t10001\t10001\t10001\t10001\nGid:\t10001\t10001\t10001\t10001\n"
)


def test_process_uids_reads_the_uid_line() -> None:
    assert process_uids(STATUS) == (10001, 10001, 10001, 10001)
    assert process_uids(STATUS.replace("10001\t10001\t10001\t10001\nGid", "0\t0\t0\t0\nGid")) == (0, 0, 0, 0)


def test_process_uids_without_a_uid_line() -> None:
    with pytest.raises(CheckFailed):
        process_uids("Name:\tpython\n")


def test_contains_word_ignores_case_only() -> None:
    assert contains_word("invoice")
    assert contains_word("Total\nINVOICE 12")
    assert not contains_word("Invo1ce")


def test_word_png_is_a_png_with_dark_text_on_white() -> None:
    image = Image.open(BytesIO(word_png())).convert("L")
    histogram = image.histogram()  # pixel counts by grey level, 0 (black) to 255 (white)
    assert histogram[255] > image.width * image.height // 2  # mostly white
    assert sum(histogram[:64]) > 0  # with dark strokes
    assert 28 <= image.height <= 80


def _labels(**overrides: str) -> dict[str, str]:
    labels = dict.fromkeys(REQUIRED_LABELS, "x")
    labels["org.opencontainers.image.version"] = "0.1.0"
    labels[MODEL_LABEL] = "3.10.0+abc"
    labels.update(overrides)
    return labels


def test_label_problems() -> None:
    assert label_problems(_labels(), version="0.1.0", wheelhouse=True) == []
    assert label_problems(_labels(), version="0.2.0", wheelhouse=True) == ["version label '0.1.0', project is '0.2.0'"]
    assert label_problems(_labels(**{MODEL_LABEL: "unknown"}), version="0.1.0", wheelhouse=True) == [
        f"{MODEL_LABEL} is not set"
    ]
    assert label_problems(_labels(**{MODEL_LABEL: "unknown"}), version="0.1.0", wheelhouse=False) == []
    missing = label_problems({}, version="0.1.0", wheelhouse=False)
    assert missing == [f"no label {key}" for key in REQUIRED_LABELS]


def test_report_closing_line_and_json() -> None:
    report = TierReport(
        image="ocr:dev", build=BuildResult("ocr:dev", "ocr-base:bookworm", 539_000_000, {"build": 30.0})
    )
    report.checks += [Check("a", True), Check("b", True), Check("c", False, "boom")]
    assert report.closing_line() == "image: 2 passed, 1 failed"
    data = report.to_json()
    assert data["failed"] == 1 and data["build"]["size_bytes"] == 539_000_000
    assert report.build is not None and report.build.total_seconds == 30.0
