"""Review fixes (issue 6's hostile review): config strictness, sidecar caps, Parquet folders,
refinery outputs below an input, the retune warning, messages, export meta, README reasons."""
from __future__ import annotations

import json
import re
import tarfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

import curate

from cases import TEST_CONFIG
from curate.config import ConfigError, CurateConfig, config_from, load_config
from curate.decode import DecodeError, read_header
from curate.export import export
from curate.pipeline import run
from curate.readers import list_partitions
from curate.readers.folder import NOTE_KEY, SIDECAR_MAX_BYTES
from curate.readers.listing import find_files
from curate.reasons import Reason
from curate.retune import retune
from photos import bomb_png
from reader_inputs import photo, read_all

README = Path(__file__).resolve().parent.parent / "README.md"


# ---------------------------------------------------------------- config (22)

def test_a_repeated_key_is_refused_naming_it_and_its_line(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("dedup:\n  radius: 4\n  near: true\n  radius: 6\n")
    with pytest.raises(ConfigError, match=r"duplicate key 'radius'.*line 4"):
        load_config(path)


@pytest.mark.parametrize("settings, where", [
    ({"dedup": {"radius": True}}, "dedup.radius"),
    ({"dedup": {"radius": "4"}}, "dedup.radius"),
    ({"stages": {"stats": {"num_cpus": True}}}, "stages.stats.num_cpus"),
    ({"rules": [{"column": "stat_aspect", "max": "3", "reason": "bad_aspect"}]}, r"rules\[0\]\.max"),
    ({"report": {"thumbnail_side": 100000}}, "report.thumbnail_side"),
    ({"report": {"thumbnails_per_reason": 100000}}, "report.thumbnails_per_reason"),
    ({"report": {"max_rows": 10**8}}, "report.max_rows"),
])
def test_numbers_must_be_numbers_and_report_sizes_are_bounded(settings, where):
    with pytest.raises(ConfigError, match=where):
        config_from(settings)


def test_an_int_is_still_a_float_and_reasons_are_strings():
    config = config_from({"stages": {"stats": {"num_cpus": 1}}, "rules": [{"column": "stat_aspect", "max": 3, "reason": "bad_aspect"}]})
    assert config.stages.stats.num_cpus == 1.0 and config.rules[0].reason is Reason.BAD_ASPECT


@pytest.mark.parametrize("actors, words", [
    (0, r"stages\.stats\.actors: Input should be greater than or equal to 1, got 0$"),
    ("x", r"stages\.stats\.actors: Input should be a valid integer or a mapping, got 'x'$"),
    ({"min": 3, "max": 1}, r"stages\.stats\.actors: actors\.min \(3\) must be <= actors\.max \(1\)$"),
    ({"min": 0, "max": 2}, r"stages\.stats\.actors\.min: Input should be greater than or equal to 1, got 0$"),
])
def test_union_errors_are_plain_words_without_pydantic_internals(actors, words):
    with pytest.raises(ConfigError) as err:
        config_from({"stages": {"stats": {"actors": actors}}})
    text = str(err.value)
    assert re.search(words, text), text
    assert not re.search(r"constrained|function-after|ActorPool|instance of", text)


# ---------------------------------------------------------------- sidecar caption cap (18)

def test_a_caption_over_one_mib_keeps_its_first_mib_cut_on_a_character_and_says_so(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(photo("chelsea"))
    (folder / "a.txt").write_text("x" + "é" * SIDECAR_MAX_BYTES, encoding="utf-8")  # 1 + 2 bytes each: cut mid-character
    (folder / "b.jpg").write_bytes(photo("coffee"))
    (folder / "b.txt").write_text("a cup", encoding="utf-8")
    (folder / "b.json").write_text(json.dumps({"url": "u", "pad": "y" * SIDECAR_MAX_BYTES}))
    cfg = load_config().input
    rows = {Path(r["source_uri"]).name: r for r in read_all(list_partitions(str(folder), cfg), cfg).to_pylist()}
    a, b = rows["a.jpg"], rows["b.jpg"]
    assert a["image"] and not a["reasons"]
    assert a["caption"] == "x" + "é" * ((SIDECAR_MAX_BYTES - 1) // 2) and "\ufffd" not in a["caption"]
    assert json.loads(a["meta"]) == {NOTE_KEY: "caption truncated at 1 MiB (sidecar over 1 MiB)"}
    assert b["caption"] == "a cup" and json.loads(b["meta"]) == {NOTE_KEY: "metadata sidecar over 1 MiB left out"}


# ---------------------------------------------------------------- Parquet folders (19)

def _parquet_folder(root: Path) -> Path:
    root.mkdir()
    for name in ("a", "b", "c"):
        (root / f"{name}.jpg").write_bytes(photo({"a": "chelsea", "b": "coffee", "c": "rocket"}[name]))
    pq.write_table(pa.table({"path": ["a.jpg", "b.jpg"], "caption": ["a cat", "a cup"]}), root / "index.parquet")
    return root


def test_a_folder_of_one_parquet_file_and_the_images_it_references_is_a_parquet_input(tmp_path, capsys):
    folder = _parquet_folder(tmp_path / "in")
    cfg = load_config().input
    parts = list_partitions(str(folder), cfg)
    assert [(p.kind, p.rows) for p in parts] == [("parquet", 2)]
    rows = read_all(parts, cfg).to_pylist()
    assert [r["caption"] for r in rows] == ["a cat", "a cup"]
    assert [r["image"] for r in rows] == [(folder / "a.jpg").read_bytes(), (folder / "b.jpg").read_bytes()]
    assert "3 image file(s) beside them" in capsys.readouterr().err


def test_a_refinery_output_below_the_input_is_not_listed(tmp_path, capsys):
    folder = _parquet_folder(tmp_path / "in")
    config = CurateConfig.model_validate(yaml.safe_load(TEST_CONFIG))
    run(str(folder / "index.parquet"), str(folder / "out"), config)  # --output beside the single input file
    assert (folder / "out" / "manifest.json").exists()
    capsys.readouterr()
    listing = find_files(str(folder))
    assert listing.skipped_outputs == 1 and not [f for f in listing.files if "/out/" in f]
    parts = list_partitions(str(folder), config.input)
    assert [(p.kind, p.rows) for p in parts] == [("parquet", 2)]
    assert "1 refinery output folder(s) below it not read" in capsys.readouterr().err


# ---------------------------------------------------------------- retune warning (9)

def test_retune_warns_about_the_rule_reasons_a_replacing_rules_list_dropped(tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(photo("astronaut", side=300))
    out = tmp_path / "out"
    run(str(folder), str(out), load_config())
    capsys.readouterr()
    loose = config_from({"rules": [{"column": "stat_short_side", "min": 128, "reason": "too_small"},
                                   {"column": "stat_clarity_norm", "min": 0.8, "reason": "blurry"}]})
    retune(str(out), loose)
    assert "warning: rules dropped since generation 0: bad_aspect, border, nsfw, overexposed, text_heavy, underexposed" in capsys.readouterr().err
    retune(str(out), load_config())  # the defaults again: nothing lost since generation 1
    assert "rules dropped" not in capsys.readouterr().err


# ---------------------------------------------------------------- messages, export meta (23)

def test_too_many_pixels_names_the_configured_budget_not_pillows():
    with pytest.raises(DecodeError) as err:
        read_header(bomb_png(20000, 20000))  # over Pillow's own bomb ceiling (2 x its limit) too
    assert err.value.reason == Reason.TOO_MANY_PIXELS
    assert "decode.max_pixels=89478485" in err.value.message and "178956970" not in err.value.message


def test_webdataset_json_carries_meta_as_an_object(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.jpg").write_bytes(photo("astronaut", side=300))
    (folder / "a.json").write_text(json.dumps({"url": "https://example.com/a.jpg", "status": "success"}))
    (folder / "b.jpg").write_bytes(photo("coffee", side=300))
    (folder / "b.json").write_text("not json")
    out = tmp_path / "out"
    run(str(folder), str(out), load_config())
    export(curate.open(str(out)), str(tmp_path / "wds"), "webdataset", where="")
    with tarfile.open(tmp_path / "wds" / "00000.tar") as tar:
        docs = [json.load(tar.extractfile(m)) for m in tar.getmembers() if m.name.endswith(".json")]
    metas = sorted((d["meta"] for d in docs), key=str)
    assert metas == ["not json", {"url": "https://example.com/a.jpg", "status": "success"}]


# ---------------------------------------------------------------- README (17)

def test_every_reason_code_is_in_the_readme_list():
    text = README.read_text(encoding="utf-8")
    section = text[text.index("Reason codes (`curate/reasons.py`"):text.index("### Reading an output")]
    missing = [r.value for r in Reason if f"`{r.value}`" not in section]
    assert not missing, f"README's reason list lacks {missing}"
