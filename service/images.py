"""Turning an uploaded file into the RGB image the model reads, or into a clear client error.

Two steps, both meant to run off the event loop:

* :func:`inspect_image` reads the header only and makes cheap structural checks: a supported format
  (only the PNG, JPEG, WebP, TIFF and BMP parsers ever see the bytes), a size within the pixel limit, at
  most ``MAX_PNG_CHUNKS`` PNG chunks, and for a JPEG enough data for the frame it declares. No pixels.
* :func:`load_rgb` decodes the pixels at the size the OCR pipeline reads (``service.geometry``): a JPEG
  through the decoder's own DCT scaling (``Image.draft``), any other format decoded once at full size
  then reduced band by band, so the only full-size buffer is the decoder's own. A PNG's pixel data must
  be complete (Pillow silently fills a short stream with black). EXIF orientation is applied.

Every error a decoder raises, whatever its type, is a 400 ``invalid_image``; more pixels than allowed is a
413. The decoded image carries, in ``info[SOURCE_SIZE]``, the upright size of the image as sent: boxes are
reported in that frame.
"""

from __future__ import annotations

import math
import struct
import zlib
from dataclasses import dataclass, field
from io import BytesIO
from typing import BinaryIO, cast

from PIL import Image, UnidentifiedImageError

from service.errors import ImageTooLarge, InvalidImage, ServiceError, UnsupportedMediaType
from service.geometry import PIPELINE_MAX_SIDE, decode_scale

# MPO is what many cameras call a JPEG with an embedded preview (Pillow's JPEG parser returns it).
SUPPORTED_FORMATS = frozenset({"PNG", "JPEG", "MPO", "WEBP", "TIFF", "BMP"})
SUPPORTED_NAMES = "PNG, JPEG, WebP, TIFF, BMP"
PARSERS = ("PNG", "JPEG", "WEBP", "TIFF", "BMP")  # the only Pillow plugins that ever parse an upload
# The OCR pipeline shrinks any image whose longer side is over this many pixels.
DECODE_MAX_SIDE = PIPELINE_MAX_SIDE
# The key in ``Image.info`` under which a decoded image carries the upright size of the image as sent.
SOURCE_SIZE = "ocr_source_size"

# Peak bytes a pixel while an image of each format decodes, measured (bench/memory_bench.py, docs/benchmarks.md): the
# decoder's full-size buffer (Pillow keeps RGB in 4 bytes a pixel) and what the decoder holds beside it.
# A JPEG decodes at reduced scale; Pillow's WebP decoder keeps three full-size copies. ``max_pixels`` is
# the limit of the widest common case (PNG and TIFF); a costlier format gets proportionally fewer pixels.
DECODE_BYTES_PER_PIXEL = {"PNG": 5.5, "TIFF": 5.5, "BMP": 9.0, "JPEG": 3.1, "MPO": 3.1, "WEBP": 16.0}
REFERENCE_BYTES_PER_PIXEL = DECODE_BYTES_PER_PIXEL["PNG"]
# Pillow keeps a pointer and some bookkeeping for every row of an image, whatever its width: a 2x5,499,000
# strip (11 M pixels) takes 53 MiB to load where its pixels are 11 MB. A row counts as this many bytes of
# pixels against the limit (measured, bench/memory_bench.py).
ROW_BYTES = 10

# Deflate's densest code spends 2 bits on a 258-byte match: no zlib stream inflates more than 1032-fold.
DEFLATE_MAX_RATIO = 1032
MAX_PNG_CHUNKS = 65_536  # a 10 MB PNG in 8 KB IDAT chunks has 1,300
MAX_PNG_ANCILLARY_CHUNKS = 4_096  # text, colour and timing chunks; real files carry a few dozen
RESIZED_BEFORE_FLATTENING = ("RGBA", "LA")  # modes whose resize premultiplies alpha (Pillow)
BAND_PIXELS = 1 << 21  # pixels of the full-size image converted at once while reducing (a band of rows)

# Orientation (EXIF 0x0112) -> the transpose that shows the image upright.
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}

# Magic numbers: a file that starts like a supported format but does not parse is a broken image (400),
# not an unsupported one; a few common unsupported formats are named in the 415.
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)
_UNSUPPORTED = (
    (b"GIF8", "GIF"),
    (b"%PDF", "PDF"),
    (b"%!PS", "PostScript"),
    (b"\xc5\xd0\xd3\xc6", "EPS"),
    (b"8BPS", "PSD"),
    (b"\x00\x00\x01\x00", "ICO"),
    (b"\x00\x00\x00\x0cjP  ", "JPEG 2000"),
    (b"\xff\x4f\xff\x51", "JPEG 2000"),
    (b"\xff\x0a", "JPEG XL"),
)


def _signature(head: bytes) -> str | None:
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in _SIGNATURES if head.startswith(magic)), None)


def _unsupported_name(head: bytes) -> str | None:
    if head[4:8] == b"ftyp":
        brand = head[8:12]
        return "AVIF" if brand.startswith(b"avi") else "HEIF" if brand[:3] in (b"hei", b"mif", b"hev") else None
    if head.lstrip()[:5].lower() in (b"<?xml", b"<svg ", b"<svg>"):
        return "SVG"
    return next((name for magic, name in _UNSUPPORTED if head.startswith(magic)), None)


@dataclass
class PngLayout:
    """What the chunk walk learnt of a PNG: where its pixel data lies and how long it must inflate to."""

    idat: list[tuple[int, int]] = field(default_factory=list)  # (offset, length) of each IDAT chunk
    stored: int = 0  # bytes of pixel data the file really holds (a truncated chunk counts what is there)
    expected: int = 0  # bytes the IDAT stream inflates to for the declared size


@dataclass
class Inspected:
    """An image whose header passed the checks; its pixels are not decoded yet. :func:`load_rgb` takes the
    image (``image`` is None after it), so the full-size pixels are freed as soon as they are reduced."""

    image: Image.Image | None
    source: BinaryIO
    size: tuple[int, int]
    format: str
    png: PngLayout | None = None


def inspect_image(data: bytes | BinaryIO, *, max_pixels: int) -> Inspected:
    """Read only the header: refuse non-images, unsupported formats and too many pixels, cheaply.

    ``data`` is the upload's bytes or a seekable binary file holding them (it must stay open until the
    image is decoded).
    """
    source: BinaryIO = BytesIO(data) if isinstance(data, bytes | bytearray | memoryview) else data
    source.seek(0)
    head = source.read(32)
    source.seek(0)
    if not head:
        raise InvalidImage("the uploaded file is empty")
    kind = _signature(head)
    png = _png_layout(source) if kind == "PNG" else None
    source.seek(0)
    try:
        image = Image.open(source, formats=PARSERS)
        width, height = image.size
    except UnidentifiedImageError as exc:
        if kind is not None:
            raise InvalidImage(f"the {kind} header cannot be read") from exc
        named = _unsupported_name(head)
        what = f"image format {named} is not supported" if named else "the upload is not an image in a supported format"
        raise UnsupportedMediaType(f"{what} ({SUPPORTED_NAMES})") from exc
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the image has too many pixels (limit {max_pixels})") from exc
    except MemoryError as exc:
        raise ImageTooLarge("the image header asks for more memory than an image may use") from exc
    except Exception as exc:
        raise InvalidImage(f"the image header cannot be read: {type(exc).__name__}: {exc}") from exc
    if image.format not in SUPPORTED_FORMATS:
        raise UnsupportedMediaType(f"image format {image.format} is not supported ({SUPPORTED_NAMES})")
    if width <= 0 or height <= 0:
        raise InvalidImage(f"the image is {width}x{height} pixels")
    limit = pixel_limit(str(image.format), max_pixels)
    rows = row_pixels(height)
    if width * height + rows > limit:
        why = "" if limit == max_pixels else f" for {image.format} (its decoder needs more memory a pixel)"
        extra = (
            f", and its {height} rows cost as much as {rows} more"
            if width * height <= limit or rows * 100 > limit
            else ""
        )
        raise ImageTooLarge(
            f"the image is {width}x{height} = {width * height} pixels{extra}; the limit is {limit}{why}"
        )
    if image.format in ("JPEG", "MPO"):
        _check_jpeg_size(source, width, height)
    if png is not None and png.stored * DEFLATE_MAX_RATIO < png.expected:
        # Refused before the decoder allocates the declared size, which no byte of the file would fill.
        raise InvalidImage(
            f"the PNG's pixel data ends early: {png.stored} compressed bytes cannot hold the {png.expected} bytes"
            f" its size needs (deflate inflates at most {DEFLATE_MAX_RATIO}-fold)"
        )
    return Inspected(image=image, source=source, size=(width, height), format=str(image.format), png=png)


def row_pixels(height: int) -> int:
    """What the rows of an image cost in the decoder beyond its pixels, counted in pixels."""
    return math.ceil(height * ROW_BYTES / REFERENCE_BYTES_PER_PIXEL)


def pixel_limit(fmt: str, max_pixels: int) -> int:
    """The pixel limit of one format: ``max_pixels``, less for a format whose decoder needs more memory."""
    cost = DECODE_BYTES_PER_PIXEL.get(fmt, REFERENCE_BYTES_PER_PIXEL)
    return min(max_pixels, int(max_pixels * REFERENCE_BYTES_PER_PIXEL / cost))


def load_rgb(inspected: Inspected, *, max_side: int = DECODE_MAX_SIDE) -> Image.Image:
    """Decode the pixels of an inspected image at the size the pipeline reads, upright, as RGB. The upload
    (``inspected.source``) stays open: the caller may still read its bytes."""
    image, inspected.image = inspected.image, None
    if image is None:
        raise ValueError("this image was decoded already")
    try:
        orientation = _orientation(image)
        width, height = inspected.size
        upright = (height, width) if orientation in (5, 6, 7, 8) else (width, height)
        scale = decode_scale(width, height, max_side)
        target = (max(1, math.ceil(width * scale)), max(1, math.ceil(height * scale)))
        if scale < 1 and inspected.format in ("JPEG", "MPO"):
            image.draft(image.mode if image.mode in ("L", "RGB") else None, target)  # libjpeg's DCT scaling
        image.load()
        if inspected.png is not None and _tail_is_blank(image):
            # Pillow leaves the rows a short pixel stream never reached at zero, and says nothing: only
            # then is the stream inflated again, to count what it really holds.
            _check_png_pixels(inspected.source, inspected.png)
        small = _shrink(image, target)
        if orientation in _ORIENT:
            small = small.transpose(_ORIENT[orientation])
        del image  # the full-size pixels go now, not when the upload does
        rgb = _to_rgb(small)
    except ServiceError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageTooLarge(f"the image has too many pixels: {exc}") from exc
    except MemoryError as exc:
        raise ImageTooLarge("decoding the image needs more memory than an image may use") from exc
    except Exception as exc:
        raise InvalidImage(f"the image is truncated or corrupt: {type(exc).__name__}: {exc}") from exc
    rgb.info[SOURCE_SIZE] = upright
    return rgb


def decode_image(data: bytes | BinaryIO, *, max_pixels: int, max_side: int = DECODE_MAX_SIDE) -> Image.Image:
    """Header checks, then pixels: :func:`inspect_image` followed by :func:`load_rgb`."""
    return load_rgb(inspect_image(data, max_pixels=max_pixels), max_side=max_side)


# -- decoding at reduced size ------------------------------------------------------------------------


def _orientation(image: Image.Image) -> int:
    """The EXIF orientation, 1 when absent or unusable (a broken EXIF block does not spoil the pixels)."""
    try:
        value = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - EXIF is advisory: its errors are ignored, not answered
        return 1
    return value if isinstance(value, int) and value in _ORIENT else 1


def _work_mode(image: Image.Image) -> str:
    """The mode reduced and resized in: L for gray images, RGB for the rest (alpha is flattened first)."""
    mode = image.mode
    return "L" if mode in ("1", "L", "LA", "La", "I", "F") or mode.startswith("I;") else "RGB"


def _convert(piece: Image.Image, mode: str) -> Image.Image:
    """``piece`` in ``mode``: transparent pixels put on white paper, wide gray data scaled by its own range
    (16-bit or float samples would otherwise be clipped to white)."""
    if piece.mode == "La":  # gray with premultiplied alpha (TIFF "associated alpha")
        piece = piece.convert("LA")
    elif piece.mode == "RGBa":
        piece = piece.convert("RGBA")
    if piece.mode in ("RGBA", "LA", "PA") or "transparency" in piece.info:
        rgba = piece.convert("RGBA")
        canvas = Image.new("RGB", rgba.size, "white")  # transparent ink on nothing reads as paper
        canvas.paste(rgba, mask=rgba.getchannel("A"))
        piece = canvas
    elif piece.mode.startswith("I;"):
        piece = piece.convert("I")
    if piece.mode in ("I", "F"):
        low, high = cast(tuple[float, float], piece.getextrema())
        if not 0 <= low <= high <= 255:
            span = float(high) - float(low) or 1.0
            piece = piece.point(lambda v: (v - low) * (255.0 / span))  # type: ignore[arg-type,operator]
    return piece if piece.mode == mode else piece.convert(mode)


def _shrink(image: Image.Image, target: tuple[int, int]) -> Image.Image:
    """The image in a working mode at ``target`` size: an integer box reduce done in bands of rows, so no
    full-size converted copy exists, then an exact resize of the (small) result.

    The reduce has a factor per axis, so the resize that follows shrinks each side by less than 2: its
    filter weights (one set per output pixel, as wide as the shrink) stay small. With one factor for both
    axes, a 2x5,499,000 strip kept a 23x shrink of its long side for the resize: 134 MiB of weights."""
    mode = _work_mode(image)
    width, height = image.size
    factor = (max(1, width // target[0]), max(1, height // target[1]))
    rows = max(1, BAND_PIXELS // max(1, width))
    if max(factor) >= 2:
        band = max(1, rows // factor[1]) * factor[1]  # whole blocks of the reduce in every band
        out = Image.new(mode, (math.ceil(width / factor[0]), math.ceil(height / factor[1])))
        for top in range(0, height, band):
            piece = _convert(image.crop((0, top, width, min(height, top + band))), mode)
            out.paste(piece.reduce(factor), (0, top // factor[1]))
        image = out
    elif image.mode in RESIZED_BEFORE_FLATTENING and (width > target[0] or height > target[1]):
        # Pillow resamples these with premultiplied alpha, so flattening the small result on white is the
        # same picture: no full-size flattened copy beside the decoded image (RGBA PNG at the pixel limit:
        # 8 bytes a pixel at once, where the decode budget counts 5.5).
        return _convert(image.resize(target, Image.Resampling.LANCZOS), mode)
    elif image.mode != mode:
        out = Image.new(mode, image.size)
        for top in range(0, height, rows):
            out.paste(_convert(image.crop((0, top, width, min(height, top + rows))), mode), (0, top))
        image = out
    if image.size[0] > target[0] or image.size[1] > target[1]:
        image = image.resize(target, Image.Resampling.LANCZOS)
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    return image if image.mode == "RGB" else image.convert("RGB")


def _tail_is_blank(image: Image.Image) -> bool:
    """Whether the last two rows are all zero bytes, as Pillow leaves rows it never decoded."""
    width, height = image.size
    tail = image.crop((0, max(0, height - 2), width, height)).tobytes()
    return not tail.strip(b"\0")


# -- PNG structure ------------------------------------------------------------------------------------


def _png_layout(source: BinaryIO) -> PngLayout:
    """Walk the chunks (headers only): refuse a flood of them, and note where the pixel data lies. A
    broken structure is left for the parser to report."""
    layout = PngLayout()
    size = source.seek(0, 2)
    source.seek(8)
    ihdr = source.read(25)
    if len(ihdr) == 25 and ihdr[4:8] == b"IHDR":
        layout.expected = _png_expected_bytes(*struct.unpack(">IIBBBBB", ihdr[8:21]))
    source.seek(8)
    chunks = ancillary = 0
    while True:
        header = source.read(8)
        if len(header) < 8:
            break
        length, kind = struct.unpack(">I4s", header)
        chunks += 1
        if kind == b"IDAT":
            layout.idat.append((source.tell(), length))
            layout.stored += max(0, min(length, size - source.tell()))
        elif kind not in (b"IHDR", b"PLTE", b"IEND", b"fdAT"):
            ancillary += 1
        if chunks > MAX_PNG_CHUNKS or ancillary > MAX_PNG_ANCILLARY_CHUNKS:
            raise InvalidImage(
                f"the PNG has more than {MAX_PNG_CHUNKS} chunks, or {MAX_PNG_ANCILLARY_CHUNKS} besides its pixel"
                " data; real images have a few dozen"
            )
        if kind == b"IEND":
            break
        source.seek(length + 4, 1)
    return layout


_PNG_CHANNELS = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}
_ADAM7 = ((0, 0, 8, 8), (4, 0, 8, 8), (0, 4, 4, 8), (2, 0, 4, 4), (0, 2, 2, 4), (1, 0, 2, 2), (0, 1, 1, 2))


def _png_expected_bytes(width: int, height: int, depth: int, color: int, _c: int, _f: int, interlace: int) -> int:
    """Bytes the pixel data of the first frame inflates to: each row's filter byte and its samples."""
    bits = depth * _PNG_CHANNELS.get(color, 1)

    def rows(w: int, h: int) -> int:
        return 0 if w == 0 or h == 0 else h * (1 + math.ceil(w * bits / 8))

    if not interlace:
        return rows(width, height)
    return sum(
        rows(max(0, math.ceil((width - x0) / dx)), max(0, math.ceil((height - y0) / dy))) for x0, y0, dx, dy in _ADAM7
    )


def _check_png_pixels(source: BinaryIO, layout: PngLayout, block: int = 1 << 20) -> None:
    """Inflate the pixel data without keeping it: fewer bytes than the declared size asks is a truncated
    image, which Pillow would decode as rows of black without a word."""
    inflater = zlib.decompressobj()
    produced = 0
    try:
        for offset, length in layout.idat:
            source.seek(offset)
            left = length
            while left > 0 and produced < layout.expected:
                data = source.read(min(left, block))
                if not data:
                    break
                left -= len(data)
                while data and produced < layout.expected:
                    produced += len(inflater.decompress(data, block))
                    data = inflater.unconsumed_tail
            if produced >= layout.expected:
                return
    except zlib.error as exc:
        raise InvalidImage(f"the PNG's pixel data is corrupt: {exc}") from exc
    raise InvalidImage(f"the PNG's pixel data ends early: {produced} of the {layout.expected} bytes its size needs")


# -- JPEG structure ------------------------------------------------------------------------------------

# Start-of-frame markers of arithmetic-coded JPEGs, which can spend less than one bit on a block.
_ARITHMETIC_SOF = frozenset({0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF})


def _check_jpeg_size(source: BinaryIO, width: int, height: int) -> None:
    """A Huffman-coded JPEG spends at least one bit on every 8x8 block; a file too small for the frame it
    declares is a truncated or forged one, which libjpeg would pad with gray without a word."""
    position = source.tell()
    try:
        size = source.seek(0, 2)
        source.seek(0)
        marker = _jpeg_frame_marker(source.read(65_536))
    finally:
        source.seek(position)
    if marker in _ARITHMETIC_SOF:
        return
    blocks = math.ceil(width / 8) * math.ceil(height / 8)
    if size * 8 < blocks:
        raise InvalidImage(
            f"the JPEG declares {width}x{height} pixels but holds {size} bytes: too few for its {blocks} blocks"
        )


def _jpeg_frame_marker(head: bytes) -> int | None:
    """The SOFn marker byte of the first frame header within ``head``."""
    i = 2
    while i + 4 <= len(head):
        if head[i] != 0xFF:
            return None
        marker = head[i + 1]
        if marker == 0xFF:
            i += 1
            continue
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            return marker
        i += 2 + struct.unpack(">H", head[i + 2 : i + 4])[0]
    return None
