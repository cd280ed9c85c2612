"""Hostile review of ``caption run`` on real curated outputs: damaged image bytes on kept rows,
retune and re-curation after captioning, two prompts, ``--output`` at the input, S3 outputs, backends
that answer short: each a defect found once, or behaviour that must hold. Backends are
``caption_doubles`` (no model loads); everything runs in this process."""

import json
import logging
import os
import shutil
from pathlib import Path

import pytest
import yaml
from PIL import Image

import caption_doubles
import curate
from caption.remix import remix
from caption.run import run, staged_rows
from caption.target import open_target
from cases import TEST_CONFIG, write_folder
from curate.config import CurateConfig
from curate.layout import OutputError
from curate.pipeline import run as curate_run
from curate.retune import retune
from photos import encode, photo


from caption_hostile_support import STAGE, _cfg, _curate_cfg, _looser, curated, copy, _kept_keys, _rewrite_images, _scaled_size  # noqa: F401 (fixtures)


def test_kept_rows_whose_bytes_rotted_become_failed_rows_and_the_rest_are_captioned(copy, monkeypatch):
    keys = _kept_keys(copy)
    jpeg = encode(photo("coffee"))
    damage = {keys[0]: b"\x00" * 64, keys[1]: jpeg[: len(jpeg) // 3], keys[2]: b"", keys[3]: None,
              keys[4]: b"<html>not an image</html>"}
    _rewrite_images(copy, "image", damage)
    backend = caption_doubles.use(monkeypatch)
    result = run(str(copy), None, _cfg())
    rows = {r["row_key"]: r for r in curate.open(str(copy)).read(
        ["row_key", "caption", "caption_status", "caption_error", "caption_source", "caption_synthetic"],
        where="keep").to_pylist()}
    for key in damage:
        r = rows[key]
        assert r["caption_status"] == "caption_failed" and r["caption_error"].startswith("decode:"), r
        assert r["caption_synthetic"] is None and r["caption_source"] == "original"  # falls back, never dropped
    assert all(rows[k]["caption_status"] == "ok" for k in keys[5:])
    assert sum(backend.calls) == len(keys) - len(damage)  # the damaged rows never reach the model
    assert result.counts["caption_failed"] == len(damage) and result.counts["mix_fallback"] == len(damage)


def test_an_image_kept_under_the_outputs_own_decode_budget_is_captioned(tmp_path, monkeypatch):
    (tmp_path / "in").mkdir()
    Image.new("L", (9500, 9500), 128).save(tmp_path / "in" / "big.jpg", quality=80)  # 90.25 MP, over the default
    Image.new("RGB", (400, 300), (10, 200, 30)).save(tmp_path / "in" / "small.jpg")
    cfg = CurateConfig.model_validate({"decode": {"max_pixels": 100_000_000}, "dedup": {"exact": True, "near": False},
                                       "rules": [{"column": "stat_short_side", "min": 256, "reason": "too_small"}]})
    curate_run(str(tmp_path / "in"), str(tmp_path / "cur"), cfg)
    assert curate.open(str(tmp_path / "cur")).read(["keep"]).column("keep").to_pylist() == [True, True]
    caption_doubles.use(monkeypatch)
    run(str(tmp_path / "cur"), None, _cfg())
    rows = curate.open(str(tmp_path / "cur")).read(["width", "caption_status", "caption_error"]).to_pylist()
    assert all(r["caption_status"] == "ok" for r in rows), rows


# -- retune and re-curation after captioning -----------------------------------------------------
def test_a_retune_into_a_new_folder_then_caption_run_captions_the_newly_kept_rows(copy, tmp_path, monkeypatch):
    backend = caption_doubles.use(monkeypatch)
    run(str(copy), None, _cfg())
    before = set(_kept_keys(copy))
    retune(str(copy), _looser(), str(tmp_path / "retuned"))
    now = set(_kept_keys(tmp_path / "retuned"))
    assert now > before
    backend.calls.clear()
    result = run(str(tmp_path / "retuned"), None, _cfg())
    assert not result.complete_before and sum(backend.calls) == len(now - before)  # only the new ones
    rows = curate.open(str(tmp_path / "retuned")).read(["keep", "caption_status"], where="keep").to_pylist()
    assert all(r["caption_status"] == "ok" for r in rows)  # no kept row left "not_kept"
    assert set(_kept_keys(copy)) == before  # the source keeps its own decisions and captions


def test_a_retune_that_only_drops_rows_leaves_the_captions_complete(copy, monkeypatch):
    backend = caption_doubles.use(monkeypatch)
    first = run(str(copy), None, _cfg())
    stricter = _curate_cfg(rules=[*yaml.safe_load(TEST_CONFIG)["rules"],
                                  {"column": "stat_short_side", "min": 420, "reason": "too_small"}])
    retune(str(copy), stricter)
    assert set(_kept_keys(copy)) < {r["row_key"] for r in curate.open(str(copy)).read(
        ["row_key", "caption_status"], versions={"captions": first.version}).to_pylist() if r["caption_status"] == "ok"}
    backend.calls.clear()
    again = run(str(copy), None, _cfg())
    assert again.complete_before and backend.calls == [] and again.version == first.version


def test_a_derived_output_follows_an_in_place_retune_of_its_input(copy, tmp_path, monkeypatch):
    backend = caption_doubles.use(monkeypatch)
    derived = tmp_path / "captioned"
    run(str(copy), str(derived), _cfg())
    retune(str(copy), _looser())
    backend.calls.clear()
    run(str(copy), str(derived), _cfg())
    rows = curate.open(str(derived)).read(["row_key", "caption_status"], where="keep").to_pylist()
    assert {r["row_key"] for r in rows} == set(_kept_keys(copy))
    assert all(r["caption_status"] == "ok" for r in rows)


@pytest.fixture
def recurated(tmp_path) -> tuple[Path, Path]:
    """A curated output with a derived caption output, then the input curated again from a
    folder where one kept image was replaced by another of a different size: same file count,
    so the same units."""
    folder = write_folder(tmp_path / "in")
    curate_run(str(folder), str(tmp_path / "cur"), _curate_cfg())
    return folder, tmp_path / "cur"


def test_captions_never_describe_the_images_of_an_earlier_curation(recurated, tmp_path, monkeypatch):
    folder, cur = recurated
    caption_doubles.use(monkeypatch)
    derived = tmp_path / "captioned"
    run(str(cur), str(derived), _cfg())
    (folder / "a_astronaut.jpg").write_bytes(encode(photo("astronaut").rotate(90).crop((0, 0, 400, 300))))
    shutil.rmtree(cur)
    curate_run(str(folder), str(cur), _curate_cfg())
    try:
        run(str(cur), str(derived), _cfg())
    except OutputError as err:  # refusing is fine too
        assert "curated again" in str(err)
        return
    for r in curate.open(str(derived)).read(["width", "height", "caption_synthetic"], where="keep").to_pylist():
        assert _scaled_size(r["width"], r["height"]) in r["caption_synthetic"], r


def test_a_derived_output_of_an_input_with_other_units_is_refused(recurated, tmp_path, monkeypatch):
    folder, cur = recurated
    caption_doubles.use(monkeypatch)
    run(str(cur), str(tmp_path / "captioned"), _cfg())
    (folder / "z_extra.jpg").write_bytes(encode(photo("rocket").rotate(180)))
    shutil.rmtree(cur)
    curate_run(str(folder), str(cur), _curate_cfg())
    with pytest.raises(OutputError, match="curated again"):
        run(str(cur), str(tmp_path / "captioned"), _cfg())


# -- two prompts, one output ---------------------------------------------------------------------
def test_two_prompts_make_two_versions_and_the_reader_picks_either_by_name(curated, tmp_path, monkeypatch):
    caption_doubles.use(monkeypatch)
    out = str(tmp_path / "captioned")
    detailed = run(str(curated), out, _cfg())
    brief = run(str(curated), out, _cfg(prompts=["brief-en"]))
    assert brief.version != detailed.version
    output = curate.open(out)
    assert output.groups["captions"] == brief.version  # the latest run is current
    cols = ["row_key", "caption_synthetic", "caption_synthetic_prompt"]
    now = output.read(cols, where="keep").to_pylist()
    old = output.read(cols, where="keep", versions={"captions": detailed.version}).to_pylist()
    assert {r["caption_synthetic_prompt"] for r in now} == {"brief-en@v1"}
    assert {r["caption_synthetic_prompt"] for r in old} == {"detailed-en@v1"}
    assert [r["row_key"] for r in now] == [r["row_key"] for r in old]
    assert all(a["caption_synthetic"].endswith("Describe.") for a in now + old)  # echo of each prompt's first word
    # a re-draw of the older version leaves the newer one's captions alone
    name, _ = remix(str(curated), out, 1.0, 5, version=detailed.version)
    assert name.startswith(detailed.version + "~")
    remixed = curate.open(out).read(cols, where="keep").to_pylist()
    assert [r["caption_synthetic_prompt"] for r in remixed] == [r["caption_synthetic_prompt"] for r in old]


def test_a_fixed_version_resumed_with_another_prompt_does_not_mix_captions(curated, tmp_path, monkeypatch):
    caption_doubles.use(monkeypatch, stop_after=1)
    out = str(tmp_path / "captioned")
    with pytest.raises(KeyboardInterrupt):
        run(str(curated), out, _cfg(version="mine", stage={**STAGE, "batch_size": 2}))
    caption_doubles.use(monkeypatch)
    try:
        run(str(curated), out, _cfg(version="mine", prompts=["brief-en"]))
    except OutputError:
        return  # refusing the other settings under that name is a fix too
    prompts = set(curate.open(out).read(["caption_synthetic_prompt"], where="keep").column(0).to_pylist())
    assert prompts == {"brief-en@v1"}, prompts


# -- --output at the input ------------------------------------------------------------------------
@pytest.mark.parametrize("spelling", ["trailing-slash", "file-uri", "symlink", "relative"])
def test_output_naming_the_input_in_any_spelling_captions_in_place(copy, tmp_path, monkeypatch, spelling):
    caption_doubles.use(monkeypatch)
    if spelling == "symlink":
        (tmp_path / "link").symlink_to(copy)
    output = {"trailing-slash": f"{copy}/", "file-uri": f"file://{copy}", "symlink": str(tmp_path / "link"),
              "relative": os.path.relpath(copy)}[spelling]
    result = run(str(copy), output, _cfg())
    manifest = json.loads((copy / "manifest.json").read_text())
    assert manifest["current"]["captions"] == result.version and "derived_from" not in manifest
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["copy", *(["link"] if spelling == "symlink" else [])])


def test_an_output_that_contains_the_input_or_a_plain_curated_output_is_refused(curated, copy, monkeypatch):
    caption_doubles.use(monkeypatch)
    with pytest.raises(OutputError, match="not empty"):
        run(str(curated), str(curated.parent), _cfg())  # the folder that holds the input
    with pytest.raises(OutputError, match="holds another output"):
        run(str(curated), str(copy), _cfg())  # another (identical) curated output is not made from this one
    assert "captions" not in json.loads((copy / "manifest.json").read_text())["groups"]


# -- S3 ------------------------------------------------------------------------------------------
@pytest.fixture
def s3():
    from local_s3 import local_s3

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    with local_s3() as (fs, query):
        fs.create_dir("bkt")
        yield fs, query


def _upload(fs, folder: Path, prefix: str) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with fs.open_output_stream(f"{prefix}/{path.relative_to(folder)}") as f:
                f.write(path.read_bytes())


def test_a_killed_run_into_an_s3_output_resumes_and_commits(curated, s3, monkeypatch):
    fs, query = s3
    out = f"s3://bkt/captioned?{query}"
    caption_doubles.use(monkeypatch, stop_after=1)
    with pytest.raises(KeyboardInterrupt):
        run(str(curated), out, _cfg(stage={**STAGE, "batch_size": 2}))
    backend = caption_doubles.use(monkeypatch)
    run(str(curated), out, _cfg(stage={**STAGE, "batch_size": 2}))
    kept = len(_kept_keys(curated))
    assert sum(backend.calls) == kept - 2
    rows = curate.open(out).read(["caption_status"], where="keep").column(0).to_pylist()
    assert rows == ["ok"] * kept
    assert remix(str(curated), out, 1.0, 1)[1]["synthetic"] == kept


def test_an_s3_output_naming_the_s3_input_with_a_slash_is_the_input(curated, s3):
    fs, query = s3
    _upload(fs, curated, "bkt/cur")
    target = open_target(f"s3://bkt/cur?{query}", f"s3://bkt/cur/?{query}")
    assert target.uri == "s3://bkt/cur" and "derived_from" not in target.manifest


# -- broken backends and raw texts ---------------------------------------------------------------
class DropsLast(caption_doubles.EchoBackend):
    """Answers a batch of several images with one caption too few (a buggy backend)."""

    def caption(self, images, prompts):
        out = super().caption(images, prompts)
        return out[:-1] if len(out) > 1 else out


def test_a_backend_that_returns_too_few_captions_never_misaligns_and_never_kills_the_run(curated, tmp_path, monkeypatch):
    caption_doubles.use(monkeypatch, DropsLast)
    run(str(curated), str(tmp_path / "out"), _cfg())
    for r in curate.open(str(tmp_path / "out")).read(["width", "height", "caption_synthetic", "caption_status"],
                                                     where="keep").to_pylist():
        assert r["caption_status"] == "ok" and _scaled_size(r["width"], r["height"]) in r["caption_synthetic"]


def test_a_short_batch_stages_nothing_misaligned(curated, tmp_path, monkeypatch):
    """Whatever the run does with a short batch, no caption is staged or written against another row."""
    caption_doubles.use(monkeypatch, DropsLast)
    out = tmp_path / "out"
    try:
        run(str(curated), str(out), _cfg())
    except RuntimeError as err:
        assert "captions for" in str(err)  # says what the backend did
    target = curate.open(str(out))
    sizes = {r["row_key"]: _scaled_size(r["width"], r["height"])
             for r in target.read(["row_key", "width", "height"], where="keep").to_pylist()}
    staging = out / "_staging" / "captions"
    versions = [p.name for p in staging.iterdir()] if staging.exists() else []
    captions = [r for v in versions for u in target.units for r in staged_rows(target, v, u).to_pylist()]
    if "captions" in target.groups:
        captions += target.read(["row_key", "caption_synthetic"]).to_pylist()
    assert all(r["caption_synthetic"] is None or sizes[r["row_key"]] in r["caption_synthetic"] for r in captions)
    assert all(r["caption_synthetic"] is None for r in captions if r["row_key"] not in sizes)
    assert not (out / ".refinery.lock").exists()  # the lock goes with the failed run


