"""QR labels: one PNG per device (segno) and an A4 PDF sheet written by hand (no PDF library needed)."""

from __future__ import annotations

import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

import segno

__all__ = ["Label", "LabelSheet", "label_png", "labels_pdf", "write_labels"]

PNG_SCALE = 8
PNG_BORDER = 4

# A4 in points, 3 x 7 labels (63.5 x 38.1 mm, the common address-label grid).
PAGE_W, PAGE_H = 595.28, 841.89
COLS, ROWS = 3, 7
LABEL_W, LABEL_H = 180.0, 108.0
MARGIN_X = (PAGE_W - COLS * LABEL_W) / 2
MARGIN_Y = (PAGE_H - ROWS * LABEL_H) / 2
QR_SIDE = 90.0


@dataclass(frozen=True, slots=True)
class Label:
    """What one label shows: the QR payload and two lines of text."""

    serial: str
    payload: str
    caption: str = ""


@dataclass(frozen=True, slots=True)
class LabelSheet:
    """Where the labels went."""

    pngs: list[Path]
    pdf: Path
    pages: int


def _qr(payload: str) -> segno.QRCode:
    # Level M survives a scuffed box; segno picks the smallest version that fits.
    return segno.make_qr(payload, error="m")


def label_png(label: Label, path: Path) -> Path:
    """Write the label's QR code as a PNG of (modules + 2*border) * scale pixels square."""
    _qr(label.payload).save(str(path), kind="png", scale=PNG_SCALE, border=PNG_BORDER)
    return path


def _pdf_text(text: str) -> str:
    # Base-14 fonts know Latin-1 at best; anything else becomes '?' rather than a broken file.
    safe = text.encode("latin-1", "replace").decode("latin-1")
    return safe.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def _label_ops(label: Label, x: float, y: float) -> list[str]:
    qr = _qr(label.payload)
    matrix = [list(row) for row in qr.matrix]
    n = len(matrix)
    module = QR_SIDE / n
    qx, qy = x + 8, y + (LABEL_H - QR_SIDE) / 2
    ops = ["0 g"]
    for r, row in enumerate(matrix):
        for c, dark in enumerate(row):
            if dark & 1:
                ops.append(
                    f"{qx + c * module:.2f} {qy + (n - 1 - r) * module:.2f} {module:.3f} {module:.3f} re"
                )
    ops.append("f")
    tx = qx + QR_SIDE + 8
    ops.append(f"BT /F1 9 Tf {tx:.2f} {y + LABEL_H / 2 + 6:.2f} Td ({_pdf_text(label.serial)}) Tj ET")
    if label.caption:
        ops.append(
            f"BT /F1 7 Tf {tx:.2f} {y + LABEL_H / 2 - 8:.2f} Td ({_pdf_text(label.caption[:28])}) Tj ET"
        )
    return ops


def _pages(labels: Sequence[Label]) -> list[bytes]:
    per_page = COLS * ROWS
    pages = []
    for start in range(0, max(len(labels), 1), per_page):
        ops: list[str] = []
        for i, label in enumerate(labels[start : start + per_page]):
            col, row = i % COLS, i // COLS
            x = MARGIN_X + col * LABEL_W
            y = PAGE_H - MARGIN_Y - (row + 1) * LABEL_H
            ops.extend(_label_ops(label, x, y))
        pages.append("\n".join(ops).encode("latin-1"))
    return pages


def labels_pdf(labels: Sequence[Label], path: Path) -> int:
    """Write every label onto A4 pages (21 a page); return the number of pages."""
    contents = _pages(labels)
    objects: list[bytes] = []
    n_pages = len(contents)
    # Object numbers: 1 catalog, 2 pages, 3 font, then (page, content) pairs.
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n_pages))
    objects.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objects.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    objects.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    for i, content in enumerate(contents):
        page = (
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 {PAGE_W} {PAGE_H}] "
            f"/Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>"
        )
        objects.append(page.encode())
        packed = zlib.compress(content)
        objects.append(
            f"<< /Length {len(packed)} /Filter /FlateDecode >>\nstream\n".encode() + packed + b"\nendstream"
        )
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(out))
        out += f"{number} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objects) + 1}\n0000000000 65535 f \n".encode()
    out += b"".join(f"{off:010d} 00000 n \n".encode() for off in offsets)
    out += f"trailer\n<< /Size {len(objects) + 1} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n".encode()
    path.write_bytes(bytes(out))
    return n_pages


def write_labels(labels: Iterable[Label], out_dir: Path, pdf_name: str = "labels.pdf") -> LabelSheet:
    """Write ``<serial>.png`` for each label and one PDF sheet of them all into ``out_dir``."""
    items = list(labels)
    out_dir.mkdir(parents=True, exist_ok=True)
    pngs = [label_png(label, out_dir / f"{_file_safe(label.serial)}.png") for label in items]
    pdf = out_dir / pdf_name
    pages = labels_pdf(items, pdf)
    return LabelSheet(pngs=pngs, pdf=pdf, pages=pages)


def _file_safe(serial: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_." else "_" for ch in serial) or "device"
