"""The HTML run report: funnel counts, files on disk, escaping and placeholders, on real photos."""
from __future__ import annotations

import hashlib
import io
from html.parser import HTMLParser

import numpy as np
import pyarrow as pa
import pytest
import skimage.data
from PIL import Image, ImageFilter

from curate.config import CurateConfig, ReportConfig, Rule, load_config
from curate.reasons import DECODE_FAILURES
from curate.report import funnel, write_report
from curate.schema import HASH_COLUMNS, STAT_COLUMNS, conform
from curate.stats_stage import StatsStage

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


class Page(HTMLParser):
    """What the tests read back from report.html."""

    def __init__(self, text: str):
        super().__init__()
        self.imgs: list[str] = []
        self.funnel: dict[str, list[str]] = {}
        self.figures: dict[str, list[str]] = {}  # section reason -> figure titles
        self.placeholders: dict[str, list[str]] = {}  # section reason -> placeholder texts
        self._step = self._section = None
        self._cells: list[str] = []
        self._text: list[str] | None = None
        self._in_placeholder = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "img":
            self.imgs.append(a["src"])
        elif tag == "tr" and "data-step" in a:
            self._step, self._cells = a["data-step"], []
        elif tag == "td" and self._step is not None:
            self._text = []
        elif tag == "section":
            self._section = a["data-reason"]
            self.figures[self._section], self.placeholders[self._section] = [], []
        elif tag == "figure":
            self.figures[self._section].append(a["title"])
        elif tag == "div" and a.get("class") == "placeholder":
            self._in_placeholder, self._text = True, []

    def handle_data(self, data):
        if self._text is not None:
            self._text.append(data)

    def handle_endtag(self, tag):
        if tag == "td" and self._step is not None:
            self._cells.append("".join(self._text))
            self._text = None
        elif tag == "tr" and self._step is not None:
            self.funnel[self._step] = self._cells
            self._step = None
        elif tag == "div" and self._in_placeholder:
            self.placeholders[self._section].append("".join(self._text))
            self._in_placeholder, self._text = False, None


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
    assert funnel(table, CONFIG) == [
        ("rows in", 14),
        ("read_error", 1),
        ("empty_file", 1),
        ("unsupported_format", 1),
        ("bad_header", 0),
        ("too_many_pixels", 0),
        ("truncated", 1),
        ("corrupt", 0),
        ("too_large", 0),
        ("path_not_allowed", 0),
        ("too_complex", 0),
        ("stage_error", 0),
        ("too_small", 1),  # cat-small is also blurry, counted here only
        ("bad_aspect", 0),
        ("blurry", 2),  # coffee-blurred is also a near duplicate, counted here only
        ("overexposed", 0),  # two rules share the reason: one step
        ("underexposed", 2),
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
    decode = [(str(r), n) for r, n in rows[1:12]]
    assert [name for name, _ in decode] == [
        "read_error", "empty_file", "unsupported_format", "bad_header", "too_many_pixels", "truncated", "corrupt",
        "too_large", "path_not_allowed", "too_complex", "stage_error",
    ]
    assert rows[12:] == [
        ("underexposed", 2),
        ("blurry", 3),
        ("too_small", 0),
        ("exact_duplicate", 1),
        ("near_duplicate", 0),
        ("kept", 4),
    ]
    assert sum(n for _, n in rows[1:]) == rows[0][1]


def test_funnel_gives_unknown_reasons_a_step_and_rejects_contradicting_keep():
    table = pa.table({"reasons": pa.array([["nsfw"], [], ["blurry", "nsfw"], None], REASONS_TYPE)})
    rows = funnel(table, CONFIG)
    assert rows[-3:] == [("near_duplicate", 0), ("nsfw", 1), ("kept", 2)]
    assert dict(rows)["blurry"] == 1
    assert funnel(table.slice(0, 0), CONFIG) == [(name, 0) for name, _ in rows if name != "nsfw"]
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


def test_every_image_link_is_relative_and_exists(report):
    out, _, page, _ = report
    assert page.imgs
    for src in page.imgs:
        assert not src.startswith("/") and "://" not in src and ".." not in src, src
        assert (out / src).is_file(), src
    thumbs = [src for src in page.imgs if src.startswith("report/thumbs/")]
    # One per (reason, row carrying it) and per kept row, except the 4 decode failures and the
    # two kept rows whose bytes are gone (coffee) or corrupt (rocket): too_small 1, blurry 3,
    # underexposed 2, exact_duplicate 1, near_duplicate 1, kept 2.
    assert len(thumbs) == 10
    for src in thumbs:
        with Image.open(out / src) as img:
            assert img.format == "JPEG"
            assert max(img.size) == CONFIG.report.thumbnail_side


def test_a_histogram_per_stat_with_data_and_none_for_hashes(run, report):
    out, _, page, _ = report
    for column in STAT_COLUMNS:
        png = out / "report" / f"hist_{column}.png"
        if column in HASH_COLUMNS:
            assert not png.exists()
            continue
        assert f"report/hist_{column}.png" in page.imgs
        with Image.open(png) as img:
            assert img.format == "PNG" and img.width > 200


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


def test_samples_are_the_smallest_ids_up_to_the_limit_and_rewrites_leave_no_stale_files(run, tmp_path):
    table, sources = run
    config = CurateConfig(rules=CONFIG.rules, report=ReportConfig(thumbnails_per_reason=2, thumbnail_side=64))
    write_report(tmp_path, table, CONFIG, Fetch(sources))
    page = Page(write_report(tmp_path, table, config, Fetch(sources)).read_text(encoding="utf-8"))
    blurry_ids = sorted(r["id"] for r in table.to_pylist() if "blurry" in r["reasons"])
    assert len(blurry_ids) == 3
    shown = [title.split("\n")[0] for title in page.figures["blurry"]]
    assert shown == [f"id {i[:16]}…" for i in blurry_ids[:2]]
    on_disk = {p.relative_to(tmp_path).as_posix() for p in (tmp_path / "report").rglob("*") if p.is_file()}
    assert on_disk == set(page.imgs)


def test_a_stat_without_values_gets_no_histogram(run, tmp_path):
    table, sources = run
    idx = table.schema.get_field_index("stat_brightness")
    blank = table.set_column(idx, "stat_brightness", pa.nulls(table.num_rows, pa.float32()))
    page = Page(write_report(tmp_path, blank, CONFIG, Fetch(sources)).read_text(encoding="utf-8"))
    assert not (tmp_path / "report" / "hist_stat_brightness.png").exists()
    assert "report/hist_stat_clarity.png" in page.imgs


def test_an_empty_run_still_writes_a_report(tmp_path):
    empty = conform(pa.table({"id": pa.array([], pa.string()), "source_uri": pa.array([], pa.string()),
                              "source_index": pa.array([], pa.int64()), "reasons": pa.array([], REASONS_TYPE)}))
    page = Page(write_report(tmp_path, empty, CONFIG, lambda row: None).read_text(encoding="utf-8"))
    assert page.funnel["rows in"][2] == "0" and page.funnel["kept"][2] == "0"
    assert page.imgs == ["report/funnel.png"]
