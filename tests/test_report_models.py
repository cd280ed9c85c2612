"""The report's model parts, on a real ``curate run`` with a model pass and a retune over known boxes.

``curate run`` measures ``stat_watermark`` with the counting test double (tests/model_doubles.py)
under a rule on it, with ``models.nsfw`` on ``auto`` but pointed at a missing file (off for a
reason). Then a second ``models`` version, written with ``curate.groups.GroupWriter``, holds
known face and text boxes and an ``ocr_text`` with markup in it, and ``retune`` decides with
rules over them: the report must plot each model stat with its threshold, draw the boxes on the
thumbnails of the new reasons at the boxes' coordinates, say which models ran and which are off
and why, and show the recognised text escaped and truncated.
"""
from __future__ import annotations

import io

import numpy as np
import pyarrow as pa
import pytest
from PIL import Image

import curate
import model_doubles
from cases import TEST_CONFIG, cases, write_folder
from curate.config import CurateConfig, load_config
from curate.groups import GroupWriter
from curate.models import registry
from curate.pipeline import run
from curate.report import write_report
from curate.report.figures import OCR_CHARS
from curate.retune import retune
from curate.schema import GROUPS, conform
from report_page import Node, parse

MISSING_NSFW = "/nowhere/open_nsfw.onnx"
FACE = {"x0": 0.25, "y0": 0.125, "x1": 0.75, "y1": 0.5, "score": 0.99}  # on b_chelsea
TEXT_BOXES = [{"x0": 0.1, "y0": 0.6, "x1": 0.9, "y1": 0.7, "score": 0.95},
              {"x0": 0.2, "y0": 0.75, "x1": 0.6, "y1": 0.85, "score": 0.9}]  # on e_china
LONG_LINE = "x" * 300
OCR_TEXT = f'STOP <script>alert("pwned")</script>\n{LONG_LINE}'
MODELS_YAML = f"models:\n  watermark: {{enabled: true}}\n  nsfw: {{enabled: auto, model: {MISSING_NSFW}}}\n"


def _mean_red(key: str) -> float:
    img = Image.open(io.BytesIO(cases()[key][0])).convert("RGB")
    img.thumbnail((1280, 1280))
    return float(np.asarray(img)[..., 0].mean() / 255)


def _config(path, extra_rules: str = "") -> CurateConfig:
    cut = (_mean_red("c_coffee") + _mean_red("d_rocket")) / 2
    rules = f"  - {{column: stat_watermark, max: {cut}, reason: watermark, on_null: pass}}\n" + extra_rules
    end = TEST_CONFIG.index("dedup:")
    path.write_text(TEST_CONFIG[:end] + rules + TEST_CONFIG[end:] + MODELS_YAML)
    return load_config(path)


def _write_boxes(out: str) -> None:
    """A second models version: the first one's values plus known boxes, areas and text."""
    from curate.reader import open_output

    manifest = open_output(out).manifest
    first = manifest["groups"]["models"][manifest["current"]["models"]]
    writer = GroupWriter(out, "models", "boxes", "test: known boxes", first["settings"])
    for unit in writer.units:
        table = writer.output.read_unit(unit, [*GROUPS["models"], "source_uri"])
        rows = table.to_pylist()
        for row in rows:
            key = row.pop("source_uri").rsplit("/", 1)[-1][:-4]
            if row["model_pass"] != "measured":
                continue
            row["stat_face_count"], row["stat_face_area"], row["face_boxes"] = 0, 0.0, []
            row["stat_ocr_boxes"], row["stat_ocr_area"], row["ocr_boxes"], row["ocr_text"] = 0, 0.0, [], None
            if key == "b_chelsea":
                row["stat_face_count"], row["stat_face_area"], row["face_boxes"] = 1, 0.1875, [FACE]
            if key == "e_china":
                row["stat_ocr_boxes"], row["stat_ocr_area"], row["ocr_boxes"] = 2, 0.12, TEXT_BOXES
                row["ocr_text"] = OCR_TEXT
        writer.write(unit, conform(pa.Table.from_pylist(rows), writer.schema))
    writer.commit()


@pytest.fixture(scope="module")
def reports(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("report_models")
    src = write_folder(tmp / "in")
    out = str(tmp / "out")
    with pytest.MonkeyPatch.context() as mp:
        mp.setitem(registry.MODELS, "watermark", "model_doubles")
        model_doubles.CALLS.clear()
        result = run(str(src), out, _config(tmp / "run.yaml"))
        first = (tmp / "out" / "report.html").read_text(encoding="utf-8")
        _write_boxes(out)
        extra = ("  - {column: stat_ocr_area, max: 0.1, reason: text_heavy, on_null: pass}\n"
                 "  - {column: stat_face_count, max: 0, reason: faces, on_null: pass}\n")
        calls = sum(model_doubles.CALLS)
        retune(out, _config(tmp / "retune.yaml", extra))
        assert sum(model_doubles.CALLS) == calls  # the report reads the stored values; no model ran again
    second = (tmp / "out" / "report.html").read_text(encoding="utf-8")
    keys = {r["source_uri"].rsplit("/", 1)[-1][:-4]: r["row_key"]
            for r in curate.open(out).read(["row_key", "source_uri"]).to_pylist()}
    return {"first": first, "second": second, "keys": keys, "manifest": result.manifest}


def _figure(page: Node, section: str, row_key: int) -> Node:
    return page.one("section", id=f"reason-{section}").one("figure", data_row_key=str(row_key))


def test_model_stat_histograms_carry_their_thresholds(reports):
    cut = (_mean_red("c_coffee") + _mean_red("d_rocket")) / 2
    for html in (reports["first"], reports["second"]):
        stats = parse(html).one("section", id="statistics")
        chart = stats.one("svg", data_column="stat_watermark")
        assert chart.one("line", data_threshold=repr(float(cut)))  # the rule's bound, as the CPU charts draw it
        assert chart.select("rect", data_group="1")  # the rows the watermark rule rejected, stacked
    stats = parse(reports["second"]).one("section", id="statistics")
    assert stats.one("svg", data_column="stat_ocr_area").one("line", data_threshold="0.1")
    assert stats.one("svg", data_column="stat_face_count").one("line", data_threshold="0.0")
    assert not stats.select("svg", data_column="stat_nsfw")  # off: no values, no chart
    assert not parse(reports["first"]).one("section", id="statistics").select("svg", data_column="stat_face_count")


def test_new_reasons_have_thumbnails_with_boxes_at_their_coordinates(reports):
    page, keys = parse(reports["second"]), reports["keys"]
    lower, higher = sorted(["c_coffee", "d_rocket"], key=_mean_red)
    assert _figure(page, "watermark", keys[higher]).select("img")
    face = _figure(page, "faces", keys["b_chelsea"])
    img = face.one("img")
    w, h = int(img.attrs["width"]), int(img.attrs["height"])
    (rect,) = face.select("rect", "box")
    assert rect.attrs["data-kind"] == "face"
    got = [float(rect.attrs[k]) for k in ("x", "y", "width", "height")]
    want = [FACE["x0"] * w, FACE["y0"] * h, (FACE["x1"] - FACE["x0"]) * w, (FACE["y1"] - FACE["y0"]) * h]
    assert got == pytest.approx(want, abs=0.06)
    text = _figure(page, "text_heavy", keys["e_china"])
    img = text.one("img")
    w, h = int(img.attrs["width"]), int(img.attrs["height"])
    rects = text.select("rect", "box")
    assert [r.attrs["data-kind"] for r in rects] == ["text", "text"]
    for r, b in zip(rects, TEXT_BOXES):
        assert float(r.attrs["x"]) == pytest.approx(b["x0"] * w, abs=0.06)
        assert float(r.attrs["y"]) == pytest.approx(b["y0"] * h, abs=0.06)
        assert float(r.attrs["width"]) == pytest.approx((b["x1"] - b["x0"]) * w, abs=0.06)
    face_colour, text_colour = face.one("rect", "box").attrs["stroke"], rects[0].attrs["stroke"]
    assert face_colour != text_colour
    legend = page.one("section", id="reason-faces").one("p", "box-legend")
    assert {k.attrs["data-kind"] for k in legend.select("span", "box-key")} == {"face", "text"}
    assert not _figure(page, "watermark", keys[higher]).select("svg", "boxes")  # no boxes: no overlay


def test_model_stages_section_says_what_ran_and_what_is_off(reports):
    for html in (reports["first"], reports["second"]):
        section = parse(html).one("section", id="models")
        assert section.one("tr", data_model="watermark")
        assert not section.select("tr", data_model="nsfw")
        cascade = section.one("p", "cascade")
        assert (cascade.attrs["data-measured"], cascade.attrs["data-copied"], cascade.attrs["data-skipped"]) == ("7", "1", "9")
        (off,) = section.select("li", "off")  # only the model off for a reason; the disabled ones on one line
        assert off.attrs["data-model"] == "nsfw" and MISSING_NSFW in off.text and "models.nsfw" in off.text
        assert "ocr" in section.one("p", "disabled").text
        assert 'href="#models"' in html


def test_ocr_text_is_shown_escaped_and_truncated_on_text_heavy_thumbnails(reports):
    html = reports["second"]
    assert "<script>alert" not in html
    page = parse(html)
    (ocr,) = _figure(page, "text_heavy", reports["keys"]["e_china"]).select("span", "ocr")
    assert ocr.text.startswith('STOP <script>alert("pwned")</script> / xxx')  # the parser unescaped it: it was text
    assert len(ocr.text) == OCR_CHARS and ocr.text.endswith("…")
    assert "&lt;script&gt;alert(&quot;pwned&quot;)&lt;/script&gt;" in html
    assert not _figure(page, "faces", reports["keys"]["b_chelsea"]).select("span", "ocr")  # only the text reasons


def test_no_models_group_gives_one_line_pointing_to_the_models_command(tmp_path):
    data = cases()["a_astronaut"][0]
    table = pa.table({"row_key": [1], "id": ["a" * 64], "source_uri": ["a.jpg"], "source_index": [0], "width": [512],
                      "height": [512], "keep": [True], "reasons": pa.array([[]], pa.list_(pa.string()))})
    html = write_report(tmp_path, table, CurateConfig(), lambda row: data).read_text(encoding="utf-8")
    section = parse(html).one("section", id="models")
    line = section.one("p", data_models="none")
    assert "refinery curate models" in line.text
    assert not section.select("table") and not section.select("li", "off")
    assert not parse(html).select("h3", id="model-statistics")


def test_semantic_duplicates_get_a_funnel_step_a_cluster_and_a_page(tmp_path):
    photos = {k: cases()[k][0] for k in ("a_astronaut", "b_chelsea")}
    ids = {"a_astronaut": "a" * 64, "b_chelsea": "b" * 64}
    table = pa.table({
        "row_key": [1, 2], "id": [ids["a_astronaut"], ids["b_chelsea"]], "source_uri": ["a_astronaut.jpg", "b_chelsea.jpg"],
        "source_index": [0, 0], "width": [512, 451], "height": [512, 300], "keep": [True, False],
        "reasons": pa.array([[], ["semantic_duplicate"]], pa.list_(pa.string())), "dup_of": [None, ids["a_astronaut"]]})
    raw = CurateConfig().model_dump(mode="json")
    raw["dedup"]["semantic"]["enabled"] = True
    config = CurateConfig.model_validate(raw)
    fetch = lambda row: photos[row["source_uri"][:-4]]  # noqa: E731
    page = parse(write_report(tmp_path, table, config, fetch).read_text(encoding="utf-8"))
    funnel = page.one("section", id="funnel")
    steps = [tr.attrs["data-step"] for tr in funnel.select("tr") if "data-step" in tr.attrs]
    assert steps[-3:] == ["near_duplicate", "semantic_duplicate", "kept"]  # a configured step, after near
    assert funnel.one("tr", data_step="semantic_duplicate").select("td")[2].text == "1"  # removed: 1
    cluster = page.one("section", id="duplicates").one("div", "cluster", data_keeper=ids["a_astronaut"])
    assert cluster.one("figure", "copy").attrs["data-reason"] == "semantic_duplicate"
    assert page.one("section", id="reason-semantic_duplicate").one("figure", data_row_key="2").select("img")


def test_the_report_sample_keeps_bounded_text_and_boxes():
    from curate.report.models_html import BOXES_KEPT, TEXT_KEPT, compact_model_columns
    from curate.schema import subschema

    boxes = [{"x0": 0.0, "y0": 0.0, "x1": 0.1, "y1": 0.1, "score": 1.0}] * (BOXES_KEPT + 36)
    table = conform(pa.table({"row_key": [1, 2], "ocr_text": ["é" * (TEXT_KEPT * 3), None],
                              "ocr_boxes": [boxes, None], "face_boxes": [[], boxes[:3]]}),
                    subschema(["row_key", "ocr_text", "ocr_boxes", "face_boxes"]))
    rows = compact_model_columns(table).to_pylist()
    assert rows[0]["ocr_text"] == "é" * TEXT_KEPT and rows[1]["ocr_text"] is None
    assert len(rows[0]["ocr_boxes"]) == BOXES_KEPT and rows[1]["ocr_boxes"] is None
    assert rows[0]["face_boxes"] == [] and len(rows[1]["face_boxes"]) == 3
