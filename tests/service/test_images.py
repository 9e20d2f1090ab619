import pytest
from PIL import Image

from harness import samples
from service.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType
from service.images import decode_image

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
    data = samples.encode(Image.new("L", (100, 100), 255))
    assert decode_image(data, max_pixels=10_000).size == (100, 100)
    with pytest.raises(ImageTooLarge, match="10000"):
        decode_image(data, max_pixels=9_999)
