"""caption run over a curated output: every kept row gets one caption or a recorded failure,
nothing else is rewritten, and a killed run resumes without captioning a row twice."""
from __future__ import annotations

import hashlib
import json

import pytest
import yaml

import curate
import caption_doubles
from caption.config import CaptionConfig
from caption.remix import remix
from caption.run import run, staged_rows
from cases import TEST_CONFIG, write_folder
from curate.config import CurateConfig
from curate.layout import OutputError
from curate.pipeline import run as curate_run

SETTINGS = {"backend": "hf", "model": {"id": "echo"}, "stage": {"num_cpus": 0.5, "num_gpus": 0, "batch_size": 4, "actors": 1},
            "hints": {"caption": True, "ocr": False}}


def _cfg(**over) -> CaptionConfig:
    return CaptionConfig.model_validate({**SETTINGS, **over})


@pytest.fixture(scope="module")
def curated(tmp_path_factory):
    root = tmp_path_factory.mktemp("curated")
    curate_run(str(write_folder(root / "in")), str(root / "out"), CurateConfig.model_validate(yaml.safe_load(TEST_CONFIG)))
    return root / "out"


def current_captions(output) -> str:
    return json.loads((output / "manifest.json").read_text())["current"]["captions"]


def _digests(folder) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*") if p.is_file()}


def test_every_kept_row_gets_one_caption_in_a_new_output_and_the_input_is_untouched(curated, tmp_path, monkeypatch):
    backend = caption_doubles.use(monkeypatch)
    before = _digests(curated)
    result = run(str(curated), str(tmp_path / "captioned"), _cfg())
    assert _digests(curated) == before  # the curated output is not touched, not even its manifest
    table = curate.open(str(tmp_path / "captioned")).read(
        ["row_key", "keep", "width", "height", "caption", "caption_synthetic", "caption_synthetic_model",
         "caption_synthetic_prompt", "caption_synthetic_tokens", "caption_status", "caption_source"])
    rows = table.to_pylist()
    kept = [r for r in rows if r["keep"]]
    assert kept and len(kept) < len(rows)
    assert sum(backend.calls) == len(kept)  # each kept row captioned once
    for r in rows:
        if not r["keep"]:
            assert r["caption_status"] == "not_kept" and r["caption_synthetic"] is None and r["caption_source"] is None
            continue
        assert r["caption_status"] == "ok" and r["caption_synthetic_model"] == "echo@0"
        assert r["caption_synthetic_prompt"] == "detailed-en@v1"
        # boilerplate stripped, and this row's own image was captioned (the long side is at most image_side)
        assert not r["caption_synthetic"].lower().startswith("the image shows")
        w, h = r["width"], r["height"]
        scale = min(1.0, 896 / max(w, h))
        assert f"{round(w * scale)}x{round(h * scale)}" in r["caption_synthetic"]
        assert 0 < r["caption_synthetic_tokens"] <= 77
        assert r["caption_source"] in ("original", "synthetic")
    manifest = json.loads((tmp_path / "captioned" / "manifest.json").read_text())
    entry = manifest["groups"]["captions"][result.version]
    assert entry["settings"]["status_counts"]["ok"] == len(kept)
    assert all(e.get("root") for g, v in manifest["groups"].items() if g != "captions" for e in v.values())
    assert not (tmp_path / "captioned" / "images").exists()  # images are read from the input, never copied
    # The same settings again: complete, nothing captioned.
    backend.calls.clear()
    assert run(str(curated), str(tmp_path / "captioned"), _cfg()).complete_before and backend.calls == []
    # Other settings, then the first ones again: nothing is captioned again, and the first version is current.
    other = run(str(curated), str(tmp_path / "captioned"), _cfg(prompts=["brief-en"]))
    assert other.version != result.version and current_captions(tmp_path / "captioned") == other.version
    backend.calls.clear()
    again = run(str(curated), str(tmp_path / "captioned"), _cfg())
    assert again.complete_before and again.version == result.version and backend.calls == []
    assert current_captions(tmp_path / "captioned") == result.version
    assert curate.open(str(tmp_path / "captioned")).read(["row_key", "caption_synthetic"]).to_pylist() == \
        curate.open(str(tmp_path / "captioned")).read(["row_key", "caption_synthetic"], versions={"captions": result.version}).to_pylist()


def test_out_of_memory_halves_the_batch_and_a_raising_image_is_a_failed_row(curated, tmp_path, monkeypatch):
    widths = curate.open(str(curated)).read(["width", "height", "keep"], where="keep").to_pylist()
    bad = max(widths, key=lambda r: r["width"])
    bad_width = round(bad["width"] * min(1.0, 896 / max(bad["width"], bad["height"])))
    backend = caption_doubles.use(monkeypatch, oom_above=2, raise_on_width=bad_width)
    run(str(curated), str(tmp_path / "out"), _cfg())
    assert backend.calls[0] > 2  # out of memory: halved, and this actor's later batches stay at the smaller size
    assert all(n <= 2 for n in backend.calls[1:])
    rows = curate.open(str(tmp_path / "out")).read(["width", "caption", "caption_status", "caption_error", "caption_source"],
                                                   where="keep").to_pylist()
    failed = [r for r in rows if r["caption_status"] == "caption_failed"]
    assert failed and all(r["width"] == bad["width"] for r in failed)
    assert all("cannot caption an image" in r["caption_error"] for r in failed)
    assert all(r["caption_source"] == ("original" if r["caption"] else None) for r in failed)  # fallback
    assert all(r["caption_status"] == "ok" for r in rows if r["width"] != bad["width"])


def test_a_killed_run_resumes_and_captions_no_row_twice(curated, tmp_path, monkeypatch):
    backend = caption_doubles.use(monkeypatch, stop_after=1)
    cfg = _cfg(stage={**SETTINGS["stage"], "batch_size": 2})
    with pytest.raises(KeyboardInterrupt):
        run(str(curated), str(tmp_path / "out"), cfg)
    target = curate.open(str(tmp_path / "out"))
    version = next(iter((tmp_path / "out" / "_staging" / "captions").iterdir())).name
    staged = sum(staged_rows(target, version, u).num_rows for u in target.units)
    assert staged == 2 and "captions" not in target.groups  # one batch kept, nothing committed
    backend = caption_doubles.use(monkeypatch)
    result = run(str(curated), str(tmp_path / "out"), cfg)
    kept = curate.open(str(curated)).read(["row_key"], where="keep").num_rows
    assert sum(backend.calls) == kept - staged  # the resumed run captions only the rest
    entry = curate.open(str(tmp_path / "out")).manifest["groups"]["captions"][result.version]
    assert entry["settings"]["resumed_rows"] == staged and entry["settings"]["captioned_rows"] == kept - staged
    rows = curate.open(str(tmp_path / "out")).read(["row_key", "caption_status"], where="keep").to_pylist()
    assert len(rows) == kept and all(r["caption_status"] == "ok" for r in rows)
    assert not (tmp_path / "out" / "_staging" / "captions").exists()


def test_in_place_caption_and_remix_keep_the_captions_and_redraw_only_the_source(curated, tmp_path, monkeypatch):
    import shutil

    caption_doubles.use(monkeypatch)
    out = tmp_path / "copy"
    shutil.copytree(curated, out)
    images = _digests(out / "images")
    first = run(str(out), None, _cfg())
    before = curate.open(str(out)).read(["id", "caption_synthetic", "caption_source"], where="keep").to_pylist()
    version, counts = remix(str(out), None, ratio=1.0, seed=3)
    assert version == f"{first.version}~r1s3"
    after = curate.open(str(out)).read(["id", "caption", "caption_synthetic", "caption_source"], where="keep").to_pylist()
    assert [r["caption_synthetic"] for r in after] == [r["caption_synthetic"] for r in before]
    assert all(r["caption_source"] == "synthetic" for r in after)  # ratio 1: every captioned row
    assert counts["synthetic"] == len(after)
    # The earlier version is still there and readable by name.
    old = curate.open(str(out)).read(["caption_source"], where="keep", versions={"captions": first.version})
    assert old.column("caption_source").to_pylist() == [r["caption_source"] for r in before]
    assert _digests(out / "images") == images
    with pytest.raises(OutputError, match="no caption group"):
        remix(str(curated), str(tmp_path / "fresh"), 0.5, 0)


def test_an_output_that_holds_something_else_is_refused(curated, tmp_path, monkeypatch):
    caption_doubles.use(monkeypatch)
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "notes.txt").write_text("mine")
    with pytest.raises(OutputError, match="not empty"):
        run(str(curated), str(tmp_path / "busy"), _cfg())
    with pytest.raises(OutputError, match="inside the input"):
        run(str(curated), str(curated / "captions-here"), _cfg())


def test_rows_kept_by_a_retune_since_are_captioned_into_the_next_version(curated, tmp_path, monkeypatch):
    import shutil

    from curate.retune import retune

    out = tmp_path / "copy"
    shutil.copytree(curated, out)
    backend = caption_doubles.use(monkeypatch)
    first = run(str(out), None, _cfg())
    kept_before = curate.open(str(out)).read(["row_key"], where="keep").column("row_key").to_pylist()
    looser = CurateConfig.model_validate(yaml.safe_load(TEST_CONFIG))
    looser = looser.model_copy(update={"rules": []})  # no rules: the rows they rejected (and are no copies) are kept
    retune(str(out), looser)
    kept_now = curate.open(str(out)).read(["row_key"], where="keep").column("row_key").to_pylist()
    new = sorted(set(kept_now) - set(kept_before))
    assert new  # rows the rules rejected are kept now
    backend.calls.clear()
    second = run(str(out), None, _cfg())
    assert second.version == f"{first.version}.2" and sum(backend.calls) == len(new)
    rows = {r["row_key"]: r for r in curate.open(str(out)).read(["row_key", "caption_synthetic", "caption_status"]).to_pylist()}
    old = {r["row_key"]: r for r in curate.open(str(out)).read(["row_key", "caption_synthetic"],
                                                                 versions={"captions": first.version}).to_pylist()}
    assert all(rows[k]["caption_status"] == "ok" for k in kept_now)
    assert all(rows[k]["caption_synthetic"] == old[k]["caption_synthetic"] for k in kept_before)  # carried, not redone
    backend.calls.clear()
    assert run(str(out), None, _cfg()).complete_before and backend.calls == []
