"""The model pass of ``curate run``: cascade, copies, skipped rows, groups, rules and retune.

Uses a counting test double in place of a real model (tests/model_doubles.py) so that the
plumbing is checked exactly; the real models have their own tests (tests/test_models_*.py).
"""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image
import io

import curate
import model_doubles
from cases import TEST_CONFIG, cases, write_folder
from curate.config import load_config
from curate.models import registry
from curate.pipeline import run
from curate.retune import retune
from outputs import check_manifest

CPU_REJECTED = {"g_blur_coffee", "h_small_chelsea", "i_over_china", "j_under_flower", "k_wide_astronaut"}
FAILED = {"n_truncated", "o_empty", "p_bomb", "q_text"}


@pytest.fixture
def double(monkeypatch):
    monkeypatch.setitem(registry.MODELS, "watermark", "model_doubles")
    model_doubles.CALLS.clear()
    model_doubles.SETUPS.clear()
    return model_doubles


def _config(tmp_path, extra: str = ""):
    path = tmp_path / "c.yaml"
    path.write_text(TEST_CONFIG + "models:\n  watermark: {enabled: true}\n" + extra)
    return load_config(path)


def _rows(out) -> dict[str, dict]:
    return {r["source_uri"].rsplit("/", 1)[-1][:-4]: r for r in curate.open(str(out)).read().to_pylist()}


def _mean_red(key: str) -> float:
    img = Image.open(io.BytesIO(cases()[key][0])).convert("RGB")
    img.thumbnail((1280, 1280))
    return float(np.asarray(img)[..., 0].mean() / 255)


def test_cascade_measures_rows_passing_cpu_rules_once_and_copies_exact_copies(tmp_path, double):
    src = write_folder(tmp_path / "in")
    result = run(str(src), str(tmp_path / "out"), _config(tmp_path))
    rows = _rows(tmp_path / "out")
    measured = {k for k, r in rows.items() if r["model_pass"] == "measured"}
    assert measured == set(cases()) - CPU_REJECTED - FAILED  # the copy too: it carries its source's values
    assert sum(double.CALLS) == len(measured) - 1  # m_copy_astronaut was not decoded again: same bytes
    assert double.SETUPS == ["cpu"]
    assert {k for k, r in rows.items() if r["model_pass"] == "skipped"} == CPU_REJECTED | FAILED
    assert all(rows[k]["stat_watermark"] is None for k in CPU_REJECTED | FAILED)
    assert rows["m_copy_astronaut"]["stat_watermark"] == rows["a_astronaut"]["stat_watermark"]
    assert rows["c_coffee"]["stat_watermark"] == pytest.approx(_mean_red("c_coffee"), abs=0.02)
    entry = result.manifest["groups"]["models"][result.manifest["current"]["models"]]
    assert (entry["settings"]["measured_rows"], entry["settings"]["copied_rows"], entry["settings"]["skipped_rows"]) == (7, 1, 9)
    assert "embeddings" not in result.manifest["groups"]  # no CLIP: no embeddings group
    check_manifest(tmp_path / "out")


def test_cascade_off_measures_every_decoded_row(tmp_path, double):
    src = write_folder(tmp_path / "in")
    run(str(src), str(tmp_path / "out"), _config(tmp_path, "  cascade: false\n"))
    rows = _rows(tmp_path / "out")
    assert {k for k, r in rows.items() if r["model_pass"] == "measured"} == set(cases()) - FAILED
    assert sum(double.CALLS) == len(cases()) - len(FAILED) - 1


def test_rule_on_a_model_stat_decides_and_retune_reapplies_it_without_the_model(tmp_path, double):
    src = write_folder(tmp_path / "in")
    cut = (_mean_red("c_coffee") + _mean_red("d_rocket")) / 2
    lower, higher = sorted(["c_coffee", "d_rocket"], key=_mean_red)
    rule = f"  - {{column: stat_watermark, max: {cut}, reason: watermark, on_null: pass}}\n"
    cfg_text = TEST_CONFIG.replace("dedup:", "rules_placeholder:", 1)
    path = tmp_path / "c.yaml"
    rules_end = TEST_CONFIG.index("dedup:")
    path.write_text(TEST_CONFIG[:rules_end] + rule + TEST_CONFIG[rules_end:] + "models:\n  watermark: {enabled: true}\n")
    assert cfg_text  # the config above keeps every CPU rule of TEST_CONFIG
    run(str(src), str(tmp_path / "out"), load_config(path))
    rows = _rows(tmp_path / "out")
    assert rows[higher]["reasons"] == ["watermark"] and not rows[higher]["keep"]
    assert rows[lower]["keep"]
    calls = sum(double.CALLS)
    path.write_text(TEST_CONFIG + "models:\n  watermark: {enabled: true}\n")  # the model rule dropped
    retune(str(tmp_path / "out"), load_config(path))
    assert sum(double.CALLS) == calls  # retune ran no model
    assert _rows(tmp_path / "out")[higher]["keep"]


def test_enabled_model_that_cannot_run_fails_at_start_naming_the_setting(tmp_path):
    src = write_folder(tmp_path / "in")
    path = tmp_path / "c.yaml"
    path.write_text(TEST_CONFIG + "models:\n  watermark: {enabled: true, model: /nowhere/wm.onnx}\n")
    with pytest.raises(Exception, match=r"models\.watermark\.model"):
        run(str(src), str(tmp_path / "out"), load_config(path))


def test_retune_that_promotes_skipped_rows_says_they_need_a_model_pass(tmp_path, double, capsys):
    from curate.models.unmeasured import unmeasured

    src = write_folder(tmp_path / "in")
    run(str(src), str(tmp_path / "out"), _config(tmp_path))
    assert unmeasured(str(tmp_path / "out")) == 0
    path = tmp_path / "relaxed.yaml"
    path.write_text(TEST_CONFIG.replace("  - {column: stat_clarity, min: 100, reason: blurry}\n", "")
                    + "models:\n  watermark: {enabled: true}\n")
    capsys.readouterr()
    retune(str(tmp_path / "out"), load_config(path))
    rows = _rows(tmp_path / "out")
    assert "blurry" not in rows["g_blur_coffee"]["reasons"]  # promoted (kept, or a near-duplicate of c_coffee)
    assert rows["g_blur_coffee"]["model_pass"] == "skipped"
    assert rows["g_blur_coffee"]["stat_watermark"] is None  # never invented
    assert unmeasured(str(tmp_path / "out")) == 1
    assert "1 row now pass the CPU rules but were never measured" in capsys.readouterr().err


def test_measure_fills_only_the_promoted_rows_then_decides_again(tmp_path, double):
    from curate.cli import main
    from curate.models.unmeasured import unmeasured

    src = write_folder(tmp_path / "in")
    run(str(src), str(tmp_path / "out"), _config(tmp_path))
    before = _rows(tmp_path / "out")
    path = tmp_path / "relaxed.yaml"
    path.write_text(TEST_CONFIG.replace("  - {column: stat_clarity, min: 100, reason: blurry}\n", "")
                    + "models:\n  watermark: {enabled: true}\n")
    retune(str(tmp_path / "out"), load_config(path))
    calls = sum(double.CALLS)
    assert main(["measure", str(tmp_path / "out"), "--config", str(path)]) == 0
    rows = _rows(tmp_path / "out")
    assert sum(double.CALLS) - calls == 1  # only g_blur_coffee: the others keep their values
    assert rows["g_blur_coffee"]["model_pass"] == "measured"
    assert rows["g_blur_coffee"]["stat_watermark"] == pytest.approx(_mean_red("g_blur_coffee"), abs=0.02)
    assert all(rows[k]["stat_watermark"] == before[k]["stat_watermark"] for k in before if k != "g_blur_coffee")
    assert unmeasured(str(tmp_path / "out")) == 0
    assert main(["measure", str(tmp_path / "out"), "--config", str(path)]) == 0  # nothing left: no new version
    assert sum(double.CALLS) - calls == 1
    check_manifest(tmp_path / "out")


def test_measure_refuses_what_is_not_a_finished_output_in_one_line(tmp_path, capsys):
    from curate.cli import main

    (tmp_path / "empty").mkdir()
    assert main(["measure", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "not a finished refinery output" in err and err.count("\n") == 1
    src = write_folder(tmp_path / "in")
    run(str(src), str(tmp_path / "stats-only"), load_config(), stats_only=True)
    assert main(["measure", str(tmp_path / "stats-only")]) == 2
    assert "--stats-only" in capsys.readouterr().err
