"""Images with known text, generated from a seed: the ground truth of every OCR check and benchmark.

Text is drawn with Pillow's bundled TrueType font, so the same seed gives the same pixels on any machine
with the same Pillow. Also the bad payloads that the service must refuse.
"""

from __future__ import annotations

import json
import random
import struct
import zlib
from dataclasses import dataclass
from html import escape
from io import BytesIO
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

WORDS = (
    "invoice total amount due date order number account customer payment received shipping address "
    "balance tax subtotal quantity price item description reference paid thank you please contact "
    "delivery north south street avenue city office report summary page section table figure note "
    "model service platform request response latency replica queue worker metric alert cluster"
).split()


@dataclass(frozen=True)
class Sample:
    """An image and the lines of text drawn on it, top to bottom."""

    image: Image.Image
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    def encode(self, fmt: str = "PNG", **params: object) -> bytes:
        return encode(self.image, fmt, **params)


def encode(image: Image.Image, fmt: str = "PNG", **params: object) -> bytes:
    buf = BytesIO()
    image.save(buf, format=fmt, **params)
    return buf.getvalue()


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def text_line(text: str, *, font_size: int = 28, margin: int = 12) -> Sample:
    """One line of text on a white image just large enough for it."""
    font = _font(font_size)
    left, top, right, bottom = (int(v) for v in font.getbbox(text))
    image = Image.new("RGB", (right - left + 2 * margin, bottom - top + 2 * margin), "white")
    ImageDraw.Draw(image).text((margin - left, margin - top), text, fill="black", font=font)
    return Sample(image, (text,))


def random_line(rng: random.Random, *, words: tuple[int, int] = (3, 7)) -> str:
    line = " ".join(rng.choice(WORDS) for _ in range(rng.randint(*words)))
    if rng.random() < 0.5:
        line += f" {rng.randint(1, 9999)}"
    return line.capitalize()


def document(
    seed: int, *, lines: int = 8, width: int = 900, font_size: int = 26, line_gap: int = 22, margin: int = 48
) -> Sample:
    """A document-like page: ``lines`` lines of seeded words and numbers, left-aligned."""
    rng = random.Random(seed)
    texts = tuple(random_line(rng) for _ in range(lines))
    font = _font(font_size)
    step = font_size + line_gap
    image = Image.new("RGB", (width, 2 * margin + lines * step), "white")
    draw = ImageDraw.Draw(image)
    for i, text in enumerate(texts):
        draw.text((margin, margin + i * step), text, fill="black", font=font)
    return Sample(image, texts)


def words_image(seed: int) -> Sample:
    """A small one-line image with 1 to 3 seeded words: a cheap job or gateway check."""
    rng = random.Random(seed)
    return text_line(" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 3))).capitalize())


# Payloads the service must refuse.


def not_an_image() -> bytes:
    return b"%PDF-1.4 this is not an image\n" * 20


def truncated_png() -> bytes:
    data = text_line("Truncated").encode("PNG")
    return data[: len(data) // 2]


def gif_image() -> bytes:
    return encode(text_line("Gif").image.convert("P"), "GIF")


def too_many_pixels(max_pixels: int) -> bytes:
    """A real, tiny-on-disk PNG with just more pixels than ``max_pixels``."""
    width = 4000
    height = max_pixels // width + 1
    return encode(Image.new("L", (width, height), 255), "PNG", compress_level=1)


def decompression_bomb(side: int = 100_000) -> bytes:
    """A PNG header declaring side x side pixels with almost no data: refused before decoding."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 64)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def with_exif_rotation(sample: Sample, orientation: int = 6) -> bytes:
    """The sample stored rotated, with an EXIF Orientation tag that makes a viewer show it upright."""
    # Orientation 6 means "rotate 90 degrees clockwise to display": store it turned the other way.
    stored = sample.image.transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return encode(stored, "JPEG", quality=95, exif=exif.tobytes())


# ``harness samples``: images with known text to send to a running service.

SAMPLE_WORDS = 3  # one-line images written by ``harness samples``
SAMPLE_PAGES = 1  # document pages written by ``harness samples``


def write_samples(out: Path, *, seed: int = 1) -> dict[str, str]:
    """Write one-line images and a document page with known text into ``out``, and ``expected.json`` (file
    name -> text, lines joined by ``\\n``). Returns that mapping."""
    out.mkdir(parents=True, exist_ok=True)
    made: dict[str, Sample] = {f"words-{i + 1}.png": words_image(seed + i) for i in range(SAMPLE_WORDS)}
    made |= {f"page-{i + 1}.png": document(seed + i) for i in range(SAMPLE_PAGES)}
    expected = {}
    for name, sample in made.items():
        (out / name).write_bytes(sample.encode("PNG"))
        expected[name] = sample.text
    (out / "expected.json").write_text(json.dumps(expected, indent=2) + "\n")
    return expected


def cmd_samples(args: Any) -> int:
    for name, text in write_samples(args.out, seed=args.seed).items():
        print(f"{args.out / name}\t{json.dumps(text)}")
    print(f"{args.out / 'expected.json'}\t(file name -> expected text)")
    return 0


# -- pages for the memory and layout benchmarks and the tests that share them ---------------------------


PAGE_SIZE = (1240, 1754)  # A4 at 150 dpi


def layout_page(seed: int) -> Image.Image:
    """A page with a title, three paragraphs and a figure (a filled block): what the layout model finds."""
    rng = random.Random(seed)
    image = Image.new("RGB", PAGE_SIZE, "white")
    draw = ImageDraw.Draw(image)
    draw.text((120, 110), random_line(rng, words=(2, 4)).title(), fill="black", font=_font(56))
    body = _font(26)
    y = 230
    for _ in range(3):
        for _ in range(7):
            draw.text((120, y), " ".join(random_line(rng, words=(9, 11)).split()[:11]), fill="black", font=body)
            y += 38
        y += 40
    draw.rectangle((200, y, 1040, y + 420), fill=(90, 120, 160))
    return image


def text_page(width: int, height: int, mode: str = "L", lines: int = 6) -> Image.Image:
    """A mostly white page with a few lines of large text near the top: small when compressed."""
    image = Image.new(mode, (width, height), "white")
    draw = ImageDraw.Draw(image)
    font = ImageFont.load_default(size=max(24, width // 60))
    step = max(40, width // 40)
    for i in range(lines):
        draw.text((width // 20, width // 20 + i * step), f"Large page line {i + 1} total 42", fill="black", font=font)
    return image


def near_limit_png(side: int = 6300, mode: str = "L") -> bytes:
    """A legal page of side x side pixels (6300: 39.7 M, just under the 40 M limit), small on the wire."""
    return encode(text_page(side, side, mode), "PNG", optimize=True)


def near_limit_jpeg(side: int = 6300) -> bytes:
    return encode(text_page(side, side, "RGB"), "JPEG", quality=70)


def near_limit_tiff(side: int = 6300) -> bytes:
    """RGBA, deflate: Pillow's widest 8-bit mode, 4 bytes a pixel once decoded."""
    return encode(text_page(side, side, "RGBA"), "TIFF", compression="tiff_adobe_deflate")


def png_declaring(width: int, height: int) -> bytes:
    """A valid PNG header declaring ``width`` x ``height`` RGBA, with a few bytes of pixel data: tiny on the wire."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


# -- tables with known structure and text: the table model's checks and its accuracy benchmark ------------


@dataclass(frozen=True)
class TableCell:
    row: int
    col: int
    rowspan: int
    colspan: int
    text: str


@dataclass(frozen=True)
class TableSample:
    """A drawn table and what it holds: its cells (row, column, spans, text) and the same as HTML."""

    image: Image.Image
    rows: int
    columns: int
    cells: tuple[TableCell, ...]
    ruled: bool

    @property
    def html(self) -> str:
        out = ["<table>"]
        for row in range(self.rows):
            out.append("<tr>")
            for cell in (c for c in self.cells if c.row == row):
                span = (f' rowspan="{cell.rowspan}"' if cell.rowspan > 1 else "") + (
                    f' colspan="{cell.colspan}"' if cell.colspan > 1 else ""
                )
                out.append(f"<td{span}>{escape(cell.text)}</td>")
            out.append("</tr>")
        return "".join([*out, "</table>"])


def _cell_word(rng: random.Random, numeric: bool) -> str:
    if numeric:
        return rng.choice((f"{rng.randint(1, 999)}", f"{rng.randint(1, 9999) / 100:.2f}", f"{rng.randint(1, 99)}%"))
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 2))).capitalize()


def table(
    seed: int, *, rows: int = 4, columns: int = 3, ruled: bool = True, merged: bool = False, font_size: int = 22
) -> TableSample:
    """A seeded table: a header row of words, then rows whose first column is words and the rest numbers.
    ``merged`` joins the header's first two cells into one spanning two columns."""
    rng = random.Random(seed)
    font = _font(font_size)
    texts = [[_cell_word(rng, numeric=r > 0 and c > 0) for c in range(columns)] for r in range(rows)]
    cells: list[TableCell] = []
    for r in range(rows):
        c = 0
        while c < columns:
            span = 2 if merged and r == 0 and c == 0 and columns > 2 else 1
            cells.append(TableCell(r, c, 1, span, texts[r][c]))
            c += span
    widths = [max(int(font.getlength(texts[r][c])) for r in range(rows)) + 2 * font_size for c in range(columns)]
    if merged and columns > 2:
        widths[0] = widths[1] = max(widths[0], widths[1], int(font.getlength(texts[0][0])) // 2 + font_size)
    row_h = font_size * 2 + 8
    margin = 30
    image = Image.new("RGB", (sum(widths) + 2 * margin, rows * row_h + 2 * margin), "white")
    draw = ImageDraw.Draw(image)
    xs = [margin + sum(widths[:c]) for c in range(columns + 1)]
    for cell in cells:
        x1, x2 = xs[cell.col], xs[cell.col + cell.colspan]
        y1 = margin + cell.row * row_h
        if ruled:
            draw.rectangle((x1, y1, x2, y1 + row_h), outline="black", width=2)
        draw.text((x1 + font_size // 2, y1 + (row_h - font_size) // 2), cell.text, fill="black", font=font)
    if not ruled:  # an unruled table keeps a rule under its header, as most printed tables do
        draw.line((xs[0], margin + row_h, xs[-1], margin + row_h), fill="black", width=2)
    return TableSample(image, rows, columns, tuple(cells), ruled)
