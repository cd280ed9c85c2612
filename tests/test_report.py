"""The HTML run report: funnel counts, files on disk, escaping and placeholders, on real photos."""
from __future__ import annotations

import base64
import hashlib
import io

import numpy as np
import pyarrow as pa
import pytest
import skimage.data
from PIL import Image, ImageFilter

from curate.config import CurateConfig, ReportConfig, Rule, load_config
from curate.reasons import DECODE_FAILURES, Reason
from curate.report import funnel, write_report
from curate.schema import HASH_COLUMNS, LABEL_COLUMNS, STAT_COLUMNS, conform
from curate.stats_stage import StatsStage
from report_page import Node, parse

CONFIG = load_config()
SCRIPT_CAPTION = '<script>alert("pwned")</script> a cat on a rug'
REASONS_TYPE = pa.list_(pa.string())


def _jpeg(arr: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(arr).save(out, "JPEG", quality=90)
    return out.getvalue()


def _blur(arr: np.ndarray) -> np.ndarray:
    return np.asarray(Image.fromarray(arr).filter(ImageFilter.GaussianBlur(4)))


def _sources() -> dict[str, tuple[bytes | None, list[str] | None]]:
    """source key -> (bytes, hand-set reasons; None where the stats stage decides)."""
    astronaut, cat, coffee = skimage.data.astronaut(), skimage.data.chelsea(), skimage.data.coffee()
    dim = (astronaut * 0.3).astype(np.uint8)  # sharp, but no highlights: under-exposed
    astronaut_jpeg = _jpeg(astronaut)
    return {
        "astronaut.jpg": (astronaut_jpeg, []),
        "cat.jpg": (_jpeg(cat), []),
        "coffee.jpg": (_jpeg(coffee), []),
        "rocket.jpg": (_jpeg(skimage.data.rocket()), []),
        "astronaut-copy.jpg": (astronaut_jpeg, ["exact_duplicate"]),
        "astronaut-blurred.jpg": (_jpeg(_blur(astronaut)), ["blurry"]),
        "coffee-blurred.jpg": (_jpeg(_blur(coffee)), ["blurry", "near_duplicate"]),
        # Sharp but almost black: the contrast-free clarity still sees its detail.
        "astronaut-dark.jpg": (_jpeg((astronaut * 0.03).astype(np.uint8)), ["underexposed"]),
        "astronaut-dim.jpg": (_jpeg(dim), ["underexposed"]),
        "cat-small.jpg": (_jpeg(np.asarray(Image.fromarray(cat).resize((200, 133)))), ["too_small", "blurry"]),
        "truncated.jpg": (astronaut_jpeg[:5000], None),
        "noise.jpg": (bytes(np.random.default_rng(0).integers(0, 256, 3000, dtype=np.uint8)), None),
        "empty.jpg": (b"", None),
        "missing.jpg": (None, ["read_error"]),
    }


@pytest.fixture(scope="module")
def run() -> tuple[pa.Table, dict[str, bytes | None]]:
    """Every row of a small run: measured by the stats stage, decisions set by hand."""
    sources = _sources()
    keys = list(sources)
    data = [sources[k][0] for k in keys]
    table = pa.table(
        {
            "id": [hashlib.sha256(d if d is not None else k.encode()).hexdigest() for k, d in zip(keys, data)],
            "source_uri": ["/data/run/images"] * len(keys),
            "source_index": list(range(len(keys))),
            "source_key": keys,
            "image": pa.array(data, pa.binary()),
            "caption": [SCRIPT_CAPTION if k == "cat.jpg" else f"a photo: {k}" for k in keys],
            "reasons": pa.array([["read_error"] if d is None else [] for d in data], REASONS_TYPE),
            "error_message": ["file vanished" if d is None else None for d in data],
        }
    )
    table = StatsStage(CONFIG.decode)(table)
    measured = table.column("reasons").to_pylist()
    reasons = [sources[k][1] if sources[k][1] is not None else m for k, m in zip(keys, measured)]
    table = table.set_column(table.schema.get_field_index("reasons"), "reasons", pa.array(reasons, REASONS_TYPE))
    table = table.append_column("keep", pa.array([not r for r in reasons]))
    # Rejected rows carry no bytes, as in a real run; the report must fetch them.
    kept_bytes = [d if not r else None for d, r in zip(data, reasons)]
    table = table.set_column(table.schema.get_field_index("image"), "image", pa.array(kept_bytes, pa.binary()))
    return conform(table), {k: sources[k][0] for k in keys}


class Fetch:
    """fetch_image for the run: bytes by source key; coffee has vanished, rocket is now corrupt."""

    def __init__(self, sources: dict[str, bytes | None]):
        self.sources = sources
        self.calls: list[str] = []

    def __call__(self, row: dict) -> bytes | None:
        self.calls.append(row["source_key"])
        if row["source_key"] == "coffee.jpg":
            return None
        if row["source_key"] == "rocket.jpg":
            return b"\xff\xd8\xff\xe0 this is not a jpeg any more"
        return row["image"] if row["image"] is not None else self.sources[row["source_key"]]


class Page:
    """What the tests read back from report.html."""

    def __init__(self, text: str):
        self.root = parse(text)
        self.imgs = [n.attrs["src"] for n in self.root.select("img")]
        self.funnel = {tr.attrs["data-step"]: [td.text for td in tr.select("td")]
                       for tr in self.root.select("tr") if "data-step" in tr.attrs}
        self.reasons = self.root.one("section", id="reasons")
        self.figures: dict[str, list[str]] = {}  # reason page -> titles of the figures shown at once
        self.more: dict[str, list[str]] = {}  # reason page -> titles of the figures under "more"
        self.placeholders: dict[str, list[str]] = {}
        for section in self.reasons.select("section"):
            name = section.attrs["data-reason"]
            hidden = {id(f) for d in section.select("details", "more") for f in d.select("figure")}
            figures = section.select("figure")
            self.figures[name] = [f.attrs["title"] for f in figures if id(f) not in hidden]
            self.more[name] = [f.attrs["title"] for f in figures if id(f) in hidden]
            self.placeholders[name] = [d.text for d in section.select("div", "placeholder")]

    def histograms(self) -> dict[str, Node]:
        """Stat column -> its inline SVG histogram (statistics and captions sections)."""
        statistics = self.root.one("section", id="statistics")
        captions = self.root.one("section", id="captions")
        return {n.attrs["data-column"]: n for s in (statistics, captions) for n in s.select("svg")}


def _image(uri: str, kind: str) -> Image.Image:
    prefix = f"data:image/{kind};base64,"
    assert uri.startswith(prefix), uri[:40]
    return Image.open(io.BytesIO(base64.b64decode(uri[len(prefix):])))


@pytest.fixture(scope="module")
def report(run, tmp_path_factory):
    table, sources = run
    fetch = Fetch(sources)
    out = tmp_path_factory.mktemp("run")
    path = write_report(out, table, CONFIG, fetch)
    return out, path, Page(path.read_text(encoding="utf-8")), fetch


def test_hand_set_decisions_agree_with_measured_stats_and_default_rules(run):
    table, _ = run
    for row in table.to_pylist():
        if set(row["reasons"]) & DECODE_FAILURES:
            continue  # rules judge only rows that decoded
        for rule in CONFIG.rules:
            value = row[rule.column]
            if value is None:
                violated = rule.on_null == "reject"
            else:
                violated = (rule.min is not None and value < rule.min) or (rule.max is not None and value > rule.max)
            assert violated == (rule.reason in row["reasons"]), (row["source_key"], rule, value)
    by_key = {r["source_key"]: r["reasons"] for r in table.to_pylist()}
    assert by_key["truncated.jpg"] == ["truncated"]
    assert by_key["noise.jpg"] == ["unsupported_format"]
    assert by_key["empty.jpg"] == ["empty_file"]


def test_funnel_counts_each_row_once_at_its_first_step(run):
    table, _ = run
    decode = {"read_error": 1, "empty_file": 1, "unsupported_format": 1, "truncated": 1}  # every other: 0
    assert funnel(table, CONFIG) == [
        ("rows in", 14),
        *[(str(r), decode.get(r, 0)) for r in Reason if r in DECODE_FAILURES],  # in Reason order
        ("too_small", 1),  # cat-small is also blurry, counted here only
        ("bad_aspect", 0),
        ("blurry", 2),  # coffee-blurred is also a near duplicate, counted here only
        ("overexposed", 0),  # two rules share the reason: one step
        ("underexposed", 2),
        ("border", 0),
        ("text_heavy", 0),  # model rules: the models did not run here (null, on_null: pass)
        ("nsfw", 0),
        ("exact_duplicate", 1),
        ("near_duplicate", 0),  # coffee-blurred carries it but went at blurry
        ("kept", 4),
    ]


def test_funnel_follows_the_rule_order_of_the_config(run):
    table, _ = run
    config = CurateConfig(
        rules=[
            Rule(column="stat_underexposed", max=0.35, reason="underexposed"),
            Rule(column="stat_clarity", min=100, reason="blurry"),
            Rule(column="stat_short_side", min=256, reason="too_small"),
            Rule(column="stat_short_side", min=64, reason="too_small"),  # shared reason: one step
        ]
    )
    rows = funnel(table, config)
    n_decode = len(DECODE_FAILURES)
    assert [name for name, _ in rows[1:1 + n_decode]] == [str(r) for r in Reason if r in DECODE_FAILURES]
    assert [name for name, _ in rows[1:5]] == ["read_error", "empty_file", "unsupported_format", "bad_header"]
    assert rows[1 + n_decode:] == [
        ("underexposed", 2),
        ("blurry", 3),
        ("too_small", 0),
        ("exact_duplicate", 1),
        ("near_duplicate", 0),
        ("kept", 4),
    ]
    assert sum(n for _, n in rows[1:]) == rows[0][1]


def test_funnel_gives_unknown_reasons_a_step_and_rejects_contradicting_keep():
    table = pa.table({"reasons": pa.array([["watermark"], [], ["blurry", "watermark"], None], REASONS_TYPE)})
    rows = funnel(table, CONFIG)  # no default rule gives watermark
    assert rows[-3:] == [("near_duplicate", 0), ("watermark", 1), ("kept", 2)]
    assert dict(rows)["blurry"] == 1
    assert funnel(table.slice(0, 0), CONFIG) == [(name, 0) for name, _ in rows if name != "watermark"]
    contradicting = table.append_column("keep", pa.array([True, True, False, None]))
    with pytest.raises(ValueError, match="disagrees"):
        funnel(contradicting, CONFIG)
    with pytest.raises(ValueError, match="reasons"):
        funnel(pa.table({"id": ["a"]}), CONFIG)


def test_report_shows_every_funnel_step_with_its_count(run, report):
    table, _ = run
    _, path, page, _ = report
    assert path.name == "report.html"
    expected = funnel(table, CONFIG)
    assert list(page.funnel) == [name for name, _ in expected]
    for name, n in expected:
        assert page.funnel[name][2] == f"{n:,}", name
    carried = {r for rs in table.column("reasons").to_pylist() for r in rs}
    assert carried <= set(page.figures)  # a sample section for every reason present


def test_the_report_is_one_self_contained_file(report):
    out, path, page, _ = report
    assert [p.name for p in out.iterdir()] == ["report.html"]  # no asset folder, nothing beside it
    assert page.imgs and all(src.startswith("data:image/") for src in page.imgs)
    links = [n.attrs["href"] for n in page.root.select("a")]
    assert links and all(href.startswith("#") for href in links)  # only anchors inside the page
    anchors = {n.attrs["id"] for n in page.root.find_all(lambda n: "id" in n.attrs)}
    assert {href[1:] for href in links} <= anchors
    thumbs = [n.attrs["src"] for n in page.reasons.select("img")]
    # One per (reason, row carrying it) and per kept row, except the 4 decode failures and the
    # two kept rows whose bytes are gone (coffee) or corrupt (rocket): too_small 1, blurry 3,
    # underexposed 2, exact_duplicate 1, near_duplicate 1, kept 2.
    assert len(thumbs) == 10
    for src in thumbs:
        with _image(src, "jpeg") as img:
            assert img.format == "JPEG"
            assert max(img.size) == CONFIG.report.thumbnail_side


def test_a_histogram_per_stat_with_data_and_none_for_hashes(run, report):
    table, _ = run
    _, _, page, _ = report
    shown = page.histograms()
    kept = np.array(table.column("keep").to_pylist())
    for column in STAT_COLUMNS:
        if column in HASH_COLUMNS or column in LABEL_COLUMNS or table.column(column).null_count == table.num_rows:
            assert column not in shown, column
            continue
        svg = shown[column]
        values = np.array(table.column(column).to_pylist(), dtype=float)
        assert f"kept ({np.count_nonzero(kept & np.isfinite(values))})" in svg.text, column
        assert svg.select("rect", data_group="0")  # kept rows drawn
        bounds = sorted(b for r in CONFIG.rules if r.column == column for b in (r.min, r.max) if b is not None)
        assert sorted(float(n.attrs["data-threshold"]) for n in svg.select("line") if "data-threshold" in n.attrs) == bounds


def test_untrusted_caption_is_escaped(report):
    _, path, _, _ = report
    text = path.read_text(encoding="utf-8")
    assert "<script" not in text.lower()
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt; a cat on a rug" in text


def test_missing_or_corrupt_bytes_become_placeholders(run, report):
    table, _ = run
    _, path, page, fetch = report
    why = {
        "coffee.jpg": "image unavailable: fetch returned no bytes",
        "rocket.jpg": "cannot decode: ",
    }
    kept = sorted((r["id"], r["source_key"]) for r in table.to_pylist() if r["keep"])
    expected = [why[key] for _, key in kept if key in why]
    assert len(page.placeholders["kept"]) == 2
    for text, start in zip(page.placeholders["kept"], expected):
        assert text.startswith(start), text
    assert len(page.figures["kept"]) == 4
    # Rows that failed to decode are never fetched again; their error is shown.
    for reason in DECODE_FAILURES & set(page.figures):
        assert page.placeholders[reason] == [f"not decodable ({reason})"]
    assert not {"truncated.jpg", "noise.jpg", "empty.jpg", "missing.jpg"} & set(fetch.calls)
    text = path.read_text(encoding="utf-8")
    assert "file vanished" in text and "zero bytes" in text and "image file is truncated" in text


def test_samples_are_the_smallest_ids_up_to_the_limit_and_old_asset_folders_go(run, tmp_path):
    table, sources = run
    config = CurateConfig(rules=CONFIG.rules, report=ReportConfig(thumbnails_per_reason=2, thumbnail_side=64))
    old = tmp_path / "report" / "thumbs"  # what reports wrote before they inlined their images
    old.mkdir(parents=True)
    (old / "s00_00.jpg").write_bytes(b"old")
    (tmp_path / "report" / "funnel.png").write_bytes(b"old")
    page = Page(write_report(tmp_path, table, config, Fetch(sources)).read_text(encoding="utf-8"))
    blurry_ids = sorted(r["id"] for r in table.to_pylist() if "blurry" in r["reasons"])
    assert len(blurry_ids) == 3
    shown = [title.split("\n")[0] for title in page.figures["blurry"]]
    assert shown == [f"id {i[:16]}…" for i in blurry_ids[:2]]
    assert [title.split("\n")[0] for title in page.more["blurry"]] == [f"id {blurry_ids[2][:16]}…"]
    assert not (tmp_path / "report").exists()
    for src in page.reasons.select("img"):
        with _image(src.attrs["src"], "jpeg") as img:
            assert max(img.size) == 64


def test_a_stat_without_values_gets_no_histogram(run, tmp_path):
    table, sources = run
    idx = table.schema.get_field_index("stat_brightness")
    blank = table.set_column(idx, "stat_brightness", pa.nulls(table.num_rows, pa.float32()))
    page = Page(write_report(tmp_path, blank, CONFIG, Fetch(sources)).read_text(encoding="utf-8"))
    assert "stat_brightness" not in page.histograms()
    assert "stat_clarity" in page.histograms()


def test_an_empty_run_still_writes_a_report(tmp_path):
    empty = conform(pa.table({"id": pa.array([], pa.string()), "source_uri": pa.array([], pa.string()),
                              "source_index": pa.array([], pa.int64()), "reasons": pa.array([], REASONS_TYPE)}))
    page = Page(write_report(tmp_path, empty, CONFIG, lambda row: None).read_text(encoding="utf-8"))
    assert page.funnel["rows in"][2] == "0" and page.funnel["kept"][2] == "0"
    assert page.imgs == [] and page.histograms() == {}
    assert page.root.one("section", id="funnel").select("svg")  # the funnel chart, all zero
    assert "no duplicates" in page.root.one("section", id="duplicates").text
