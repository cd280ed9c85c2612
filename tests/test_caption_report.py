"""The caption report on a real curated output with a captions group written beside it.

The captions group is a fixture for the report (values a captioner writes: ok rows, failures
with errors, an empty caption, a Chinese second caption, a caption holding ``<script>``), not a
double of the captioner.
"""
from __future__ import annotations

import base64
import io
import re
from pathlib import Path

import pyarrow as pa
import pytest
import yaml
from PIL import Image

import curate
from caption import tokens
from caption.report import write_report
from caption.report_html import PREVIEW_CHARS
from cases import TEST_CONFIG, write_folder
from curate.config import CurateConfig
from curate.groups import GroupWriter
from curate.layout import OutputError
from curate.pipeline import run
from curate.report.plots import BOTTOM, H, TOP
from curate.schema import group_schema
from report_page import parse

SCRIPT = '<script>alert("x")</script> an astronaut in a white suit before a flag'
ERROR = "backend raised: <timeout> after 60 s & no reply"
SECOND = "一名身穿白色宇航服的宇航员站在旗帜前"
LONG = ("A pink flower with five rounded petals and a yellow centre, photographed close up against a soft green "
        "background of leaves; fine veins run along each petal and a drop of water sits near the edge. ") * 2
# per input file: status, source drawn, synthetic caption, its language, second caption, error
PLAN = {
    "a_astronaut": ("ok", "synthetic", SCRIPT, "en", SECOND, None),
    "b_chelsea": ("caption_failed", "original", None, None, None, ERROR),
    "c_coffee": ("caption_empty", "original", "", None, None, None),
    "d_rocket": ("caption_failed", "original", None, None, None, ERROR),
    "e_china": ("ok", "synthetic", "The curved roof of a temple among tall trees.", "en", None, None),
    "f_flower": ("ok", "original", LONG, "en", "一朵粉红色的花", None),
}
SETTINGS = {"backend": "hf", "model_ref": "tiny-vlm@0123abcd", "prompts": ["detailed-en@1", "brief-zh@1"],
            "budget": {"encoder": "clip", "tokens": 60}, "mix": {"ratio": 0.5, "seed": 0},
            "mix_counts": {"fallback": 3, "no_original": 1, "original": 4, "synthetic": 2},
            "status_counts": {"caption_empty": 1, "caption_failed": 2, "not_kept": 11, "ok": 3}}


def _config() -> CurateConfig:
    return CurateConfig.model_validate(yaml.safe_load(TEST_CONFIG))


def _write_captions(out: Path, version: str, plan_of, settings: dict, make_current: bool = True) -> None:
    writer = GroupWriter(str(out), "captions", version, stage="caption run", settings=settings)
    for unit in writer.units:
        rows = writer.output.read_unit(unit, ["row_key", "keep", "source_uri"]).to_pylist()
        columns = {f.name: [] for f in group_schema("captions")}
        for row in rows:
            status, source, text, lang, second, error = plan_of(Path(row["source_uri"]).stem) if row["keep"] else \
                ("not_kept", None, None, None, None, None)
            values = {"row_key": row["row_key"], "caption_synthetic": text, "caption_status": status,
                      "caption_source": source, "caption_synthetic_lang": lang, "caption_error": error,
                      "caption_synthetic_2": second, "caption_synthetic_2_lang": "zh" if second else None,
                      "caption_synthetic_model": "tiny-vlm@0123abcd" if status != "not_kept" else None,
                      "caption_synthetic_prompt": "detailed-en@1" if text else None,
                      "caption_synthetic_tokens": tokens.count(text, "clip") if text else None,
                      "caption_synthetic_seconds": 0.8 if status != "not_kept" else None}
            for name in columns:
                columns[name].append(values.get(name))
        writer.write(unit, pa.table(columns, schema=group_schema("captions")))
    writer.commit(make_current)


@pytest.fixture(scope="module")
def out(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("caption-report")
    inputs = write_folder(root / "in")
    (inputs / "e_china.txt").unlink()  # a kept row without an original caption
    run(str(inputs), str(root / "out"), _config())
    with pytest.raises(OutputError, match="no captions group"):
        write_report(str(root / "out"))
    _write_captions(root / "out", "c-one", PLAN.__getitem__, SETTINGS)
    # a second version, current: every kept row captioned, on the synthetic caption
    _write_captions(root / "out", "c-two", lambda stem: ("ok", "synthetic", f"caption of {stem}", "en", None, None),
                    {"backend": "openai", "mix": {"ratio": 1.0, "seed": 3}})
    return root / "out"


@pytest.fixture(scope="module")
def page(out, tmp_path_factory):
    path = write_report(str(out), version="c-one", out_path=str(tmp_path_factory.mktemp("page") / "r.html"))
    text = Path(path).read_text(encoding="utf-8")
    return text, parse(text)


def _count(tree, key: str) -> int:
    return int(tree.one("tr", data_count=key).select("td", "n")[0].text.replace(",", ""))


def test_counts_follow_the_chosen_version(out, page):
    text, tree = page
    kept = curate.open(str(out)).read(["keep"], where="keep").num_rows
    assert kept == len(PLAN)
    assert _count(tree, "rows") == curate.open(str(out)).num_rows == 17
    assert _count(tree, "kept") == kept
    assert (_count(tree, "ok"), _count(tree, "caption_failed"), _count(tree, "caption_empty")) == (3, 2, 1)
    assert _count(tree, "not_kept") == 17 - kept
    assert _count(tree, "fallbacks") == 3  # b, c, d train on their original caption
    assert _count(tree, "synthetic_without_original") == 1  # e_china
    assert _count(tree, "no_caption") == 0
    mix = tree.one("p", "mix")
    assert mix.attrs["data-realised"] == f"{2 / 6:.4f}" and mix.attrs["data-configured"] == "0.5000"
    assert mix.attrs["data-eligible"] == "0.5000"  # of a and f (ok, with an original), a drew synthetic
    run_section = tree.one("section", id="run")
    assert run_section.one("dl", "run").attrs["data-version"] == "c-one"
    assert "not the current one" in run_section.text and "c-two (current)" in run_section.text
    settings = {r.attrs["data-key"]: r.select("td")[1].text for r in run_section.select("tr")}
    assert settings["backend"] == "hf" and settings["model_ref"] == "tiny-vlm@0123abcd"
    assert settings["prompts"] == "detailed-en@1, brief-zh@1" and settings["budget.encoder"] == "clip"
    assert settings["mix.ratio"] == "0.5" and settings["status_counts.caption_failed"] == "2"


def test_the_current_version_is_the_default_and_written_beside_the_output(out):
    path = write_report(str(out))
    assert path == str(out / "caption-report.html")
    tree = parse(Path(path).read_text(encoding="utf-8"))
    assert tree.one("dl", "run").attrs["data-version"] == "c-two"
    assert (_count(tree, "ok"), _count(tree, "fallbacks"), _count(tree, "caption_failed")) == (6, 0, 0)
    assert tree.one("p", "mix").attrs["data-realised"] == "1.0000"
    assert tree.select("table", data_column="caption_error") == []
    with pytest.raises(OutputError, match="no captions version 'c-nine'.*c-one"):
        write_report(str(out), version="c-nine")


def test_token_histograms_per_encoder(page):
    _, tree = page
    charts = {d.attrs["data-encoder"]: d for d in tree.one("section", id="tokens").select("div", "hist")}
    assert sorted(charts) == ["chatglm3", "clip", "t5"]
    for encoder, chart in charts.items():
        svg = chart.one("svg")
        title = svg.attrs["data-column"]
        assert chart.attrs["data-exact"] == str(tokens.EXACT[encoder]).lower()
        assert title.endswith("(estimate)") == (not tokens.EXACT[encoder])
        legend = svg.text
        assert "original (5)" in legend and "synthetic (3)" in legend  # e has no original; b, c, d no synthetic
        assert svg.select("rect", data_group="0") and svg.select("rect", data_group="1")
        # overlaid, not stacked: every bar rises from the axis, and the tallest reaches the top
        bars = [(float(r.attrs["y"]), float(r.attrs["height"])) for r in svg.select("rect") if "data-group" in r.attrs]
        assert all(abs(y + h - (H - BOTTOM)) < 0.2 for y, h in bars) and min(y for y, _ in bars) == TOP
        # the text room of each encoder's sequence (77, 256, 300 less its special tokens)
        assert svg.select("line", data_threshold=repr(float({"clip": 75, "chatglm3": 254, "t5": 299}[encoder])))
    assert charts["clip"].one("svg").select("line", data_threshold="58.0")  # the run's smaller budget of 60


def test_languages_and_grouped_failures(page):
    _, tree = page
    langs = tree.one("table", data_column="caption_synthetic_lang")
    assert [(r.attrs["data-value"], r.select("td")[1].text) for r in langs.select("tr", data_value="en")] == [("en", "3")]
    second = tree.one("table", data_column="caption_synthetic_2_lang")
    assert second.one("tr", data_value="zh").select("td")[1].text == "2"
    failures = tree.one("table", data_column="caption_error")
    row = failures.one("tr", data_value=ERROR)
    assert row.select("td")[0].text == ERROR and row.select("td")[1].text == "2"


def test_samples_side_by_side_escaped_with_thumbnails(page):
    text, tree = page
    assert "<script>alert" not in text and "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in text
    assert tree.select("script") == []
    rows = tree.one("table", "samples").select("tr")[1:]
    assert len(rows) == len(PLAN)  # 24 asked, 6 kept: all of them
    keys = [int(r.attrs["data-row-key"]) for r in rows]
    assert keys == sorted(keys)
    by_synthetic = {r.one("td", "synthetic").text: r for r in rows}
    astronaut = next(r for t, r in by_synthetic.items() if t.startswith(SCRIPT))
    assert astronaut.one("td", "second").text.startswith(SECOND)
    assert astronaut.one("td", "original").text == "an astronaut in a white suit in front of a flag"
    assert astronaut.one("td", "source").text.startswith("synthetic")
    clip = f"clip: {tokens.count('an astronaut in a white suit in front of a flag', 'clip')} / {tokens.count(SCRIPT, 'clip')}"
    assert clip in astronaut.one("td", "tokens").text.replace("~", "")
    assert f"stored (clip): {tokens.count(SCRIPT, 'clip')}" in astronaut.one("td", "tokens").text
    # a long caption: a preview cut at a space, the rest whole behind a toggle that says how much
    flower = next(r for t, r in by_synthetic.items() if t.startswith(LONG[:40]))
    text = flower.one("td", "synthetic").one("div", "caption-text")
    more = text.one("details", "more-text")
    preview, rest = text.parts[0], "".join(more.parts)
    assert len(preview) <= PREVIEW_CHARS and preview.endswith(" ") and preview + rest == LONG
    assert more.one("summary").text == f"… {len(rest):,} more characters"
    assert astronaut.one("td", "synthetic").select("details") == []
    assert sum(ERROR in r.one("td", "source").text for r in rows) == 2
    for r in rows:
        src = r.one("img").attrs["src"]
        assert src.startswith("data:image/jpeg;base64,")
        thumb = Image.open(io.BytesIO(base64.b64decode(src.split(",", 1)[1])))
        assert max(thumb.size) <= 192 and min(thumb.size) > 8


def test_samples_are_a_seeded_draw_among_kept_rows(out, tmp_path):
    def shown(seed: int) -> list[int]:
        path = write_report(str(out), version="c-one", out_path=str(tmp_path / f"{seed}.html"), samples=3, seed=seed)
        return [int(k) for k in re.findall(r'<tr data-row-key="(\d+)"', Path(path).read_text(encoding="utf-8"))]

    kept = set(curate.open(str(out)).read(["row_key"], where="keep").column("row_key").to_pylist())
    first = shown(1)
    assert len(first) == 3 and set(first) <= kept and shown(1) == first
    assert len({tuple(shown(s)) for s in range(6)}) > 1  # another seed, another draw
