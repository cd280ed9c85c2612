"""CLIP image embeddings with open_clip: one L2-normalised vector per image, shared by the heads.

Column (``embeddings`` group): ``clip_embedding``, the image tower's output divided by its
L2 norm, rounded to float16 (a list of ``d`` floats per row; null when the image could not
be preprocessed). ``measure`` returns it as one list per image; the fused stage hands the
columns a model returned to the models after it as ``context``, so the heads
(``curate.models.heads``) read ``context["clip_embedding"]``, a list of those lists (or an
``(n, d)`` array; None rows allowed).

Weights (``models.clip``):
- ``model_config_file`` set: an open_clip model config JSON, either the bare form of
  ``open_clip/model_configs/*.json`` (``embed_dim``, ``vision_cfg``, ``text_cfg``) or the hub
  form (``open_clip_config.json``: ``model_cfg`` plus an optional ``preprocess_cfg``). It is
  registered under a private name (``open_clip.add_model_config`` over a copy, so it never
  shadows a built-in arch); ``model`` is then null (random init: tests, plumbing) or a local
  checkpoint file loaded strictly into it. ``arch`` is ignored.
- otherwise ``arch`` (an open_clip model name, e.g. ``ViT-L-14``) and ``model``: a pretrained
  tag (``openai``, ``laion2b_s32b_b82k``: from the local hub cache, downloading when a hub is
  reachable), a local checkpoint file for ``arch``, a local folder in open_clip's ``local-dir``
  form (``open_clip_config.json`` beside the weights), or ``hf-hub:org/name`` (``arch``
  ignored). ``arch`` may itself be ``hf-hub:org/name``.
``check`` verifies the packages, the config file and any local path without importing torch;
a tag cannot be verified without loading, so ``setup`` turns a failed download into one
``ModelUnavailable`` line naming ``models.clip.model``.

Preprocessing is the model's own (``model.visual.preprocess_cfg``: size, mean/std,
interpolation, resize mode ``shortest``/``longest``/``squash``, fill) done as open_clip's
inference transform does it (Pillow resize, centre crop or pad), then the batch is stacked
into one tensor and normalised at once. Batches of ``batch_size``; on ``cuda`` under bf16
autocast (fp16 where bf16 is unsupported); float32 on the CPU.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import tempfile

import numpy as np

from curate.models.base import EXTRA, ModelEnv, ModelUnavailable, need_packages, need_path
from curate.models.config import ClipConfig

COLUMNS = ["clip_embedding"]
INSTALL = f"pip install 'refinery[{EXTRA}]' open_clip_torch"
_PACKAGES = ("torch", "torchvision", "open_clip")
_SCHEMAS = ("hf-hub:", "local-dir:")
_OFFLINE = "weights not available offline: put the checkpoint at a path and set models.clip.model"


def _looks_local(model: str) -> bool:
    """A path rather than a tag or hub id: has a separator, starts with ~ or ., or exists."""
    return os.sep in model or model.startswith(("~", ".")) or os.path.exists(model)


def read_model_config(path: str) -> tuple[dict, dict]:
    """(model_cfg, preprocess_cfg) from an open_clip config JSON in bare or hub form."""
    with open(os.path.expanduser(path), encoding="utf-8") as fh:
        raw = json.load(fh)
    if not isinstance(raw, dict):
        raise ValueError("not a JSON object")
    model_cfg, preprocess = (raw["model_cfg"], raw.get("preprocess_cfg", {})) if "model_cfg" in raw else (raw, {})
    missing = [k for k in ("embed_dim", "vision_cfg", "text_cfg") if k not in model_cfg]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    return model_cfg, preprocess


def _builtin_arch(arch: str) -> bool:
    """Whether open_clip ships a config named ``arch`` (read from disk, no import)."""
    spec = importlib.util.find_spec("open_clip")
    folders = list(spec.submodule_search_locations or []) if spec else []
    name = arch.replace("/", "-")
    return any(os.path.isfile(os.path.join(f, "model_configs", f"{name}.json")) for f in folders)


def check(cfg: ClipConfig) -> str | None:
    """None when open_clip and every local file named are here; no loading (see module doc)."""
    problem = need_packages("models.clip", _PACKAGES, INSTALL.removeprefix("pip install "))
    if problem:
        return problem
    if cfg.model_config_file:
        problem = need_path("models.clip.model_config_file", cfg.model_config_file, "open_clip model config")
        if problem:
            return problem
        try:
            read_model_config(cfg.model_config_file)
        except (OSError, ValueError) as err:
            return f"models.clip.model_config_file: {cfg.model_config_file} is not an open_clip model config ({err})"
        if cfg.model is None:
            return None
        if not _looks_local(cfg.model):
            return (f"models.clip.model: {cfg.model!r} is a tag or hub id; with models.clip.model_config_file set "
                    "it must be a local checkpoint file, or null for random init")
        return need_path("models.clip.model", os.path.expanduser(cfg.model), "CLIP checkpoint")
    if cfg.arch.startswith(_SCHEMAS) or (cfg.model or "").startswith(_SCHEMAS):
        return None
    if not _builtin_arch(cfg.arch):
        return f"models.clip.arch: {cfg.arch!r} is not an open_clip model name (see open_clip.list_models())"
    if not cfg.model:
        return ("models.clip.model: no weights given (a pretrained tag such as 'openai', an hf-hub: id, "
                "or a local checkpoint path)")
    if _looks_local(cfg.model):
        path = os.path.expanduser(cfg.model)
        problem = need_path("models.clip.model", path, "CLIP checkpoint")
        if problem is None and os.path.isdir(path) and not os.path.isfile(os.path.join(path, "open_clip_config.json")):
            problem = f"models.clip.model: folder {cfg.model} has no open_clip_config.json (open_clip's local-dir form)"
        return problem
    return None


def build(cfg: ClipConfig) -> "ClipEmbedder":
    return ClipEmbedder(cfg)


def _config_name(model_cfg: dict) -> str:
    digest = hashlib.sha1(json.dumps(model_cfg, sort_keys=True).encode()).hexdigest()[:12]
    return f"refinery-clip-{digest}"


def _register(model_cfg: dict) -> str:
    """Register ``model_cfg`` with open_clip under a private name; returns the name."""
    import open_clip

    name = _config_name(model_cfg)
    if name not in open_clip.list_models():
        with tempfile.TemporaryDirectory() as tmp:
            path = os.path.join(tmp, f"{name}.json")
            with open(path, "w", encoding="utf-8") as fh:
                json.dump(model_cfg, fh)
            open_clip.add_model_config(path)  # read now; the file may go
    return name


class ClipEmbedder:
    name = "clip"
    columns = COLUMNS
    needs: tuple[str, ...] = ()

    def __init__(self, cfg: ClipConfig):
        self.cfg = cfg
        self.model = None
        self.device = "cpu"
        self.preprocess: dict = {}
        self.model_id = ""  # what the manifest records

    def _source(self) -> tuple[str, str | None, dict]:
        """(open_clip model name, pretrained argument, preprocess overrides)."""
        cfg = self.cfg
        model = os.path.expanduser(cfg.model) if cfg.model and _looks_local(cfg.model) else cfg.model
        if cfg.model_config_file:
            model_cfg, preprocess = read_model_config(cfg.model_config_file)
            return _register(model_cfg), model, preprocess
        if cfg.arch.startswith(_SCHEMAS):
            return cfg.arch, None, {}
        if model and model.startswith(_SCHEMAS):
            return model, None, {}
        if model and os.path.isdir(model):
            return f"local-dir:{model}", None, {}
        return cfg.arch, model, {}

    def setup(self, env: ModelEnv) -> None:
        env.pin_threads()
        import open_clip
        import torch

        name, pretrained, pp = self._source()
        tag = pretrained if pretrained and not os.path.isfile(pretrained) else None
        if tag and tag not in open_clip.list_pretrained_tags_by_model(name):
            known = ", ".join(open_clip.list_pretrained_tags_by_model(name)) or "none"
            raise ModelUnavailable(f"models.clip.model: {tag!r} is not an open_clip pretrained tag for {name} (known: {known})")
        try:
            model, _, _ = open_clip.create_model_and_transforms(
                name, pretrained=pretrained, device=env.torch_device,
                image_mean=pp.get("mean"), image_std=pp.get("std"),
                image_interpolation=pp.get("interpolation"), image_resize_mode=pp.get("resize_mode"))
        except Exception as err:  # noqa: BLE001 -- one line for the user, the cause chained
            detail = str(err).splitlines()[0][:160] if str(err) else type(err).__name__
            if pretrained and os.path.isfile(pretrained):
                raise ModelUnavailable(f"models.clip.model: checkpoint {pretrained} does not load into {name}: {detail}") from err
            where = f"{name} {tag}" if tag else name
            raise ModelUnavailable(f"models.clip.model: {where}: {_OFFLINE} ({detail})") from err
        self.model = model.eval()
        self.device = env.torch_device
        self.preprocess = dict(model.visual.preprocess_cfg)
        source = os.path.basename(self.cfg.model_config_file) if self.cfg.model_config_file else name
        self.model_id = f"{source}:{pretrained or 'random-init'}"
        self._torch = torch

    def measure(self, images: list[np.ndarray], context: dict) -> dict[str, list]:
        if self.model is None:
            raise RuntimeError("ClipEmbedder.measure before setup")
        out: list = [None] * len(images)
        tiles, where = [], []
        for i, image in enumerate(images):
            tile = fit(image, self.preprocess)
            if tile is not None:
                tiles.append(tile)
                where.append(i)
        step = self.cfg.batch_size
        for start in range(0, len(tiles), step):
            vectors = self.embed(np.stack(tiles[start : start + step]))
            for j, vec in zip(where[start : start + step], vectors.astype(np.float16)):
                out[j] = vec.tolist()
        return {"clip_embedding": out}

    def embed(self, tiles: np.ndarray) -> np.ndarray:
        """L2-normalised float32 ``(n, d)`` embeddings of uint8 ``(n, h, w, 3)`` model-size tiles."""
        torch = self._torch
        mean = torch.tensor(self.preprocess["mean"], dtype=torch.float32).view(1, 3, 1, 1)
        std = torch.tensor(self.preprocess["std"], dtype=torch.float32).view(1, 3, 1, 1)
        x = torch.from_numpy(tiles).permute(0, 3, 1, 2).float().div_(255.0)
        x = ((x - mean) / std).to(self.device)
        with torch.inference_mode():
            if self.device == "cuda":
                dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
                with torch.autocast("cuda", dtype=dtype):
                    feats = self.model.encode_image(x)
            else:
                feats = self.model.encode_image(x)
            feats = torch.nn.functional.normalize(feats.float(), dim=-1)
        return feats.cpu().numpy()


_RESAMPLE = {"bicubic": 3, "bilinear": 2, "nearest": 0, "lanczos": 1}  # PIL.Image.Resampling values


def fit(image: np.ndarray, pp: dict) -> np.ndarray | None:
    """``image`` resized and cropped (or padded) to the model's input as open_clip's inference
    transform does it; uint8 ``(h, w, 3)``. None for an image that cannot be fitted."""
    from PIL import Image

    if image is None or image.ndim not in (2, 3) or min(image.shape[:2]) < 1:
        return None
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    image = np.ascontiguousarray(image[:, :, :3], dtype=np.uint8)
    if image.shape[2] != 3:
        return None
    size = pp.get("size", 224)
    th, tw = (size, size) if isinstance(size, int) else tuple(size)
    h, w = image.shape[:2]
    mode = pp.get("resize_mode", "shortest")
    resample = _RESAMPLE.get(pp.get("interpolation", "bicubic"), 3)
    if mode == "squash":
        new_h, new_w = th, tw
    elif mode == "longest":
        ratio = max(h / th, w / tw)
        new_h, new_w = round(h / ratio), round(w / ratio)
    elif th == tw:  # torchvision Resize(int): short side to size, long side truncated
        short, long = min(h, w), max(h, w)
        new_short, new_long = th, int(th * long / short)
        new_h, new_w = (new_short, new_long) if h <= w else (new_long, new_short)
    else:
        ratio = min(h / th, w / tw)
        new_h, new_w = round(h / ratio), round(w / ratio)
    new_h, new_w = max(1, new_h), max(1, new_w)
    pil = Image.fromarray(image)
    if (new_h, new_w) != (h, w):
        pil = pil.resize((new_w, new_h), resample)
    arr = np.asarray(pil)
    return _crop_or_pad(arr, th, tw, int(pp.get("fill_color", 0)))


def _crop_or_pad(arr: np.ndarray, th: int, tw: int, fill: int) -> np.ndarray:
    """Centre crop to ``(th, tw)``, padding with ``fill`` first where smaller (torchvision rules)."""
    h, w = arr.shape[:2]
    if th > h or tw > w:
        top, left = (th - h) // 2 if th > h else 0, (tw - w) // 2 if tw > w else 0
        padded = np.full((max(h, th), max(w, tw), 3), fill, dtype=np.uint8)
        padded[top : top + h, left : left + w] = arr
        arr, (h, w) = padded, padded.shape[:2]
    top, left = int(round((h - th) / 2.0)), int(round((w - tw) / 2.0))
    return np.ascontiguousarray(arr[top : top + th, left : left + tw])
