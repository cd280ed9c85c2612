"""The report of a real run of the bundled sample: run header, duplicate clusters beside their
keeper, rows around each threshold, and after a retune the difference to the previous
generation, each checked against the decisions and stats files the run wrote."""
from __future__ import annotations

import shutil
from collections import Counter

import pyarrow.parquet as pq
import pytest

import curate
from curate.config import CurateConfig, load_config
from curate.pipeline import run
from curate.report.header import config_fingerprint
from curate.report.thresholds import side_count
from curate.retune import retune
from curate.sample import build_sample
from report_page import Node, parse

CONFIG = load_config()
PER = CONFIG.report.thumbnails_per_reason


def _tuned() -> CurateConfig:
    """The defaults with a stricter size bound and a looser clarity bound: rows move both ways."""
    raw = CONFIG.model_dump(mode="json")
    for rule in raw["rules"]:
        if rule["column"] == "stat_short_side":
            rule["min"] = 340
        if rule["column"] == "stat_clarity_norm":
            rule["min"] = 0.25
    return CurateConfig.model_validate(raw)


def _decisions(folder) -> dict[int, list[str]]:
    table = pq.read_table(folder, columns=["row_key", "reasons"])
    return dict(zip(table.column("row_key").to_pylist(), table.column("reasons").to_pylist()))


@pytest.fixture(scope="module")
def sample_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("report_sample")
    build_sample(root / "sample", "folder", seed=0)
    out = root / "curated"
    run(str(root / "sample"), str(out), CONFIG)  # 43 rows: in this process, no Ray
    first = parse((out / "report.html").read_text(encoding="utf-8"))
    shutil.copy(out / "report.html", root / "report-g0.html")
    rows = curate.open(str(out)).read(["row_key", "id", "keep", "reasons", "dup_of", *{r.column for r in CONFIG.rules}])
    g0 = _decisions(out / "decisions" / "g0")  # the retune removes it once its own manifest is written
    retune(str(out), _tuned())
    g1 = _decisions(out / "decisions" / "g1")
    tuned = parse((out / "report.html").read_text(encoding="utf-8"))
    back = root / "back"
    retune(str(out), CONFIG, output=str(back))  # into a new folder: compared with the source's g1
    g2 = _decisions(back / "decisions" / "g2")
    again = parse((back / "report.html").read_text(encoding="utf-8"))
    return {"root": root, "first": first, "rows": rows.to_pylist(), "g0": g0, "g1": g1, "tuned": tuned,
            "g2": g2, "again": again}


def _keys(nodes: list[Node]) -> list[int]:
    return [int(n.attrs["data-row-key"]) for n in nodes]


def test_the_header_names_the_input_generation_config_and_time(sample_run):
    header = sample_run["first"].one("section", id="run")
    cells = {dt.text: dd.text for dt, dd in zip(header.select("dt"), header.select("dd"))}
    assert cells["input"] == str((sample_run["root"] / "sample").resolve())
    assert cells["stage"] == "curate run, generation 0"
    assert cells["config"].startswith(config_fingerprint(CONFIG))
    assert cells["time taken"].endswith("rows/s)")
    tuned = {dt.text: dd.text for dt, dd in zip(*(sample_run["tuned"].one("section", id="run").select(t) for t in ("dt", "dd")))}
    assert tuned["stage"] == "curate retune, generation 1"
    assert tuned["config"].startswith(config_fingerprint(_tuned())) and config_fingerprint(_tuned()) != config_fingerprint(CONFIG)


def test_duplicates_are_shown_beside_the_image_kept_in_their_place(sample_run):
    rows = sample_run["rows"]
    by_key = {r["row_key"]: r for r in rows}
    copies: dict[str, set[int]] = {}
    for r in rows:
        if r["dup_of"]:
            copies.setdefault(r["dup_of"], set()).add(r["row_key"])
    assert len(copies) >= 4 and any(by_key[k]["reasons"] == ["near_duplicate"] for ks in copies.values() for k in ks)
    section = sample_run["first"].one("section", id="duplicates")
    clusters = section.select("div", "cluster")
    assert {c.attrs["data-keeper"] for c in clusters} == set(copies)  # 5 clusters, under the cap of PER
    for cluster in clusters:
        keeper_id = cluster.attrs["data-keeper"]
        (keeper,) = _keys(cluster.select("figure", "keeper"))
        assert by_key[keeper]["keep"] and by_key[keeper]["id"] == keeper_id
        shown = cluster.select("figure", "copy")
        assert set(_keys(shown)) == copies[keeper_id]
        for figure in shown:
            assert figure.attrs["data-reason"] in by_key[int(figure.attrs["data-row-key"])]["reasons"]
        for img in cluster.select("img"):  # every image there, the keeper's included, is a real thumbnail
            assert img.attrs["src"].startswith("data:image/jpeg;base64,")
        assert len(cluster.select("img")) == 1 + len(shown)


def test_the_rows_just_below_and_above_each_threshold(sample_run):
    rows, k = sample_run["rows"], side_count(PER)
    section = sample_run["first"].one("section", id="thresholds")
    bounds = [(r, b, getattr(r, b)) for r in CONFIG.rules for b in ("min", "max") if getattr(r, b) is not None]
    assert len(section.select("div", "threshold")) == len(bounds) == len(CurateConfig().rules)
    for rule, bound, t in bounds:
        mark = section.one("div", "threshold", data_column=rule.column, data_bound=bound)
        assert float(mark.attrs["data-threshold"]) == t and mark.attrs["data-reason"] == rule.reason
        values = [r[rule.column] for r in rows if r[rule.column] is not None]
        rejected = [v for v in values if (v < t if bound == "min" else v > t)]
        passing = [v for v in values if v not in rejected]
        low, high = (rejected, passing) if bound == "min" else (passing, rejected)
        below = mark.one("div", "below")
        above = mark.one("div", "above")
        assert ("rejected" in below.classes()) == (bound == "min") and ("rejected" in above.classes()) == (bound == "max")
        shown_below = [float(f.attrs["data-value"]) for f in below.select("figure")]
        shown_above = [float(f.attrs["data-value"]) for f in above.select("figure")]
        if not values:  # a model stat: the model stages are off in this suite, the column is null
            assert rule.on_null == "pass" and not shown_below and not shown_above, rule.column
            continue
        assert shown_below == sorted(low)[-k:] and shown_above == sorted(high)[:k], rule.column
        assert shown_below or shown_above  # (the sample has no framed photo: nothing above stat_border's bound)
        by_key = {r["row_key"]: r for r in rows}
        for figure in (below if bound == "min" else above).select("figure"):  # rejected side: the rule fired
            assert rule.reason in by_key[int(figure.attrs["data-row-key"])]["reasons"]


def _expected_diff(before: dict[int, list[str]], after: dict[int, list[str]], order: list[str]) -> dict[str, Counter]:
    first = lambda reasons: min(reasons, key=order.index)  # noqa: E731
    out = {name: Counter() for name in ("before", "after", "gained", "lost", "kept_to_rejected", "rejected_to_kept")}
    for key, old in before.items():
        new = after[key]
        out["before"].update(old)
        out["after"].update(new)
        out["gained"].update(set(new) - set(old))
        out["lost"].update(set(old) - set(new))
        if not old and new:
            out["kept_to_rejected"][first(new)] += 1
        if old and not new:
            out["rejected_to_kept"][first(old)] += 1
    return out


def _shown_diff(page: Node) -> tuple[dict[str, Counter], int]:
    section = page.one("section", id="difference")
    out: dict[str, Counter] = {}
    for tr in section.select("tr"):
        if "data-reason" not in tr.attrs:
            continue
        for td in tr.select("td"):
            if "data-col" in td.attrs and int(td.text.replace(",", "")):
                out.setdefault(td.attrs["data-col"], Counter())[tr.attrs["data-reason"]] = int(td.text.replace(",", ""))
    (totals,) = section.find_all(lambda n: "data-changed" in n.attrs)
    return out, int(totals.attrs["data-changed"])


def _funnel_order(page: Node) -> list[str]:
    return [tr.attrs["data-step"] for tr in page.one("section", id="funnel").select("tr") if "data-step" in tr.attrs]


def test_a_first_run_has_no_difference_to_show(sample_run):
    section = sample_run["first"].one("section", id="difference")
    assert not section.select("table") and "no previous generation" in section.text


def test_after_a_retune_the_difference_counts_match_the_decisions_files(sample_run):
    g0, g1, page = sample_run["g0"], sample_run["g1"], sample_run["tuned"]
    expected = _expected_diff(g0, g1, _funnel_order(page))
    assert sum(expected["kept_to_rejected"].values()) and sum(expected["rejected_to_kept"].values())  # both ways
    shown, changed = _shown_diff(page)
    assert shown == {name: +c for name, c in expected.items() if +c}
    assert changed == sum(expected["kept_to_rejected"].values()) + sum(expected["rejected_to_kept"].values())
    # Thumbnails of the rows that changed: the smallest ids of each (change, reason), up to PER.
    ids, order = {r["row_key"]: r["id"] for r in sample_run["rows"]}, _funnel_order(page)
    section = page.one("section", id="difference")
    moved: dict[tuple[str, str], list[int]] = {}
    for key, old, new in [(k, g0[k], g1[k]) for k in g0]:
        if bool(old) != bool(new):
            change = "rejected_to_kept" if old else "kept_to_rejected"
            moved.setdefault((change, min(old or new, key=order.index)), []).append(key)
    assert {key: len(keys) for key, keys in moved.items()} == {
        (change, reason): n for change in ("kept_to_rejected", "rejected_to_kept") for reason, n in expected[change].items()}
    for (change, reason), keys in moved.items():
        div = section.one("div", "changes", data_change=change, data_reason=reason)
        assert sorted(_keys(div.select("figure"))) == sorted(sorted(keys, key=lambda k: (ids[k], k))[:PER])
    assert len(section.select("div", "changes")) == len(moved)


def test_a_retune_into_a_new_folder_is_compared_with_its_source(sample_run):
    g1, g2, page = sample_run["g1"], sample_run["g2"], sample_run["again"]
    expected = _expected_diff(g1, g2, _funnel_order(page))
    shown, _ = _shown_diff(page)
    assert shown == {name: +c for name, c in expected.items() if +c}
    # Back to the defaults: what the first retune moved one way moves back the other way.
    first, _ = _shown_diff(sample_run["tuned"])
    assert shown["kept_to_rejected"] == first["rejected_to_kept"]
    assert shown["rejected_to_kept"] == first["kept_to_rejected"]
    assert sample_run["g2"] == sample_run["g0"]
