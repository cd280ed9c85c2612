"""``refinery train cache``: a run's VAE latents (or pixels) and text embeddings, computed once.

Contract:
- ``build(cfg, folder) -> CacheSummary`` reads ``cfg.data``'s selected rows as fit does
  (``TrainData``, every row once: epoch 0's plan, ``drop_last`` off) and writes, into a
  temporary folder renamed to ``folder`` when done (an older cache there is replaced; another
  non-empty folder is refused):
  ``images-NNNNN.safetensors``: per row, its bucketed crop as uint8 (3, H, W) (pixel space,
  ``model.vae`` null) or the VAE's posterior ``<slot>.mean`` / ``<slot>.std`` (float32;
  fit draws the latent from them with the step's generator, as ``to_latents`` does);
  ``rows.parquet``: row_key, shard, slot, the crop's top/left and the bucket;
  ``texts-NNNNN.safetensors``: per distinct caption (original and synthetic of every row, and
  the empty prompt), per text encoder ``<slot>.hidden.<n>`` / ``<slot>.pooled.<n>``;
  ``texts.parquet``: text, hash (blake2b, int64), shard, slot; and last ``cache.json``: what
  it was built from (``cache_key``: the config fields that change it; the output's uri, its
  manifest digest over units, current group versions and decode settings, ``written``,
  ``generation``), counts, kind (pixels | latents). Progress is shown per image and caption.
  Random crops are epoch 0's (seed, 0, row_key): a cached run trains every epoch on that crop.
  Trained from, it gives fit's losses for the same seed: bitwise in pixel space, and through the
  VAE to float rounding (tests allow 1e-6 relative; bitwise on CPU when fit's batches are the
  cache's, as in one process: the VAE then ran on the same batches).
- ``check(cfg, output) -> dict`` (the record): a missing or foreign folder, or a cache built
  from other config fields or another state of the output, is one-line ``CacheError`` naming
  what changed.
- ``CachedData.open(cfg, world_size, rank)``: a ``TrainData`` (the same index, plan, caption
  mix) whose batches come from ``cfg.data.cache``: the same dict, where the VAE case carries
  ``latent_mean`` / ``latent_std`` instead of ``pixels``, and every case ``text_hidden`` /
  ``text_pooled`` (per encoder, the chosen captions) and ``empty_hidden`` / ``empty_pooled``.
  ``training_data(cfg, world_size, rank)`` is that when ``data.cache`` is set, else ``TrainData``.
- In the loop: ``cached_latents(diffusion, batch, generator, device)`` and
  ``cached_text(batch, drops, device)`` (CFG dropout: the empty prompt's cached embedding).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from curate.progress import progress_bar
from trainer.config import TrainConfig
from trainer.data import BatchSpec, DataError, TrainData

RECORD, ROWS, TEXTS = "cache.json", "rows.parquet", "texts.parquet"
FORMAT, SHARD_ROWS, TEXT_BATCH, OPEN_SHARDS = 1, 256, 64, 16


class CacheError(DataError):
    """A cache that is missing, foreign, or stale for this config or output."""


@dataclass
class CacheSummary:
    folder: Path
    kind: str  # pixels | latents
    rows: int
    texts: int
    encoders: int


def cache_key(cfg: TrainConfig) -> dict:
    """The config fields a cache depends on, by dotted name."""
    d, tiny = cfg.data, any(e.kind == "tiny" for e in cfg.model.text_encoders)
    key = {f"data.{k}": getattr(d, k) for k in ("select", "area", "bucket_step", "min_side", "max_side", "max_ratio",
                                                 "random_crop")}
    key.update({"model.vae": cfg.model.vae, "model.text_encoders": [e.model_dump(mode="json") for e in cfg.model.text_encoders]})
    if d.random_crop or tiny:  # crops are drawn from the seed; tiny encoders are initialised from it
        key["seed"] = cfg.seed
    if tiny:
        key["init_from"] = cfg.init_from
    return key


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def output_state(output) -> dict:
    m = output.manifest
    current = {g: m["groups"][g][v] for g, v in m["current"].items()}
    decode = (m.get("measured_with") or {}).get("decode")
    return {"uri": output.uri, "digest": _digest([m["units"], m["current"], current, decode]),
            "written": m.get("written"), "generation": m.get("generation")}


def text_hash(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big", signed=True)


def default_folder(cfg: TrainConfig) -> Path:
    return Path(cfg.data.cache) if cfg.data.cache else Path(cfg.checkpoint.dir) / "cache"


class _Shards:
    """Tensors gathered into ``<prefix>-NNNNN.safetensors`` files of ``SHARD_ROWS`` entries each."""

    def __init__(self, folder: Path, prefix: str):
        self.folder, self.prefix, self.shard, self.slot, self.tensors = folder, prefix, 0, 0, {}

    def add(self, named: dict[str, torch.Tensor]) -> tuple[int, int]:
        where = (self.shard, self.slot)
        self.tensors.update({f"{self.slot}.{k}" if k else str(self.slot): v.detach().cpu().contiguous() for k, v in named.items()})
        self.slot += 1
        if self.slot == SHARD_ROWS:
            self.flush()
        return where

    def flush(self) -> None:
        if self.tensors:
            save_file(self.tensors, str(self.folder / f"{self.prefix}-{self.shard:05d}.safetensors"))
            self.shard, self.slot, self.tensors = self.shard + 1, 0, {}


def _encoders_and_vae(cfg: TrainConfig, device: torch.device):
    """The frozen parts of ``build_model`` (same seeds), text encoders from ``init_from`` as fit loads them."""
    from diffusers import AutoencoderKL

    from trainer import checkpoint as ckpt
    from trainer.model import TextEncoder

    encoders = [TextEncoder(e, cfg.seed + 1 + i) for i, e in enumerate(cfg.model.text_encoders)]
    if cfg.init_from:
        start = ckpt.load(cfg.init_from)
        for i, enc in enumerate(encoders):
            if f"text_encoder_{i}" in start.weights:
                enc.model.load_state_dict(start.weights[f"text_encoder_{i}"])
    vae = None
    if cfg.model.vae is not None:
        vae = AutoencoderKL.from_pretrained(cfg.model.vae, use_safetensors=True).requires_grad_(False).eval().to(device)
    return [e.to(device) for e in encoders], vae


def build(cfg: TrainConfig, folder: str | Path) -> CacheSummary:
    """Compute and write the cache of ``cfg`` into ``folder`` (module doc)."""
    folder = Path(folder)
    if folder.exists() and not (folder / RECORD).is_file() and any(folder.iterdir()):
        raise CacheError(f"{folder} exists and is not a training cache: choose another --output")
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    data = TrainData.from_config(cfg.data.model_copy(update={"drop_last": False}), cfg.seed)
    encoders, vae = _encoders_and_vae(cfg, device)
    tmp = folder.parent / f".tmp-{folder.name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    images, rows = _Shards(tmp, "images"), []
    with torch.no_grad(), progress_bar("cache images", len(data), noun="images") as advance:
        for batch in data.batches(0):
            if vae is None:
                per_row = [{"": p} for p in ((batch["pixels"] + 1) * 127.5).round().to(torch.uint8)]
            else:
                dist = vae.encode(batch["pixels"].to(device, vae.dtype)).latent_dist
                per_row = [{"mean": m, "std": s} for m, s in zip(dist.mean.float(), dist.std.float())]
            for key, named, (top, left) in zip(batch["row_keys"], per_row, batch["crop_top_left"].tolist()):
                shard, slot = images.add(named)
                rows.append((int(key), shard, slot, top, left, *batch["bucket"]))
            advance(len(batch["row_keys"]))
    images.flush()
    names = ["row_key", "shard", "slot", "crop_top", "crop_left", "bucket_w", "bucket_h"]
    pq.write_table(pa.table({n: pa.array([r[i] for r in rows], pa.int64()) for i, n in enumerate(names)}), tmp / ROWS)
    captions = data.index.column("caption").to_pylist() + data.index.column("caption_synthetic").to_pylist()
    texts = list(dict.fromkeys(["", *(c for c in captions if c and c.strip())]))
    hashes = [text_hash(t) for t in texts]
    if len(set(hashes)) != len(hashes):
        raise CacheError("two captions share a 64-bit hash: cannot cache them apart")
    shards, where = _Shards(tmp, "texts"), []
    with torch.no_grad(), progress_bar("cache captions", len(texts), noun="captions") as advance:
        for start in range(0, len(texts), TEXT_BATCH):
            chunk = texts[start:start + TEXT_BATCH]
            outs = [enc.encode(chunk) for enc in encoders]
            for j in range(len(chunk)):
                named = {f"{kind}.{n}": out[part][j].float() for n, out in enumerate(outs)
                         for part, kind in enumerate(("hidden", "pooled"))}
                where.append(shards.add(named))
            advance(len(chunk))
    shards.flush()
    pq.write_table(pa.table({"text": pa.array(texts, pa.string()), "hash": pa.array(hashes, pa.int64()),
                             "shard": pa.array([w[0] for w in where], pa.int64()),
                             "slot": pa.array([w[1] for w in where], pa.int64())}), tmp / TEXTS)
    kind = "pixels" if vae is None else "latents"
    key = cache_key(cfg)
    record = {"format": FORMAT, "kind": kind, "config": key, "config_digest": _digest(key),
              "output": output_state(data.output), "rows": len(rows), "texts": len(texts), "encoders": len(encoders)}
    (tmp / RECORD).write_text(json.dumps(record, indent=1) + "\n", encoding="utf-8")
    old = folder.parent / f".old-{folder.name}-{os.getpid()}"
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)
    return CacheSummary(folder, kind, len(rows), len(texts), len(encoders))


def check(cfg: TrainConfig, output) -> dict:
    """The record of ``cfg.data.cache`` if it was built from this config and this state of ``output`` (module doc)."""
    folder = Path(cfg.data.cache)
    try:
        record = json.loads((folder / RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise CacheError(f"{folder} is not a training cache (no readable {RECORD}): build it with "
                         f"`refinery train cache --config … --output {folder}`") from None
    rebuild = f"rebuild it with `refinery train cache --config … --output {folder}`"
    key = cache_key(cfg)
    if record.get("format") != FORMAT or record.get("config_digest") != _digest(key):
        built = record.get("config") or {}
        changed = [k for k in key if built.get(k) != key[k]] or ["format"]
        raise CacheError(f"cache {folder} is stale: built with other {', '.join(changed)} than this config; {rebuild}")
    then, now = record["output"], output_state(output)
    if then["digest"] != now["digest"]:
        raise CacheError(f"cache {folder} is stale: the output {now['uri']} changed since it was built "
                         f"(manifest written {then['written']}, now {now['written']}); {rebuild}")
    return record


class CachedData(TrainData):
    """``TrainData`` whose batches are read from a cache (module doc); open it with ``CachedData.open``."""

    @classmethod
    def open(cls, cfg: TrainConfig, world_size: int = 1, rank: int = 0) -> CachedData:
        data = cls.from_config(cfg.data, cfg.seed, world_size, rank)
        data.record, data.folder = check(cfg, data.output), str(Path(cfg.data.cache).resolve())
        cached = set(pq.read_table(Path(data.folder) / ROWS, columns=["row_key"]).column("row_key").to_pylist())
        missing = set(data.index.column("row_key").to_pylist()) - cached
        if missing:
            raise CacheError(f"cache {cfg.data.cache} is stale: {len(missing)} selected rows are not in it "
                             f"(e.g. row_key {min(missing)}); rebuild it with `refinery train cache`")
        return data

    def batch_builder(self):
        return CacheBuilder(self.folder, self.record["kind"], self.record["encoders"])


def training_data(cfg: TrainConfig, world_size: int = 1, rank: int = 0) -> TrainData:
    """What fit trains on: the cache when ``data.cache`` is set, else the curated output's images."""
    if cfg.data.cache:
        return CachedData.open(cfg, world_size, rank)
    return TrainData.from_config(cfg.data, cfg.seed, world_size, rank)


def _lookup(table: pa.Table, key: str) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """``table`` sorted by ``key``: the sorted keys (for searchsorted) and every column in that order."""
    order = np.argsort(table.column(key).to_numpy())
    return table.column(key).to_numpy()[order], {n: table.column(n).to_numpy()[order] for n in table.column_names}


class CacheBuilder:
    """A batch from its ``BatchSpec``, read from the cache (picklable: files open lazily, per process)."""

    def __init__(self, folder: str, kind: str, encoders: int):
        self.folder, self.kind, self.encoders = folder, kind, encoders
        self._pid, self._open = None, {}

    def _tables(self):
        if self._pid != os.getpid():
            root = Path(self.folder)
            self._rows = _lookup(pq.read_table(root / ROWS), "row_key")
            self._texts = _lookup(pq.read_table(root / TEXTS, columns=["hash", "shard", "slot"]), "hash")
            self._pid, self._open = os.getpid(), {}
        return self._rows, self._texts

    def _find(self, table, keys: list[int], what: str) -> list[tuple[int, int, dict]]:
        sorted_keys, columns = table
        at = np.searchsorted(sorted_keys, keys)
        out = []
        for key, i in zip(keys, at):
            if i >= len(sorted_keys) or sorted_keys[i] != key:
                raise CacheError(f"cache {self.folder} has no {what} {key}: stale; rebuild it with `refinery train cache`")
            out.append((int(columns["shard"][i]), int(columns["slot"][i]), {n: int(c[i]) for n, c in columns.items()}))
        return out

    def _tensor(self, prefix: str, shard: int, name: str) -> torch.Tensor:
        handle = self._open.get((prefix, shard))
        if handle is None:
            if len(self._open) >= OPEN_SHARDS:
                self._open.pop(next(iter(self._open)))
            handle = self._open[(prefix, shard)] = safe_open(str(Path(self.folder) / f"{prefix}-{shard:05d}.safetensors"), "pt")
        return handle.get_tensor(name)

    def __call__(self, spec: BatchSpec) -> dict:
        rows, texts = self._tables()
        found = self._find(rows, [r[1] for r in spec.rows], "row_key")
        batch: dict = {}
        if self.kind == "pixels":
            stacked = torch.stack([self._tensor("images", s, str(slot)) for s, slot, _ in found])
            batch["pixels"] = stacked.to(torch.float32).div_(127.5).sub_(1.0)
        else:
            for part in ("mean", "std"):
                batch[f"latent_{part}"] = torch.stack([self._tensor("images", s, f"{slot}.{part}") for s, slot, _ in found])
        chosen = self._find(texts, [text_hash(c) for c in spec.captions], "caption hash")
        (empty,) = self._find(texts, [text_hash("")], "empty prompt")
        for part in ("hidden", "pooled"):
            batch[f"text_{part}"] = [torch.stack([self._tensor("texts", s, f"{slot}.{part}.{n}") for s, slot, _ in chosen])
                                     for n in range(self.encoders)]
            batch[f"empty_{part}"] = [self._tensor("texts", empty[0], f"{empty[1]}.{part}.{n}") for n in range(self.encoders)]
        bw, bh = spec.bucket
        if any((c["bucket_w"], c["bucket_h"]) != (bw, bh) for _, _, c in found):
            raise CacheError(f"cache {self.folder} put a row in another bucket than this config: stale; rebuild it")
        return {**batch, "captions": list(spec.captions),
                "original_size": torch.tensor([(h, w) for _, _, w, h in spec.rows], dtype=torch.int64),
                "crop_top_left": torch.tensor([(c["crop_top"], c["crop_left"]) for _, _, c in found], dtype=torch.int64),
                "target_size": torch.tensor([(bh, bw)] * len(spec.rows), dtype=torch.int64),
                "row_keys": [r[1] for r in spec.rows], "bucket": spec.bucket, "epoch": spec.epoch,
                "batch_index": spec.batch_index}


def cached_latents(diffusion, batch: dict, generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """x0 drawn from the cached posterior as ``Diffusion.to_latents`` draws it (the same generator, the same scaling)."""
    from diffusers.utils.torch_utils import randn_tensor

    mean, std = batch["latent_mean"].to(device), batch["latent_std"].to(device)
    latents = mean + std * randn_tensor(mean.shape, generator=generator, device=device, dtype=mean.dtype)
    shift = diffusion.vae.config.shift_factor or 0.0
    return ((latents - shift) * diffusion.vae.config.scaling_factor).float()


def cached_text(batch: dict, drops: list[list[bool]], device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(hidden, pooled) as ``Diffusion.encode_text`` gives them, a dropped row taking the empty prompt's embedding."""
    hidden, pooled = [], []
    for n, dropped in enumerate(drops):
        mask = torch.tensor(dropped, dtype=torch.bool)
        hidden.append(torch.where(mask[:, None, None], batch["empty_hidden"][n][None], batch["text_hidden"][n]))
        pooled.append(torch.where(mask[:, None], batch["empty_pooled"][n][None], batch["text_pooled"][n]))
    return torch.cat(hidden, dim=-1).float().to(device), pooled[-1].float().to(device)
