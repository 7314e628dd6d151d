"""QR labels: PNGs decode to images of the expected size; the PDF sheet has the expected pages."""

from __future__ import annotations

import re
import struct
import zlib
from pathlib import Path

import segno

from provisioning.claims import claim_url
from provisioning.labels import COLS, PNG_BORDER, PNG_SCALE, ROWS, Label, write_labels


def _decode_png(data: bytes) -> tuple[int, int, bytes]:
    """Width, height and raw scanlines of a PNG, checking signature, chunk CRCs and data length."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, bit_depth, colour = 8, b"", 0, 0, 0, 0
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert zlib.crc32(kind + body) == crc
        if kind == b"IHDR":
            width, height, bit_depth, colour = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + length
    raw = zlib.decompress(idat)
    channels = {0: 1, 2: 3, 3: 1, 4: 2, 6: 4}[colour]
    row_bytes = (width * channels * bit_depth + 7) // 8
    assert len(raw) == height * (1 + row_bytes)
    return width, height, raw


def test_png_per_device_and_pdf_sheet(tmp_path: Path) -> None:
    """25 labels → 25 PNGs of (modules + 2 border) * scale pixels, and a 2-page PDF (21 a page)."""
    labels = [
        Label(
            f"SD-{i:03d}", claim_url("https://hub.example.cn", f"SD-{i:03d}", "7K3M-Q9XD-2HBT"), "smoke 烟感"
        )
        for i in range(25)
    ]
    sheet = write_labels(labels, tmp_path / "out")
    assert len(sheet.pngs) == 25 and sheet.pngs[0].name == "SD-000.png"
    modules = segno.make_qr(labels[0].payload, error="m").symbol_size(scale=1, border=0)[0]
    width, height, _ = _decode_png(sheet.pngs[0].read_bytes())
    assert width == height == (modules + 2 * PNG_BORDER) * PNG_SCALE

    pdf = sheet.pdf.read_bytes()
    assert sheet.pages == 2 == -(-25 // (COLS * ROWS))
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
    assert len(re.findall(rb"/Type /Page\b(?!s)", pdf)) == 2 and b"/Count 2" in pdf
    # Every xref offset must point at its object, or readers reject the file.
    xref_at = int(pdf[pdf.rindex(b"startxref") + 10 :].split()[0])
    xref = pdf[xref_at:].split(b"\n")
    assert xref[0] == b"xref" and xref[1].startswith(b"0 ")
    size = int(xref[1].split()[1])
    entries = xref[3 : 2 + size]
    assert len(entries) == size - 1 > 0
    for number, entry in enumerate(entries, start=1):
        assert entry.endswith(b" n "), entry
        offset = int(entry[:10])
        assert pdf[offset:].startswith(f"{number} 0 obj".encode())


def test_empty_label_list_still_gives_a_valid_one_page_pdf(tmp_path: Path) -> None:
    """No labels → one blank page rather than a broken file."""
    sheet = write_labels([], tmp_path)
    assert sheet.pages == 1 and sheet.pngs == [] and b"/Count 1" in sheet.pdf.read_bytes()
