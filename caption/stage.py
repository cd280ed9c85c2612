"""The caption stages: CPU preprocessing tasks beside generation actors.

Contract:
- ``preprocess(items, root, side)`` (a function stage: Ray tasks on CPUs): each item names a
  unit of the output at ``root`` (``partition``, ``start``, ``unit_rows``) and the ordinals of
  the rows to caption (``ordinals``; ``rows`` their count); it reads those rows
  through the one reader (``row_key``, ``image``, ``caption``, ``ocr_text``), decodes each
  image once to upright RGB with its long side at most ``side`` and yields batches of
  ``row_key``, ``rgb`` (raw pixels), ``rgb_h``, ``rgb_w``, ``caption``, ``ocr_text`` and
  ``decode_error`` (a row whose bytes no longer decode: null pixels and the message).
- ``CaptionStage(cfg)`` (a class stage: one actor builds it once) sets up the configured
  backend on the device its resources give (``BackendEnv``), and ``__call__(batch)`` returns
  ``row_key`` plus ``STAGE_OUT``: for each configured prompt, the rendered instruction (with
  the original caption / OCR text as hints when ``hints`` say so), the backend's raw text,
  then ``caption.postprocess.finish`` to the token budget, the detected language
  (``curate.filters.caption.language``) and the token count. ``caption_status`` is ``ok``,
  ``caption_empty`` (post-processing left nothing) or ``caption_failed`` (``caption_error``
  says why: a decode error, a backend failure for that image); the second prompt's failure
  leaves ``caption_synthetic_2`` null and is noted in ``caption_error`` without failing the
  row. ``caption_synthetic_seconds`` is the batch's generation time per image.
- A CUDA out-of-memory error halves the batch and retries the halves (and later batches of
  this actor start at the smaller size); one image that still does not fit is a failed row.
  Any other exception of a batch is retried image by image; an image that still raises is a
  failed row with the exception. Nothing is dropped; a ``CaptionUnavailable`` (the model
  cannot run at all) stops the run.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import numpy as np
import pyarrow as pa

from caption import postprocess
from caption.backends import build
from caption.backends.base import BackendEnv, CaptionFailure, CaptionUnavailable
from caption.config import CaptionConfig
from caption.prompts import PROMPTS
from curate.config import DecodeConfig
from curate.decode import DecodeError
from curate.decode_views import decode_rgb_view
from curate.filters.caption import language
from curate.layout import Unit
from curate.reader import open_output
from curate.schema import GROUPS, subschema

STAGE_OUT = [c for c in GROUPS["captions"][1:] if c != "caption_source"]
MAX_ERROR = 500
log = logging.getLogger(__name__)


def preprocess(items: pa.Table, root: str, side: int, batch_size: int) -> Iterator[pa.Table]:
    output = open_output(root)
    # The decode settings the output was measured with: an image it kept under its own limits decodes here too.
    try:
        decode_cfg = DecodeConfig.model_validate(output.manifest.get("measured_with", {}).get("decode") or {})
    except ValueError:  # an output written by another refinery version: the defaults
        decode_cfg = DecodeConfig()
    for item in items.to_pylist():
        table = output.read_unit(Unit(item["partition"], item["start"], item["unit_rows"]),
                                 ["row_key", "image", "caption", "ocr_text"])
        table = table.take(pa.array(item["ordinals"], pa.int64()))
        for start in range(0, table.num_rows, batch_size):
            yield _decoded(table.slice(start, batch_size), decode_cfg, side)


def _decoded(table: pa.Table, cfg: DecodeConfig, side: int) -> pa.Table:
    pixels, hs, ws, errors = [], [], [], []
    for data in table.column("image").to_pylist():
        if data is None:
            pixels.append(None)
            hs.append(None)
            ws.append(None)
            errors.append("decode: the row has no image bytes")
            continue
        try:
            _, rgb = decode_rgb_view(data, cfg, side, side)
            pixels.append(rgb.tobytes())
            hs.append(rgb.shape[0])
            ws.append(rgb.shape[1])
            errors.append(None)
        except DecodeError as err:
            pixels.append(None)
            hs.append(None)
            ws.append(None)
            errors.append(f"decode: {err}"[:MAX_ERROR])
    return pa.table({
        "row_key": table.column("row_key"), "rgb": pa.array(pixels, pa.large_binary()),
        "rgb_h": pa.array(hs, pa.int32()), "rgb_w": pa.array(ws, pa.int32()),
        "caption": table.column("caption"), "ocr_text": table.column("ocr_text"),
        "decode_error": pa.array(errors, pa.string()),
    })


def _is_oom(err: BaseException) -> bool:
    name = type(err).__name__
    return name == "OutOfMemoryError" or (isinstance(err, RuntimeError) and "out of memory" in str(err).lower())


def _failure(err: BaseException) -> CaptionFailure:
    return CaptionFailure(f"{type(err).__name__}: {err}"[:MAX_ERROR])


class CaptionStage:
    def __init__(self, cfg: CaptionConfig):
        self.cfg = cfg
        self.prompts = [PROMPTS[p] for p in cfg.prompts]
        self.env = BackendEnv.from_resources(cfg.stage.num_cpus, cfg.stage.num_gpus, cfg.model.dtype)
        self.env.pin_threads()
        self.backend = build(cfg)
        self.backend.setup(self.env)
        self.model_ref = self.backend.model_ref
        self.max_batch = cfg.stage.batch_size

    # -- generation with the out-of-memory and per-image fallbacks --
    def _generate(self, images: list[np.ndarray], prompts: list[str]) -> list[str | CaptionFailure]:
        out: list[str | CaptionFailure] = []
        for start in range(0, len(images), self.max_batch):
            out.extend(self._chunk(images[start:start + self.max_batch], prompts[start:start + self.max_batch]))
        return out

    def _chunk(self, images, prompts) -> list[str | CaptionFailure]:
        try:
            texts = self.backend.caption(images, prompts)
            if len(texts) != len(images):
                raise RuntimeError(f"backend {self.cfg.backend} returned {len(texts)} captions for {len(images)} images")
        except CaptionUnavailable:
            raise
        except Exception as err:  # noqa: BLE001 - every failure becomes a row
            if _is_oom(err):
                _free_cuda()
                if len(images) == 1:
                    return [CaptionFailure("CUDA out of memory on a single image")]
                half = (len(images) + 1) // 2
                self.max_batch = min(self.max_batch, half)
                log.warning("caption: out of memory at batch %d; retrying as %d + %d", len(images), half, len(images) - half)
                return self._chunk(images[:half], prompts[:half]) + self._chunk(images[half:], prompts[half:])
            if len(images) == 1:
                return [_failure(err)]
            log.warning("caption: a batch of %d raised %s; retrying image by image", len(images), type(err).__name__)
            return [self._chunk([i], [p])[0] for i, p in zip(images, prompts)]
        return texts

    def __call__(self, batch: pa.Table) -> pa.Table:
        rows = batch.to_pylist()
        ok = [i for i, r in enumerate(rows) if r["decode_error"] is None]
        images = [np.frombuffer(rows[i]["rgb"], np.uint8).reshape(rows[i]["rgb_h"], rows[i]["rgb_w"], 3) for i in ok]
        started = time.perf_counter()
        raw: list[list] = []
        for prompt in self.prompts:
            rendered = [render(prompt, rows[i], self.cfg) for i in ok]
            texts = self._generate(images, rendered) if ok else []
            by_row = [None] * len(rows)
            for i, text in zip(ok, texts):
                by_row[i] = text
            raw.append(by_row)
        per_image = (time.perf_counter() - started) / max(1, len(ok))
        return assemble(batch.column("row_key"), rows, raw, self.cfg, self.model_ref, per_image)


def render(prompt, row: dict, cfg: CaptionConfig) -> str:
    """The instruction for one row: the prompt with the hints the config allows."""
    return prompt.render(row["caption"] if cfg.hints.caption else None, row["ocr_text"] if cfg.hints.ocr else None)


def assemble(row_key: pa.ChunkedArray | pa.Array, rows: list[dict], raw: list[list], cfg: CaptionConfig, model_ref: str,
             seconds: float | None) -> pa.Table:
    """``row_key`` + ``STAGE_OUT`` from each prompt's raw answers (``raw[slot][i]``: a string, a
    ``CaptionFailure``, or None for a row that did not decode): post-processing, language,
    tokens, status and errors (see module doc)."""
    n = len(rows)
    cols: dict[str, list] = {c: [None] * n for c in STAGE_OUT}
    errors: list[list[str]] = [[r["decode_error"]] if r["decode_error"] is not None else [] for r in rows]
    failed = [r["decode_error"] is not None for r in rows]
    for slot, prompt_id in enumerate(cfg.prompts):
        prompt = PROMPTS[prompt_id]
        prefix = "caption_synthetic" if slot == 0 else "caption_synthetic_2"
        for i, answer in enumerate(raw[slot]):
            if answer is None:
                continue
            if isinstance(answer, CaptionFailure):
                errors[i].append(answer.message if slot == 0 else f"second prompt {prompt.ref}: {answer.message}")
                failed[i] = failed[i] or slot == 0
                continue
            text, tokens = postprocess.finish(answer, cfg.budget.encoder, cfg.budget.limit)
            if not text:
                continue
            cols[prefix][i] = text
            cols[f"{prefix}_prompt"][i] = prompt.ref
            cols[f"{prefix}_lang"][i] = language(text)[0]
            if slot == 0:
                cols["caption_synthetic_tokens"][i] = tokens
    for i in range(n):
        if cols["caption_synthetic"][i] is not None:
            cols["caption_status"][i] = "ok"
        else:
            cols["caption_status"][i] = "caption_failed" if failed[i] else "caption_empty"
        cols["caption_error"][i] = "; ".join(errors[i])[:MAX_ERROR] or None
        cols["caption_synthetic_model"][i] = model_ref
        if rows[i]["decode_error"] is None:
            cols["caption_synthetic_seconds"][i] = seconds
    table = pa.table({"row_key": row_key, **{c: cols[c] for c in STAGE_OUT}})
    return table.cast(subschema(["row_key", *STAGE_OUT]))


def _free_cuda() -> None:
    try:
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()
    except ImportError:
        pass
