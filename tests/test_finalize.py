"""Finalize as maps over units: the same decisions as deciding the whole table at once; bounded report."""
from __future__ import annotations

import re

import pyarrow as pa
import yaml

import curate
from cases import TEST_CONFIG, write_folder
from curate.config import CurateConfig
from curate.finalize import DEDUP_COLUMNS, unit_inputs
from curate.manifest import read_manifest, units_of
from curate.pipeline import run
from curate.retune import retune
from curate.rules import decide
from curate.store import Store


def _config(**update) -> CurateConfig:
    raw = yaml.safe_load(TEST_CONFIG)
    for key, value in update.items():
        raw.setdefault(key, {}).update(value)
    return CurateConfig.model_validate(raw)


def test_unit_by_unit_decisions_equal_deciding_every_row_at_once(tmp_path):
    out = tmp_path / "out"
    run(str(write_folder(tmp_path / "in")), str(out), _config())
    store = Store.open(str(out))
    manifest = read_manifest(store)
    from curate.finalize import Plan

    plan = Plan(units=units_of(manifest), groups=manifest["groups"], current=manifest["current"], generation=0,
                input_desc="", measured_with={}, stage="test")
    assert len(plan.units) > 1  # the test config cuts the sample into several units
    whole = decide(pa.concat_tables([unit_inputs(store, plan, _config(), u) for u in plan.units]), _config())
    ours = curate.open(str(out)).read(["row_key", "keep", "reasons", "dup_of"])
    assert ours.equals(whole.select(["row_key", "keep", "reasons", "dup_of"]))
    assert "image" not in DEDUP_COLUMNS and len(DEDUP_COLUMNS) < 25


def test_report_of_a_large_output_samples_rows_but_counts_exactly(tmp_path):
    out = tmp_path / "out"
    result = run(str(write_folder(tmp_path / "in")), str(out), _config(report={"max_rows": 4}))
    html = (out / "report.html").read_text()
    shown = int(re.search(r"sample of ([\d,]+) of ([\d,]+) rows", html).group(1))
    assert 0 < shown < result.manifest["rows"]["in"]
    from curate.report.funnel import funnel

    exact = funnel(curate.open(str(out)).read(["reasons", "keep"]), _config())
    for step, count in exact:  # the funnel table has the counts of every row, not of the sample
        cells = re.search(rf'data-step="{re.escape(step)}"><td>[^<]*</td><td>[^<]*</td><td class="n">([\d,]+)<', html)
        assert cells and int(cells.group(1).replace(",", "")) == count, step
    # and a retune into a fresh folder of the same output agrees with an in-place retune
    loose = _config(report={"max_rows": 4})
    assert retune(str(out), loose, output=str(tmp_path / "o2"))["rows"] == result.manifest["rows"]
