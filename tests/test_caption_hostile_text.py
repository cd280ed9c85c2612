"""Hostile review of what a caption becomes and of runs that overlap: raw model texts (control
characters, bare boilerplate, cut-off loops, runaway answers, Chinese under a budget), Ctrl-C then resume,
concurrent runs, blank original captions in the mix."""

import threading
import time

import pytest

import caption_doubles
import curate
from caption import postprocess, tokens
from caption.run import run, staged_rows
from curate.layout import OutputError
from curate.retune import retune


from caption_hostile_support import STAGE, _cfg, _looser, curated, copy, _kept_keys, _rewrite_images, _scaled_size  # noqa: F401 (fixtures)


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
