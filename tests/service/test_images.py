import gc
import time
import zlib
from collections.abc import Callable
from pathlib import Path

import pytest
from PIL import Image

from harness.provisioning import samples
from service.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType
from service.images import DECODE_MAX_SIDE, SOURCE_SIZE, decode_image, inspect_image, pixel_limit, row_pixels
from tests.service import corpus

LIMIT = 40_000_000


def test_png_decodes_to_rgb() -> None:
    image = decode_image(samples.text_line("Hi").encode(), max_pixels=LIMIT)
    assert image.mode == "RGB"


def test_transparent_ink_lands_on_white_paper() -> None:
    rgba = Image.new("RGBA", (10, 10), (0, 0, 0, 0))
    image = decode_image(samples.encode(rgba), max_pixels=LIMIT)
    assert image.getpixel((5, 5)) == (255, 255, 255)


def test_exif_orientation_gives_the_upright_frame() -> None:
    sample = samples.text_line("Upright")
    image = decode_image(samples.with_exif_rotation(sample), max_pixels=LIMIT)
    assert image.size == sample.image.size


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (samples.not_an_image(), UnsupportedMediaType),
        (samples.gif_image(), UnsupportedMediaType),
        (samples.truncated_png(), InvalidImage),
        (b"", InvalidImage),
        (samples.decompression_bomb(), ImageTooLarge),
    ],
)
def test_bad_payloads(data: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        decode_image(data, max_pixels=LIMIT)


def test_pixel_limit_is_checked_before_decoding() -> None:
    # The limit counts the pixels and what the decoder keeps for each row (100 rows: 182 pixels' worth).
    data = samples.encode(Image.new("L", (100, 100), 255))
    assert row_pixels(100) == 182
    assert decode_image(data, max_pixels=10_182).size == (100, 100)
    with pytest.raises(ImageTooLarge, match="10181"):
        decode_image(data, max_pixels=10_181)


def test_a_thin_tall_strip_counts_its_rows_against_the_limit() -> None:
    """2x5,499,000 holds 11 M pixels, but Pillow's bookkeeping for 5.5 M rows costs as much as 10 M more."""
    tall = samples.encode(Image.new("L", (2, 5_499_000), 255))
    with pytest.raises(ImageTooLarge, match="its 5499000 rows cost as much as 9998182 more"):
        inspect_image(tall, max_pixels=11_000_000)
    wide = samples.encode(Image.new("L", (5_499_000, 2), 255))  # two rows: the same pixels are legal
    assert inspect_image(wide, max_pixels=11_000_000).size == (5_499_000, 2)


# -- hardening: every decoder error is a 400, large images decode small, truncation is caught ----------


def test_gray_tiff_with_associated_alpha_is_read() -> None:
    image = decode_image(corpus.tiff_la(), max_pixels=LIMIT)
    assert image.mode == "RGB" and image.getpixel((0, 0)) == (255, 255, 255)


@pytest.mark.parametrize("kind", [2, 5, 7, 10, 11, 12, 16])
def test_tiff_with_a_corrupt_tag_type_is_invalid_image(kind: int) -> None:
    with pytest.raises(InvalidImage):
        decode_image(corpus.tiff_corrupt_strip_offsets(kind), max_pixels=LIMIT)


def test_png_whose_pixel_data_ends_early_is_invalid_image() -> None:
    # A complete zlib stream with the first row only: Pillow fills the rest with black, silently.
    with pytest.raises(InvalidImage, match="pixel data"):
        decode_image(corpus.truncated_pixels_png(), max_pixels=LIMIT)


def test_tiny_jpeg_declaring_a_large_frame_is_invalid_image() -> None:
    with pytest.raises(InvalidImage):
        decode_image(corpus.jpeg_with_size(6000, 6000), max_pixels=LIMIT)


@pytest.mark.parametrize("data", [corpus.png_raw(0, 0, b""), corpus.tiff_raw(16, 16, b"\0" * 256, compression=60000)])
def test_a_supported_format_with_a_broken_header_is_invalid_image(data: bytes) -> None:
    with pytest.raises(InvalidImage):
        decode_image(data, max_pixels=LIMIT)


def test_png_with_too_many_chunks_is_refused_fast() -> None:
    data = corpus.chunk_bomb(700_000)
    start = time.perf_counter()
    with pytest.raises(InvalidImage, match="chunks"):
        inspect_image(data, max_pixels=LIMIT)
    assert time.perf_counter() - start < 0.5


def peak_growth_mb(fn: Callable[[], object]) -> float:
    """How far this process's peak RSS rises above its current RSS while ``fn`` runs (Linux)."""
    gc.collect()
    Path("/proc/self/clear_refs").write_text("5")
    status = Path("/proc/self/status").read_text()
    before = int(next(x for x in status.splitlines() if x.startswith("VmRSS")).split()[1])
    fn()
    status = Path("/proc/self/status").read_text()
    peak = int(next(x for x in status.splitlines() if x.startswith("VmHWM")).split()[1])
    return (peak - before) / 1024


@pytest.mark.parametrize(
    ("fmt", "mode", "side", "bound_mb"),
    [("PNG", "L", 6300, 80), ("JPEG", "RGB", 6300, 100), ("TIFF", "RGBA", 6300, 250), ("WEBP", "RGB", 3700, 250)],
)
def test_large_images_are_decoded_at_the_size_the_model_reads(fmt: str, mode: str, side: int, bound_mb: float) -> None:
    # 6300x6300 is just under the 40 M pixel limit; the pipeline shrinks anything over 2000 px anyway. Only
    # the decoder's own full-size buffer may be held: 1 byte a pixel in L, 4 in RGBA (Pillow's RGB too).
    data = corpus.encode(samples.text_page(side, side, mode), fmt)
    result: list[Image.Image] = []
    growth = peak_growth_mb(lambda: result.append(decode_image(data, max_pixels=LIMIT)))
    image = result[0]
    assert max(image.size) == DECODE_MAX_SIDE and image.mode == "RGB"
    assert image.info[SOURCE_SIZE] == (side, side)
    assert growth < bound_mb, f"decoding raised the peak RSS by {growth:.0f} MB"


def test_webp_gets_fewer_pixels_as_its_decoder_needs_more_memory() -> None:
    # Pillow's WebP decoder holds about 16 bytes a pixel (three full-size copies); PNG about 5.5.
    data = corpus.encode(samples.text_page(4000, 4000, "RGB"), "WEBP")
    with pytest.raises(ImageTooLarge, match="WEBP"):
        decode_image(data, max_pixels=LIMIT)
    assert pixel_limit("WEBP", LIMIT) < 16_000_000 < pixel_limit("PNG", LIMIT) == LIMIT


def test_reduced_decode_keeps_the_upright_frame_of_exif_rotated_images() -> None:
    page = samples.text_page(4800, 2400, "RGB").transpose(Image.Transpose.ROTATE_90)  # stored 2400x4800
    exif = Image.Exif()
    exif[0x0112] = 6
    image = decode_image(corpus.encode(page, "JPEG", exif=exif.tobytes()), max_pixels=LIMIT)
    assert image.info[SOURCE_SIZE] == (4800, 2400)
    assert image.width > image.height and max(image.size) == DECODE_MAX_SIDE


def test_png_too_short_for_its_declared_size_is_refused_before_decoding() -> None:
    # 64 compressed bytes inflate to at most 66 KB: never the 144 MB a 6000x6000 RGBA image needs.
    data = corpus.png_raw(6000, 6000, zlib.compress(b"\0" * 64), color_type=6)
    with pytest.raises(InvalidImage, match="deflate inflates at most"):
        inspect_image(data, max_pixels=LIMIT)


def test_a_blank_page_compressed_as_far_as_deflate_goes_is_still_read() -> None:
    # The densest legal PNG: one color, deflate at level 9, near the 1032:1 bound the refusal above uses.
    page = Image.new("L", (4000, 3000), 255)
    data = samples.encode(page, compress_level=9)
    inspected = inspect_image(data, max_pixels=LIMIT)
    assert inspected.png is not None and inspected.png.stored * 1000 > inspected.png.expected / 1.1
    assert decode_image(data, max_pixels=LIMIT).size[0] > 0


def test_a_large_transparent_page_is_flattened_on_white_after_it_is_shrunk() -> None:
    """RGBA over the pipeline's size is resized with premultiplied alpha, then flattened: same picture."""
    page = Image.new("RGBA", (4000, 400), (0, 0, 0, 0))  # transparent black: paper
    page.paste((0, 0, 0, 255), (1000, 100, 3000, 300))  # opaque ink
    image = decode_image(samples.encode(page), max_pixels=LIMIT)
    assert image.mode == "RGB" and image.size == (2000, 200)
    assert image.getpixel((100, 20)) == (255, 255, 255)
    assert image.getpixel((1000, 100)) == (0, 0, 0)
