"""Hostile review of ``caption run`` / ``caption mix`` on real curated outputs: damaged image
bytes on kept rows, retune and re-curation after captioning, two prompts, ``--output`` at the
input, S3 outputs, broken backends and raw texts, Ctrl-C and concurrent runs, blank original
captions, and the openai key: each a defect found once, or behaviour that must hold.

Backends are ``caption_doubles`` (no model loads) except the openai backend, which talks real
HTTP to a loopback server started here. Everything runs in this process (no Ray start).
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml
from PIL import Image

import caption_doubles
import curate
from caption import postprocess, tokens
from caption.config import CaptionConfig
from caption.remix import remix
from caption.run import run, staged_rows
from caption.target import open_target
from cases import TEST_CONFIG, write_folder
from curate.config import CurateConfig
from curate.layout import OutputError
from curate.pipeline import run as curate_run
from curate.retune import retune
from photos import encode, photo

STAGE = {"num_cpus": 0.5, "num_gpus": 0, "batch_size": 4, "actors": 1}
SETTINGS = {"backend": "hf", "model": {"id": "echo"}, "stage": STAGE, "hints": {"caption": True, "ocr": False}}


def _cfg(**over) -> CaptionConfig:
    return CaptionConfig.model_validate({**SETTINGS, **over})


def _curate_cfg(**over) -> CurateConfig:
    return CurateConfig.model_validate({**yaml.safe_load(TEST_CONFIG), **over})


def _looser() -> CurateConfig:
    """No blur rule and no near-duplicate search: the blurred coffee and the smaller astronaut are kept."""
    raw = yaml.safe_load(TEST_CONFIG)
    return _curate_cfg(rules=[r for r in raw["rules"] if r["reason"] != "blurry"], dedup={**raw["dedup"], "near": False})


@pytest.fixture(scope="module")
def curated(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("curated")
    curate_run(str(write_folder(root / "in")), str(root / "out"), _curate_cfg())
    return root / "out"


@pytest.fixture
def copy(curated, tmp_path) -> Path:
    """A private copy of the curated output (for in-place runs and for rewriting its rows)."""
    shutil.copytree(curated, tmp_path / "copy")
    return tmp_path / "copy"


def _kept_keys(folder) -> list[int]:
    return curate.open(str(folder)).read(["row_key"], where="keep").column("row_key").to_pylist()


def _rewrite_images(folder: Path, column: str, values: dict[int, object]) -> None:
    """Replace ``column`` of the rows ``values`` names (by row_key) in the images files, in place:
    what bit rot or a hand edit leaves behind (the manifest's checksums are not re-read)."""
    for path in sorted((folder / "images").glob("*.parquet")):
        table = pq.read_table(path)
        keys = table.column("row_key").to_pylist()
        if not any(k in values for k in keys):
            continue
        old = table.column(column).to_pylist()
        new = [values.get(k, v) for k, v in zip(keys, old)]
        index = table.schema.get_field_index(column)
        table = table.set_column(index, table.schema.field(column), pa.array(new, table.schema.field(column).type))
        pq.write_table(table, path)


def _scaled_size(w: int, h: int, side: int = 896) -> str:
    scale = min(1.0, side / max(w, h))
    return f"{round(w * scale)}x{round(h * scale)}"


# -- damaged image bytes on kept rows ------------------------------------------------------------
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


def test_control_characters_never_reach_a_caption():
    for raw in ("A cat\x00 sits on a mat.", "A dog\x07 runs.\x1b[0m", "A red\u200b car."):
        text, _ = postprocess.finish(raw, "clip", 77)
        assert text and not any(ord(c) < 32 or c in "\u200b\x7f" for c in text), repr(text)


def test_boilerplate_alone_is_an_empty_caption():
    for raw in ("The image shows.", "This image depicts:", "The picture shows...", "In this image."):
        assert postprocess.finish(raw, "clip", 77)[0] == "", raw


def test_a_loop_cut_off_by_the_token_limit_leaves_no_partial_copy():
    for raw, want in (("A bowl of soup soup soup soup soup soup sou", "A bowl of soup"),
                      ("Mountains, mountains, mountains, mountains, mount", "Mountains"),
                      ("A cat on a mat, a cat on a mat, a cat on a mat, a cat on", "A cat on a mat")):
        assert postprocess.finish(raw, "clip", 77)[0].rstrip(",.") == want, raw


def test_a_runaway_answer_is_cut_to_the_budget_quickly():
    for raw in ("a dog " * 200_000, "x" * 1_000_000, "一只猫坐在垫子上。" * 30_000,
                " ".join(f"word{i}." for i in range(100_000))):
        started = time.perf_counter()
        text, n = postprocess.finish(raw, "clip", 77)
        assert time.perf_counter() - started < 2.0
        assert 0 < n <= 75 and tokens.count(text, "clip") == n


class ChineseBackend(caption_doubles.EchoBackend):
    """A long Chinese answer (as a zh prompt gets), with the image size in the first sentence."""

    @staticmethod
    def answer(width: int, height: int) -> str:
        return (f"这张图片展示了一幅{width}乘{height}的照片。"
                + "".join(f"画面第{k}层有一座红色的寺庙，屋顶覆盖着青色的瓦片，周围是茂密的绿树。" for k in range(1, 12)))

    def caption(self, images, prompts):
        type(self).calls.append(len(images))
        return [self.answer(i.shape[1], i.shape[0]) for i in images]


@pytest.mark.parametrize("encoder", ["clip", "chatglm3"])  # t5 with a Chinese prompt is refused by the config
def test_a_chinese_prompt_under_an_english_encoder_budget_fits_and_keeps_whole_sentences(curated, tmp_path, monkeypatch,
                                                                                        encoder):
    caption_doubles.use(monkeypatch, ChineseBackend)
    run(str(curated), str(tmp_path / "out"), _cfg(prompts=["detailed-zh"], budget={"encoder": encoder}))
    rows = curate.open(str(tmp_path / "out")).read(
        ["width", "height", "caption_synthetic", "caption_synthetic_tokens", "caption_synthetic_lang",
         "caption_synthetic_prompt", "caption_status"], where="keep").to_pylist()
    limit = tokens.budget_text_tokens(encoder, tokens.ENCODER_LIMITS[encoder])
    for r in rows:
        text = r["caption_synthetic"]
        assert r["caption_status"] == "ok" and r["caption_synthetic_prompt"] == "detailed-zh@v1"
        assert r["caption_synthetic_lang"] == "zh"
        w, h = _scaled_size(r["width"], r["height"]).split("x")
        whole = postprocess.clean(ChineseBackend.answer(int(w), int(h)))
        assert whole.startswith(f"一幅{w}乘{h}的照片。")  # this row's own answer, its boilerplate opening stripped
        assert whole.startswith(text) and len(text) < len(whole)  # a prefix: cut between characters, never inside one
        assert 0 < r["caption_synthetic_tokens"] == tokens.count(text, encoder) <= limit
        # cut at a sentence end, or else as long as fits (a dangling comma trimmed)
        assert text.endswith("。") or tokens.count(whole[: len(text) + 1], encoder) > limit or whole[len(text)] == "，"


# -- Ctrl-C, resume, concurrent runs -------------------------------------------------------------
def test_ctrl_c_then_resume_with_another_batch_size_captions_every_row_once(curated, tmp_path, monkeypatch):
    out = str(tmp_path / "out")
    caption_doubles.use(monkeypatch, stop_after=2)
    with pytest.raises(KeyboardInterrupt):
        run(str(curated), out, _cfg(stage={**STAGE, "batch_size": 2}))
    assert not (tmp_path / "out" / ".refinery.lock").exists()
    target = curate.open(out)
    version = next((tmp_path / "out" / "_staging" / "captions").iterdir()).name
    staged = sum(staged_rows(target, version, u).num_rows for u in target.units)
    kept = len(_kept_keys(curated))
    assert 0 < staged < kept
    backend = caption_doubles.use(monkeypatch)
    result = run(str(curated), out, _cfg(stage={**STAGE, "batch_size": 3}))
    assert result.version == version  # the batch size is not a text setting: the same version resumes
    assert sum(backend.calls) == kept - staged and max(backend.calls) <= 3
    settings = curate.open(out).manifest["groups"]["captions"][result.version]["settings"]
    assert settings["resumed_rows"] == staged and settings["captioned_rows"] == kept - staged
    rows = curate.open(out).read(["width", "height", "caption_synthetic", "caption_status"], where="keep").to_pylist()
    assert all(r["caption_status"] == "ok" and _scaled_size(r["width"], r["height"]) in r["caption_synthetic"] for r in rows)


class Blocking(caption_doubles.EchoBackend):
    started = threading.Event()
    release = threading.Event()

    def caption(self, images, prompts):
        type(self).started.set()
        assert type(self).release.wait(30)
        return super().caption(images, prompts)


def test_a_second_caption_run_on_an_output_in_use_is_refused(copy, monkeypatch):
    backend = caption_doubles.use(monkeypatch, Blocking, started=threading.Event(), release=threading.Event())
    errors = []
    first = threading.Thread(target=lambda: _catch(errors, run, str(copy), None, _cfg()))
    first.start()
    try:
        assert backend.started.wait(30)
        with pytest.raises(OutputError, match="in use by caption run"):
            run(str(copy), None, _cfg())
        with pytest.raises(OutputError, match="in use"):
            retune(str(copy), _looser())
    finally:
        backend.release.set()
        first.join(60)
    assert errors == []
    assert curate.open(str(copy)).read(["caption_status"], where="keep").column(0).to_pylist() == ["ok"] * len(_kept_keys(copy))


def _catch(errors, fn, *args):
    try:
        fn(*args)
    except BaseException as err:  # noqa: BLE001 - reported to the test thread
        errors.append(err)


def test_a_second_run_while_the_first_writes_its_group_is_refused_or_harmless(curated, tmp_path, monkeypatch):
    from curate.groups import GroupWriter

    caption_doubles.use(monkeypatch)
    out = str(tmp_path / "out")
    write, second = GroupWriter.write, []

    def write_then_race(self, unit, table):
        if not second:
            second.append(None)
            try:
                second[0] = run(str(curated), out, _cfg())
            except OutputError as err:
                second[0] = err
        return write(self, unit, table)

    monkeypatch.setattr(GroupWriter, "write", write_then_race)
    first = run(str(curated), out, _cfg())  # must not fail with "kept row … has no caption staged"
    assert isinstance(second[0], OutputError) or second[0].version == first.version


# -- blank original captions ---------------------------------------------------------------------
class PromptRecorder(caption_doubles.EchoBackend):
    prompts: list[str] = []

    def caption(self, images, prompts):
        type(self).prompts.extend(prompts)
        return super().caption(images, prompts)


def test_rows_without_an_original_caption_mix_to_synthetic_or_to_nothing(copy, monkeypatch):
    keys = _kept_keys(copy)
    _rewrite_images(copy, "caption", {keys[0]: "", keys[1]: "  \n\t ", keys[2]: None, keys[3]: ""})
    _rewrite_images(copy, "image", {keys[3]: b"garbage"})  # no original and no synthetic either
    backend = caption_doubles.use(monkeypatch, PromptRecorder, prompts=[])
    result = run(str(copy), None, _cfg(mix={"ratio": 0.0, "seed": 0}))  # ratio 0: original wherever there is one
    rows = {r["row_key"]: r for r in curate.open(str(copy)).read(
        ["row_key", "caption", "caption_status", "caption_source"], where="keep").to_pylist()}
    assert [rows[k]["caption_source"] for k in keys[:3]] == ["synthetic"] * 3
    assert rows[keys[3]]["caption_status"] == "caption_failed" and rows[keys[3]]["caption_source"] is None
    assert all(rows[k]["caption_source"] == "original" for k in keys[4:])
    counts = curate.open(str(copy)).manifest["groups"]["captions"][result.version]["settings"]["mix_counts"]
    assert counts == {"no_original": 3, "synthetic": 3, "no_caption": 1, "original": len(keys) - 4}
    # a blank original is never handed to the model as a hint
    assert len(backend.prompts) == len(keys) - 1
    assert sum('published with the caption' in p for p in backend.prompts) == len(keys) - 4
    assert not any('caption ""' in p or 'caption " ' in p for p in backend.prompts)


# -- the openai key ------------------------------------------------------------------------------
SECRET = "sk-hostile-7d1e0c5a9b3f"
KEY_ENV = "REFINERY_HOSTILE_OPENAI_KEY"


class _Endpoint:
    """A chat-completions server on loopback: answers 401 with the Authorization header echoed in
    the body for prompts starting with "Describe this image in one sentence" (a proxy that
    reflects headers), else a caption; ``echo_auth`` puts the header in the caption too."""

    def __init__(self, echo_auth: bool = False):
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args):
                pass

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                auth = self.headers.get("Authorization", "")
                prompt = body["messages"][0]["content"][0]["text"]
                if prompt.startswith("Describe this image in one sentence"):
                    self._send(401, json.dumps({"error": f"invalid key in header {auth}"}))
                    return
                text = f"A photo on a table. Debug {auth}." if endpoint.echo_auth else "A photo on a table."
                self._send(200, json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}))

            def _send(self, code, text):
                data = text.encode()
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.echo_auth = echo_auth
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def endpoint():
    servers = []

    def start(echo_auth=False):
        servers.append(_Endpoint(echo_auth))
        return servers[-1]

    yield start
    for s in servers:
        s.close()


def _openai_cfg(url: str, **over) -> CaptionConfig:
    return CaptionConfig.model_validate({
        "backend": "openai", "model": {"id": "served-vlm"}, "stage": STAGE,
        "openai": {"base_url": url, "api_key_env": KEY_ENV, "retries": 1, "backoff_s": 0.01, "timeout_s": 10.0}, **over})


def _everything_written(folder: Path) -> str:
    """Every file under ``folder`` as text, Parquet files as their decoded rows."""
    parts = []
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            parts.append(json.dumps(pq.read_table(path).to_pylist(), default=str) if path.suffix == ".parquet"
                         else path.read_text(errors="replace"))
    return "\n".join(parts)


def test_the_openai_key_is_in_no_shard_manifest_report_or_log(curated, tmp_path, endpoint, monkeypatch, capsys, caplog):
    from caption.cli import main

    monkeypatch.setenv(KEY_ENV, SECRET)
    server = endpoint()
    config = tmp_path / "openai.yaml"
    config.write_text(yaml.safe_dump({"backend": "openai", "model": {"id": "served-vlm"}, "stage": STAGE,
                                      "prompts": ["detailed-en", "brief-en"],  # the second prompt is refused (401)
                                      "openai": {"base_url": server.url, "api_key_env": KEY_ENV, "retries": 1,
                                                 "backoff_s": 0.01}}))
    out = tmp_path / "captioned"
    caplog.set_level(logging.DEBUG)
    assert main(["run", "--input", str(curated), "--output", str(out), "--config", str(config)]) == 0
    assert main(["report", "--input", str(out), "--samples", "4"]) == 0
    rows = curate.open(str(out)).read(["caption_status", "caption_synthetic", "caption_synthetic_2", "caption_error"],
                                      where="keep").to_pylist()
    assert all(r["caption_status"] == "ok" and r["caption_synthetic_2"] is None for r in rows)
    assert all("HTTP 401" in r["caption_error"] and "***" in r["caption_error"] for r in rows)  # scrubbed, not lost
    seen = capsys.readouterr()
    for text in (_everything_written(out), seen.out, seen.err, caplog.text):
        assert SECRET not in text


def test_an_endpoint_that_reflects_the_key_in_its_answer_never_gets_it_into_a_shard(curated, tmp_path, endpoint,
                                                                                      monkeypatch):
    monkeypatch.setenv(KEY_ENV, SECRET)
    server = endpoint(echo_auth=True)
    run(str(curated), str(tmp_path / "out"), _openai_cfg(server.url))
    assert SECRET not in _everything_written(tmp_path / "out")


def test_a_password_in_the_base_url_is_not_written_to_the_manifest(curated, tmp_path, endpoint):
    server = endpoint()
    url = server.url.replace("http://", "http://bob:pw-hostile-42@")
    run(str(curated), str(tmp_path / "out"), _openai_cfg(url))
    assert "pw-hostile-42" not in (tmp_path / "out" / "manifest.json").read_text()
