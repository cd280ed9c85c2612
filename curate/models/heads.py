"""Small heads over the shared CLIP embedding: LAION aesthetics and LAION's CLIP NSFW detector.

Both read ``context["clip_embedding"]`` (``curate.models.clip``: one L2-normalised list per
row, or an ``(n, d)`` array; a None row gives None) and re-normalise it, as their published
inference does. They run on the CPU or the actor's device; a batch is one matrix product.
The checkpoint is ``models.<name>.model``, a local file: a torch state dict (``.pt``/``.pth``,
loaded ``weights_only``; a ``{"state_dict": ...}`` wrapper and a ``module.`` prefix are
accepted) or a ``.safetensors`` file with the same keys.

``aesthetic`` -> ``stat_aesthetic`` (about 1..10): the LAION improved aesthetic predictor
(christophschuhmann/improved-aesthetic-predictor, ``sac+logos+ava1-l14-linearMSE.pth``), an
``nn.Sequential`` named ``layers`` on the normalised ViT-L/14 (openai) embedding::

    layers = Sequential(Linear(768, 1024), Dropout(0.2), Linear(1024, 128), Dropout(0.2),
                        Linear(128, 64), Dropout(0.1), Linear(64, 16), Linear(16, 1))

keys ``layers.{0,2,4,6,7}.{weight,bias}`` (no activations: the "linearMSE" checkpoints). The
"reluMSE" variant (``ava+logos-l14-reluMSE.pth``: a ReLU after each of the first four
Linears) has keys ``layers.{0,3,6,9,11}.*`` and loads too. Widths are read from the weights,
so the same layout over another embedding width loads; it must equal the CLIP width.

``clip_nsfw`` -> ``stat_clip_nsfw`` (0..1, sigmoid): LAION-AI/CLIP-based-NSFW-Detector. The
published model is an AutoKeras model (``clip_autokeras_binary_nsfw.zip``, ViT-L/14:
Normalization(768) -> Dense 64 ReLU -> Dense 512 ReLU -> Dense 256 ReLU -> Dense 1 sigmoid);
the repository's PyTorch port (``models/clip_ViT-L-14_openai_binary_nsfw_head.pth``, and
``clip_ViT-B-32_..._head.pth``: 512 -> 32 -> 32 -> 1) has the keys this head loads:
``norm.mean``, ``norm.variance`` (the Keras Normalization's statistics, ``d`` values),
``linear_1.weight``/``.bias`` ... ``linear_K.*`` (PyTorch ``(out, in)`` weights); forward is
``(x - mean) / (sqrt(variance) + 1e-10)``, ReLU after every Linear but the last, sigmoid.
Converting the Keras model yourself: ``m = load_model(folder, custom_objects=autokeras.CUSTOM_OBJECTS)``;
``norm.mean``/``norm.variance`` = ``m.layers[2].weights[0]``/``[1]``; each Dense layer in
order (``m.layers[3, 5, 7, 9]`` for ViT-L/14) gives ``linear_k.weight = kernel.T`` and
``linear_k.bias = bias``; ``torch.save`` the dict. (The ViT-H-14 head, a ``layers``
Sequential without a sigmoid, is not this format.)

A checkpoint that does not have these keys is a ``ModelUnavailable`` at ``setup``; one whose
input width differs from the embedding's is a ``ModelUnavailable`` at the first ``measure``
(the embedding width is known only then), naming ``models.<name>.model``.
"""
from __future__ import annotations

import os
import re

import numpy as np

from curate.models.base import EXTRA, ModelEnv, ModelUnavailable, need_packages, need_path
from curate.models.config import HeadConfig

COLUMNS = {"aesthetic": ["stat_aesthetic"], "clip_nsfw": ["stat_clip_nsfw"]}
INSTALL = f"pip install 'refinery[{EXTRA}]'"
WHAT = {"aesthetic": "LAION aesthetic predictor checkpoint", "clip_nsfw": "LAION CLIP NSFW head checkpoint"}
AESTHETIC_LAYOUTS = {(0, 2, 4, 6, 7): "linear", (0, 3, 6, 9, 11): "relu"}  # Linear positions in `layers`


def check(name: str, cfg: HeadConfig) -> str | None:
    """None when torch (and safetensors for a .safetensors file) and the checkpoint are here."""
    modules = ("torch", "safetensors") if (cfg.model or "").endswith(".safetensors") else ("torch",)
    problem = need_packages(f"models.{name}", modules, INSTALL.removeprefix("pip install "))
    if problem:
        return problem
    problem = need_path(f"models.{name}.model", cfg.model, WHAT[name])
    if problem is None and not os.path.isfile(os.path.expanduser(cfg.model)):
        problem = f"models.{name}.model: {cfg.model} is not a file (the {WHAT[name]})"
    return problem


def build(name: str, cfg: HeadConfig) -> "Head":
    if name not in COLUMNS:
        raise ValueError(f"unknown head {name!r} (known: {', '.join(COLUMNS)})")
    return Head(name, cfg)


def load_state_dict(path: str) -> dict:
    """A flat ``{key: tensor}`` from a torch file or a safetensors file (see module doc)."""
    path = os.path.expanduser(path)
    if path.endswith(".safetensors"):
        from safetensors.torch import load_file

        state = load_file(path)
    else:
        import torch

        state = torch.load(path, map_location="cpu", weights_only=True)
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise ValueError(f"holds a {type(state).__name__}, not a state dict")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    return state


def aesthetic_mlp(state: dict):
    """The published ``layers`` Sequential, sized from ``state`` and loaded from it."""
    import torch.nn as nn

    positions = tuple(sorted({int(m.group(1)) for k in state if (m := re.fullmatch(r"layers\.(\d+)\.weight", k))}))
    layout = AESTHETIC_LAYOUTS.get(positions)
    if layout is None:
        raise ValueError(f"Linear layers at layers.{list(positions)}; the published layouts have them at "
                         "layers.[0, 2, 4, 6, 7] (linearMSE) or layers.[0, 3, 6, 9, 11] (reluMSE)")
    widths = [state[f"layers.{p}.weight"].shape[1] for p in positions] + [state[f"layers.{positions[-1]}.weight"].shape[0]]
    if widths[-1] != 1:
        raise ValueError(f"the last Linear gives {widths[-1]} outputs, not one score")
    dropouts = (0.2, 0.2, 0.1)
    mods: list = []
    for k in range(5):
        mods.append(nn.Linear(widths[k], widths[k + 1]))
        if layout == "relu" and k < 4:
            mods.append(nn.ReLU())
        if k < 3:
            mods.append(nn.Dropout(dropouts[k]))
    head = nn.Module()
    head.layers = nn.Sequential(*mods)
    head.load_state_dict(state, strict=True)
    return head.layers


def nsfw_mlp(state: dict):
    """LAION's CLIP NSFW head (``norm`` + ``linear_1..K``, ReLUs, sigmoid), loaded from ``state``."""
    import torch
    import torch.nn as nn

    count = len({k.split(".")[0] for k in state if re.fullmatch(r"linear_\d+\.weight", k)})
    need = {"norm.mean", "norm.variance"} | {f"linear_{i}.{p}" for i in range(1, count + 1) for p in ("weight", "bias")}
    if count == 0 or set(state) != need:
        extra, missing = sorted(set(state) - need)[:4], sorted(need - set(state))[:4]
        raise ValueError("expected keys norm.mean, norm.variance, linear_1..K.weight/bias "
                         f"(missing {missing}, unexpected {extra})")
    shapes = [tuple(state[f"linear_{i}.weight"].shape) for i in range(1, count + 1)]
    if any(shapes[i][1] != shapes[i - 1][0] for i in range(1, count)) or shapes[-1][0] != 1:
        raise ValueError(f"linear_1..{count} weights {shapes} do not chain to one output")
    width = shapes[0][1]

    class NsfwHead(nn.Module):
        def __init__(self):
            super().__init__()
            self.register_buffer("mean", state["norm.mean"].reshape(-1).float().clone())
            self.register_buffer("variance", state["norm.variance"].reshape(-1).float().clone())
            self.linears = nn.ModuleList(nn.Linear(state[f"linear_{i}.weight"].shape[1], state[f"linear_{i}.weight"].shape[0])
                                         for i in range(1, count + 1))

        def forward(self, x):
            x = (x - self.mean) / (self.variance.sqrt() + 1e-10)
            for i, linear in enumerate(self.linears):
                x = linear(x)
                x = torch.relu(x) if i < len(self.linears) - 1 else torch.sigmoid(x)
            return x

    head = NsfwHead()
    if head.mean.numel() != width or head.variance.numel() != width:
        raise ValueError(f"norm statistics have {head.mean.numel()} values, linear_1 takes {width}")
    linears = {f"linears.{i - 1}.{p}": state[f"linear_{i}.{p}"] for i in range(1, count + 1) for p in ("weight", "bias")}
    head.load_state_dict({"mean": head.mean, "variance": head.variance, **linears})
    return head


def _matrix(values, n: int) -> tuple[np.ndarray, list[int]]:
    """The ``(m, d)`` float32 rows of ``values`` that are present, and their indices."""
    if values is None:
        return np.zeros((0, 0), np.float32), []
    if len(values) != n:
        raise ValueError(f"clip_embedding has {len(values)} rows for {n} images")
    if isinstance(values, np.ndarray) and values.ndim == 2:
        rows = list(range(len(values)))
        return values.astype(np.float32, copy=False), rows
    rows = [i for i, v in enumerate(values) if v is not None]
    if not rows:
        return np.zeros((0, 0), np.float32), []
    return np.asarray([values[i] for i in rows], dtype=np.float32), rows


class Head:
    needs = ("clip_embedding",)

    def __init__(self, name: str, cfg: HeadConfig):
        self.name = name
        self.cfg = cfg
        self.columns = COLUMNS[name]
        self.net = None
        self.width = 0
        self.device = "cpu"

    def setup(self, env: ModelEnv) -> None:
        env.pin_threads()
        setting = f"models.{self.name}.model"
        try:
            state = load_state_dict(self.cfg.model)
            net = aesthetic_mlp(state) if self.name == "aesthetic" else nsfw_mlp(state)
        except (OSError, ValueError, RuntimeError, KeyError) as err:
            detail = str(err).splitlines()[0][:300] if str(err) else type(err).__name__
            raise ModelUnavailable(f"{setting}: {self.cfg.model} is not a {WHAT[self.name]}: {detail}") from err
        first = next(p for p in net.parameters() if p.ndim == 2)
        self.width = int(first.shape[1])
        self.device = env.torch_device
        self.net = net.eval().to(self.device)

    def measure(self, images: list[np.ndarray], context: dict) -> dict[str, list]:
        import torch

        if self.net is None:
            raise RuntimeError(f"head {self.name}: measure before setup")
        column = self.columns[0]
        out: list = [None] * len(images)
        x, rows = _matrix(context.get("clip_embedding"), len(images))
        if not rows:
            return {column: out}
        if x.shape[1] != self.width:
            raise ModelUnavailable(f"models.{self.name}.model: {self.cfg.model} takes {self.width}-wide embeddings, "
                                   f"models.clip gives {x.shape[1]} (use the CLIP model the head was trained on)")
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        x = x / np.where(norms == 0, 1.0, norms)
        with torch.inference_mode():
            y = self.net(torch.from_numpy(x).to(self.device)).float().cpu().numpy().reshape(-1)
        for i, v in zip(rows, y):
            out[i] = float(v) if np.isfinite(v) else None
        return {column: out}
