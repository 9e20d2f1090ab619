"""``harness samples``: seeded images with known text, written to a folder with their expected text."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from harness.cli import main
from harness.provisioning import samples


def test_samples_command_writes_images_and_their_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "samples"
    assert main(["samples", "--out", str(out)]) == 0
    expected = json.loads((out / "expected.json").read_text())
    assert sorted(expected) == ["page-1.png", "words-1.png", "words-2.png", "words-3.png"]
    assert expected["words-1.png"] == samples.words_image(1).text
    assert expected["page-1.png"] == samples.document(1).text and expected["page-1.png"].count("\n") == 7
    printed = capsys.readouterr().out.splitlines()
    for name, text in expected.items():
        assert f"{out / name}\t{json.dumps(text)}" in printed
        with Image.open(out / name) as image:
            assert image.format == "PNG"


def test_the_same_seed_gives_the_same_files(tmp_path: Path) -> None:
    first = samples.write_samples(tmp_path / "a", seed=7)
    assert samples.write_samples(tmp_path / "b", seed=7) == first
    assert (tmp_path / "a" / "page-1.png").read_bytes() == (tmp_path / "b" / "page-1.png").read_bytes()
    assert samples.write_samples(tmp_path / "c", seed=8) != first
