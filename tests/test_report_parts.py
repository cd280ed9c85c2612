"""The report's parts on their own: caption statistics, threshold sides, thumbnail caps, histogram
stacking and overlay, the screenshot tool."""
from __future__ import annotations

import base64
import io
import xml.etree.ElementTree as ET

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

from curate.config import CurateConfig, ReportConfig, Rule, load_config
from curate.report import write_report
from curate.report.captions import caption_stats
from curate.report.plots import BOTTOM, H, OVERLAY_OPACITY, TOP, stat_svg
from curate.report.samples import PAGE_FACTOR
from curate.report.shot import INSTALL, _trim, main
from curate.report.thresholds import pick_marks, side_count
from curate.schema import conform
from photos import encode, photo
from report_page import parse

REASONS = pa.list_(pa.string())


def test_caption_statistics_count_empty_boilerplate_words_and_repeats():
    captions = [None, "   ", "Image may contain: a dog on grass", "https://example.com/a.jpg", "IMG_1234.JPG",
                "a dog on grass", "a dog on grass", "Stock Photo - dog © 2020 Alamy", "Untitled"]
    table = pa.table({"caption": captions, "keep": [True, False, True, True, False, True, False, True, True]})
    stats = caption_stats(table)
    assert (stats.empty_kept, stats.empty_rejected) == (1, 1)
    assert np.isnan(stats.chars[:2]).all() and stats.chars[5] == len("a dog on grass") and stats.words[5] == 4
    counts = {label: n for label, n, _ in stats.boilerplate}
    assert counts["image may contain"] == 1 and counts["URL only"] == 1 and counts["contains a URL"] == 1
    assert counts["file name"] == 2  # IMG_1234.JPG, and the URL ending in a.jpg (patterns overlap; each counts)
    assert counts["stock photo / image"] == 1 and counts["stock agency name"] == 1 and counts["copyright notice"] == 1
    assert counts["placeholder text"] == 1 and counts["royalty-free"] == 0
    assert dict(stats.top_words)["dog"] == 4 and "on" not in dict(stats.top_words)  # stopwords left out
    assert stats.repeats == [("a dog on grass", 2)]


def test_a_value_equal_to_a_bound_passes_and_sides_hold_the_closest_rows():
    values = [10.0, 20.0, 29.0, 30.0, 30.0, 31.0, 45.0, None]
    table = conform(pa.table({"id": [f"{i:02d}" for i in range(len(values))], "source_uri": ["/x"] * len(values),
                              "source_index": list(range(len(values))), "stat_short_side": pa.array(values, pa.int32()),
                              "reasons": pa.array([[]] * len(values), REASONS)}))
    config = CurateConfig(rules=[Rule(column="stat_short_side", min=30, max=40, reason="too_small")])
    low, high = pick_marks(table, config, per=4)  # 2 rows a side
    assert (low.bound, [v for _, v in low.below], [v for _, v in low.above]) == ("min", [20.0, 29.0], [30.0, 30.0])
    assert low.counts == (3, 4, 1, 3)  # below, above; within 10% of 30 (27..33): 29 below; 30, 30, 31 above
    assert (high.bound, [v for _, v in high.below], [v for _, v in high.above]) == ("max", [30.0, 31.0], [45.0])
    assert [r["id"] for r, _ in low.above] == ["03", "04"]  # a tie goes to the smaller id


def test_every_section_stays_within_the_thumbnail_caps(tmp_path):
    # 60 rows: 20 photos kept, each with an exact copy and a small copy; per = 2.
    rows = []
    for i in range(20):
        img = photo(["astronaut", "chelsea", "coffee", "rocket"][i % 4]).rotate(i * 7)
        data = encode(img.resize((300 + i, 300)))
        rows += [(f"k{i:02d}", data, [], None), (f"d{i:02d}", data, ["exact_duplicate"], f"k{i:02d}"),
                 (f"s{i:02d}", encode(img.resize((100, 100))), ["too_small"], None)]
    table = conform(pa.table({
        "id": [r[0] if not r[3] else r[3] for r in rows], "source_uri": ["/x"] * len(rows),
        "source_index": list(range(len(rows))), "image": pa.array([r[1] for r in rows], pa.binary()),
        "stat_short_side": pa.array([300 if r[0][0] != "s" else 100 for r in rows], pa.int32()),
        "reasons": pa.array([r[2] for r in rows], REASONS), "keep": [not r[2] for r in rows],
        "dup_of": [r[3] for r in rows]}))
    per = 2
    config = CurateConfig(rules=[Rule(column="stat_short_side", min=256, reason="too_small")],
                          report=ReportConfig(thumbnails_per_reason=per, thumbnail_side=32))
    page = parse(write_report(tmp_path, table, config, lambda row: row["image"]).read_text(encoding="utf-8"))
    for section in page.one("section", id="reasons").select("section"):
        assert len(section.select("figure")) == PAGE_FACTOR * per  # each reason has 20 rows: capped
    clusters = page.one("section", id="duplicates").select("div", "cluster")
    assert len(clusters) == per and all(len(c.select("figure", "copy")) == 1 for c in clusters)
    for side in page.one("section", id="thresholds").select("div", "side"):
        assert len(side.select("figure")) == side_count(per)
    assert len(page.select("img")) <= (2 + 1) * PAGE_FACTOR * per + 2 * per + 2 * side_count(per)


def _bars(svg: str) -> dict[tuple[int, float], tuple[float, float]]:
    """(group, bar x) -> (top y, bottom y) of each histogram bar."""
    rects = ET.fromstring(svg).iter("{http://www.w3.org/2000/svg}rect")
    return {(int(r.get("data-group")), float(r.get("x"))): (float(r.get("y")), float(r.get("y")) + float(r.get("height")))
            for r in rects if r.get("data-group") is not None}


def test_histogram_groups_stack_by_default_and_overlay_on_request():
    values = np.array([1, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3, 3], dtype=float)  # a: 1, 2, 2, 3 x3; b: 3 x6
    groups = [("a", np.arange(12) < 6), ("b", np.arange(12) >= 6)]
    stacked, overlaid = stat_svg("n", values, groups, []), stat_svg("n", values, groups, [], overlay=True)
    plot = H - TOP - BOTTOM
    s, o = _bars(stacked), _bars(overlaid)
    assert s.keys() == o.keys() and len(s) == 4  # a in three bins, b in one
    (x3,) = [x for g, x in s if g == 1]
    # stacked: b sits on a's bar of 3s, the stack of 9 fills the plot
    assert s[1, x3][1] == pytest.approx(s[0, x3][0], abs=0.15) and s[1, x3][0] == TOP
    assert s[0, x3][1] - s[0, x3][0] == pytest.approx(plot * 3 / 9, abs=0.15)
    # overlaid: every bar rises from the axis, on a scale up to the tallest single bar (b's 6)
    assert all(bottom == pytest.approx(H - BOTTOM, abs=0.15) for _, bottom in o.values())
    assert o[1, x3][0] == TOP and o[0, x3][1] - o[0, x3][0] == pytest.approx(plot * 3 / 6, abs=0.15)
    assert f'fill-opacity="{OVERLAY_OPACITY}"' in overlaid and "fill-opacity" not in stacked
    assert "a (6)" in overlaid and "b (6)" in overlaid


def test_the_screenshot_tool_says_how_to_install_chromium(tmp_path, monkeypatch, capsys):
    (tmp_path / "report.html").write_text("<p>hi</p>")
    monkeypatch.setenv("CHROMIUM", str(tmp_path / "no-such-browser"))
    assert main([str(tmp_path / "report.html"), str(tmp_path / "shot.png")]) == 2
    assert capsys.readouterr().err.strip() == INSTALL
    assert main([str(tmp_path / "missing.html"), str(tmp_path / "shot.png")]) == 2
    assert "refinery curate demo" in capsys.readouterr().err


def test_the_screenshot_is_cut_below_the_last_non_white_row(tmp_path):
    canvas = np.full((400, 100, 3), 255, np.uint8)
    canvas[50:120, 10:60] = (200, 30, 30)
    png = tmp_path / "shot.png"
    Image.fromarray(canvas).save(png)
    assert _trim(png) == (100, 120 + 24)
    with Image.open(png) as img:
        assert img.size == (100, 144)
        assert np.asarray(img)[60, 20].tolist() == [200, 30, 30]


@pytest.mark.parametrize("side", [16, 48])
def test_thumbnails_are_inlined_at_the_configured_side(tmp_path, side):
    data = encode(photo("astronaut"))
    table = conform(pa.table({"id": ["a"], "source_uri": ["/x"], "source_index": [0], "image": pa.array([data], pa.binary()),
                              "reasons": pa.array([[]], REASONS)}))
    config = CurateConfig(rules=load_config().rules, report=ReportConfig(thumbnails_per_reason=1, thumbnail_side=side))
    page = parse(write_report(tmp_path, table, config, lambda row: row["image"]).read_text(encoding="utf-8"))
    (img,) = page.select("img")
    with Image.open(io.BytesIO(base64.b64decode(img.attrs["src"].split(",", 1)[1]))) as thumb:
        assert thumb.format == "JPEG" and max(thumb.size) == side


def test_with_thumbnails_off_nothing_is_fetched_and_the_counts_stay(tmp_path):
    data = encode(photo("astronaut"))
    table = conform(pa.table({"id": ["a", "a"], "source_uri": ["/x"] * 2, "source_index": [0, 1],
                              "image": pa.array([data, data], pa.binary()), "stat_short_side": pa.array([512, 512], pa.int32()),
                              "reasons": pa.array([[], ["exact_duplicate"]], REASONS), "dup_of": [None, "a"]}))
    config = CurateConfig(rules=[Rule(column="stat_short_side", min=256, reason="too_small")],
                          report=ReportConfig(thumbnails_per_reason=0))
    fetched = []
    page = parse(write_report(tmp_path, table, config, lambda row: fetched.append(row) or row["image"]).read_text(encoding="utf-8"))
    assert fetched == [] and page.select("img") == [] and page.select("figure") == []
    assert "1 row rejected as copies of 1 kept images" in page.one("section", id="duplicates").text
    assert "0 rows below, 2 above" in page.one("section", id="thresholds").text
    assert "thumbnails are off" in page.one("section", id="reasons").text
