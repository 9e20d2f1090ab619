"""Turning uploaded bytes into an RGB image, or into a clear client error."""

from __future__ import annotations

from io import BytesIO

from PIL import Image, ImageOps, UnidentifiedImageError

from service.errors import ImageTooLarge, InvalidImage, UnsupportedMediaType

# MPO is what many cameras call a JPEG with an embedded preview.
SUPPORTED_FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP", "TIFF", "BMP"})
SUPPORTED_NAMES = "PNG, JPEG, WebP, TIFF, BMP"


def inspect_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Read only the header: refuse non-images, unsupported formats and too many pixels, cheaply."""
    if not data:
        raise InvalidImage("the uploaded file is empty")
    try:
        image = Image.open(BytesIO(data))
    except UnidentifiedImageError as exc:
        raise UnsupportedMediaType(f"the upload is not an image in a supported format ({SUPPORTED_NAMES})") from exc
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the image has too many pixels (limit {max_pixels})") from exc
    except (OSError, SyntaxError, ValueError) as exc:
        raise InvalidImage(f"the image header cannot be read: {exc}") from exc
    if image.format not in SUPPORTED_FORMATS:
        raise UnsupportedMediaType(f"image format {image.format} is not supported ({SUPPORTED_NAMES})")
    width, height = image.size
    if width * height > max_pixels:
        raise ImageTooLarge(f"the image is {width}x{height} = {width * height} pixels; the limit is {max_pixels}")
    return image


def load_rgb(image: Image.Image) -> Image.Image:
    """Decode the pixels of an inspected image, apply its EXIF orientation, and return it as RGB."""
    try:
        image.load()
        image = ImageOps.exif_transpose(image) or image
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the image has too many pixels: {exc}") from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InvalidImage(f"the image is truncated or corrupt: {exc}") from exc
    return _to_rgb(image)


def decode_image(data: bytes, *, max_pixels: int) -> Image.Image:
    """Header checks, then pixels: :func:`inspect_image` followed by :func:`load_rgb`."""
    return load_rgb(inspect_image(data, max_pixels=max_pixels))


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, "white")  # transparent ink on nothing reads as paper
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        return canvas
    return image.convert("RGB")
