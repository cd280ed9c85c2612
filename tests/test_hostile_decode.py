"""Bounded decode work: a JPEG with thousands of scans, and the decode watchdog.

A progressive JPEG is a sequence of scans, each a pass over every block of the image; a
crafted file repeats scans so that a few hundred KB take minutes to decode. The file here is
built from a real photo: Pillow's progressive encoding (10 scans) with its smallest scan
repeated 1,500 times (libjpeg decodes repeated refinement scans with a warning, so without a
limit it decodes, slowly).
"""
from __future__ import annotations

import io

import pyarrow as pa
import pytest
from PIL import Image
from photos import photo

from curate.config import DecodeConfig
from curate.decode import DecodeError, decode_grey, decode_rgb, read_header
from curate.reasons import Reason
from curate.schema import STAT_COLUMNS
from curate.stats_stage import StatsStage

SOS = b"\xff\xda"


def scans_of(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of each scan: its SOS segment and the entropy-coded data after it."""
    spans, pos = [], 2
    while data[pos + 1] != 0xD9:  # EOI
        end = pos + 2 + int.from_bytes(data[pos + 2 : pos + 4], "big")
        if data[pos + 1] == 0xDA:
            while data[end + 1] == 0 or 0xD0 <= data[end + 1] <= 0xD7 or data[end] != 0xFF:
                end = data.index(b"\xff", end + 1)
            spans.append((pos, end))
        pos = end
    return spans


def progressive_jpeg(size: tuple[int, int] = (640, 480)) -> bytes:
    buf = io.BytesIO()
    photo("astronaut").resize(size).save(buf, "JPEG", quality=90, progressive=True)
    return buf.getvalue()


def many_scans(extra: int, size: tuple[int, int] = (640, 480)) -> bytes:
    data = progressive_jpeg(size)
    start, end = min(scans_of(data), key=lambda span: span[1] - span[0])
    return data[:end] + data[start:end] * extra + data[end:]


def test_the_crafted_file_is_a_valid_many_scan_jpeg():
    clean, crafted = progressive_jpeg(), many_scans(1500)
    assert len(scans_of(clean)) == clean.count(SOS) == 10
    assert crafted.count(SOS) == len(scans_of(crafted)) == 1510
    with Image.open(io.BytesIO(crafted)) as img:
        img.draft("L", (80, 60))  # cheap: the 1/8 scaled decode still reads every scan
        img.load()
        assert img.size == (80, 60)


@pytest.mark.parametrize("decode", [read_header, decode_grey, decode_rgb], ids=lambda f: f.__name__)
def test_too_many_scans_is_too_complex_before_any_decoding(decode):
    with pytest.raises(DecodeError) as caught:
        decode(many_scans(1500))
    assert caught.value.reason is Reason.TOO_COMPLEX
    assert "1510 JPEG scans, over the limit decode.max_jpeg_scans=100" in caught.value.message


def test_the_scan_limit_comes_from_config():
    clean = progressive_jpeg()
    assert decode_grey(clean, DecodeConfig(max_jpeg_scans=10))[1].shape == (480, 640)
    with pytest.raises(DecodeError, match="10 JPEG scans, over the limit decode.max_jpeg_scans=9"):
        read_header(clean, DecodeConfig(max_jpeg_scans=9))
    header = read_header(many_scans(1500), DecodeConfig(max_jpeg_scans=2000))
    assert (header.format, header.width, header.height) == ("JPEG", 640, 480)


def test_the_watchdog_stops_a_decode_that_runs_too_long():
    # Under a raised scan limit the file decodes (test above); with a 1 ms budget it cannot
    # finish: 1,510 passes over 4,800 blocks take far longer on any machine.
    cfg = DecodeConfig(max_jpeg_scans=10_000, max_decode_seconds=0.001)
    for decode in (decode_grey, decode_rgb):
        with pytest.raises(DecodeError) as caught:
            decode(many_scans(1500), cfg)
        assert caught.value.reason is Reason.TOO_COMPLEX
        assert "decode.max_decode_seconds" in caught.value.message


def test_stats_stage_gives_the_row_too_complex_and_keeps_the_others():
    files = [progressive_jpeg(), many_scans(1500), progressive_jpeg((320, 240))]
    batch = pa.table({"image": pa.array(files, pa.binary()), "reasons": pa.array([[]] * 3, pa.list_(pa.string()))})
    rows = StatsStage()(batch).to_pylist()
    assert [r["reasons"] for r in rows] == [[], ["too_complex"], []]
    assert "max_jpeg_scans" in rows[1]["error_message"]
    assert all(rows[1][c] is None for c in ["width", "height", *STAT_COLUMNS])
    assert all(rows[0][c] is not None for c in STAT_COLUMNS) and rows[2]["width"] == 320
