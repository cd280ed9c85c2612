"""The ``cogvlm`` backend: CogVLM-1.1-chat and CogVLM2 through their own remote code, pinned.

Contract (the ``Backend`` protocol of ``caption.backends.base``):
- Pinning (``pin_model``): ``trust_remote_code`` runs the model repository's Python, so the
  code must be a fixed commit. A hub id needs ``model.revision`` = a full 40-hex commit (a
  branch, a tag or a short hash is refused). A local folder is pinned by being a hub-cache
  snapshot (``.../models--ORG--NAME/snapshots/<40-hex>/``: the folder name is the commit;
  a different ``model.revision`` is refused) or, for any other folder, by ``model.revision``;
  neither is refused as an unpinned snapshot. ``model_ref`` is ``id@commit`` (a snapshot's
  id is its hub id, ``ORG/NAME``). ``CogVLMBackend(cfg)`` refuses what ``pin_model`` refuses.
- ``check(cfg) -> str | None`` (driver, no model load): the pin; then the local files: a
  folder (or the cached snapshot of a hub id) needs ``config.json``, every file its
  ``auto_map`` names (``modeling_cogvlm.py`` when it names none) and the files those import
  relatively, weights, the packages that code imports, and a tokenizer (its own, or the base
  tokenizer below in the cache or reachable; sentencepiece when that has no tokenizer.json).
  An ``auto_map`` entry that loads code from another repository (``repo--module.Class``) is
  refused. A hub id that is not cached is accepted when the hub is reachable (setup
  downloads that commit), else the line says to ``hf download`` it at that commit into a
  folder and set ``model.id`` to it.
- ``setup(env)``: ``AutoModelForCausalLM.from_pretrained(id or folder, revision=commit,
  trust_remote_code=True, dtype=env dtype)`` (``dtype`` is transformers 5's name for
  ``torch_dtype``; low-memory loading is its only mode), ``eval()``, on ``env.device``.
  Tokenizer: the snapshot's own when it ships one (CogVLM2: LLaMA-3's); else the base
  tokenizer its model card loads, by vocabulary size (``BASE_TOKENIZERS``: 32000 ->
  ``lmsys/vicuna-7b-v1.5`` for CogVLM-1.1; the hub's current one, it is data, not code).
- ``caption(images, prompts)``: one single-turn conversation per image in the snapshot's
  ``template_version`` (``conversation_inputs``), left-padded into one batch (``collate``),
  greedy decoding for at most ``model.max_new_tokens`` (``greedy_decode``), the new tokens
  cut at the first stop token and decoded (``parse_answer``). CUDA OOM propagates as is.

What the remote code does, and so what this module reproduces (read in THUDM's
``modeling_cogvlm.py`` of cogvlm-chat-hf and cogvlm2-llama3-chat-19B, and their
``config.json``/README on huggingface.co):
- ``_history_to_prompt``: ``base`` is the query alone; ``chat`` is ``"Question: {q} Answer:"``,
  ``vqa`` ``"Question: {q} Short answer:"``, earlier turns each
  ``"Question: {q} Answer: {a}\\n"`` before it. Both chat models' config says ``chat``.
- ``build_conversation_input_ids``: ``[bos]`` + one placeholder per vision token (the pad id:
  0 = ``<unk>`` for Vicuna, 128002 for LLaMA-3, which CogVLM2 sets itself) with
  ``token_type_ids`` VISION=1 + the prompt encoded without special tokens (LANGUAGE=0); the
  image is resized to ``image_size`` square, bicubic, scaled to [0, 1] and normalised with
  CLIP's mean/std; ``images`` is a list of one tensor, and ``forward`` takes one such list
  per sample. Vision tokens: ``(image_size // patch_size) ** 2 + 2`` for CogVLM (490/14:
  1227; ``num_positions`` 1226 = 35² + cls), ``(image_size // patch_size // 2) ** 2 + 2`` for
  CogVLM2, whose ``visual.py`` merges 2x2 patches with a stride-2 conv (1344/14: 2306, the
  ``num_image_tokens`` of its TGI config). The 2 are boi/eoi. CogVLM2 is recognised by its
  LLaMA-3 vocabulary (128256; CogVLM's is LLaMA-2's 32000).
- ``build_position_ids``: boi/eoi step like text, the vision tokens between them share one
  position, padding does not step. ``position_ids`` gives the same positions, starting at 0
  on every row (the remote code starts left-padded rows at 1; RoPE only sees differences).
- Why not ``model.generate``: the remote code overrides ``_update_model_kwargs_for_generation``
  with a call to ``GenerationMixin._extract_past_from_model_output``, which transformers
  removed in 4.45 (zai-org/CogVLM2#218, #220; CogVLM#504), and indexes ``past_key_values``
  as tuples; transformers 5 has neither. ``greedy_decode`` calls the model's own ``forward``
  with its tuple cache and explicit ``position_ids``, which is what ``generate`` with
  ``do_sample=False`` would do.
"""
from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import numpy as np

from caption.backends.base import BackendEnv, CaptionFailure, CaptionUnavailable, missing_packages, need
from caption.config import CaptionConfig, ModelSpec

LANGUAGE_TOKEN_TYPE = 0
VISION_TOKEN_TYPE = 1
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TEMPLATES = {"chat": "Answer:", "vqa": "Short answer:"}  # "base": the query alone
STOP_TEXTS = ("</s>", "<|end_of_text|>", "<|eot_id|>")
BASE_TOKENIZERS = {32000: "lmsys/vicuna-7b-v1.5"}  # vocab_size -> tokenizer of a snapshot without one
LLAMA3_VOCAB = 128000  # CogVLM2 and later: LLaMA-3 vocabulary, 2x2-merged vision tokens
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin")
COMMIT = re.compile(r"[0-9a-f]{40}")
HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")
PACKAGES = ("torch", "torchvision", "transformers", "PIL")
_ANSWER_ECHO = re.compile(r"^\s*(short\s+)?answer\s*:\s*", re.IGNORECASE)


# -- pinning ---------------------------------------------------------------------------------

@dataclass(frozen=True)
class Pin:
    load_from: str  # what from_pretrained gets: the hub id, or the folder
    commit: str
    ref: str  # model_ref: id@commit
    folder: Path | None  # the local files (None: a hub id, looked up in the cache)


def _pin_advice(model_id: str) -> str:
    return ("the cogvlm backend runs the model repository's own Python (trust_remote_code), so pin "
            f"the full 40-character commit hash (https://huggingface.co/{model_id}/commits/main)")


def pin_model(model: ModelSpec) -> Pin:
    """The pinned source of ``model``, or ``CaptionUnavailable`` saying what to pin."""
    model_id, revision = model.id, model.revision
    if revision is not None:
        if not COMMIT.fullmatch(revision.lower()):
            kind = "a short hash" if re.fullmatch(r"[0-9a-fA-F]{4,39}", revision) else "a branch or tag, not a commit"
            raise CaptionUnavailable(f"model.revision {revision!r} is {kind}: {_pin_advice(_hub_name(model_id))}")
        revision = revision.lower()
    path = Path(model_id).expanduser()
    if path.is_dir():
        return _pin_folder(path, model_id, revision)
    if model_id.startswith(("/", ".", "~")) or not HUB_ID.fullmatch(model_id):
        raise CaptionUnavailable(f"model.id {model_id}: no such folder (and not a hub id ORG/NAME)")
    if revision is None:
        raise CaptionUnavailable(f"model.revision is not set for hub id {model_id}: {_pin_advice(model_id)}")
    return Pin(model_id, revision, f"{model_id}@{revision}", None)


def _pin_folder(path: Path, model_id: str, revision: str | None) -> Pin:
    snapshot = path.name if path.parent.name == "snapshots" and COMMIT.fullmatch(path.name) else None
    if snapshot and revision and revision != snapshot:
        raise CaptionUnavailable(f"model.revision {revision} does not match the snapshot {path}: "
                                 "leave it unset or set it to the folder's commit")
    commit = snapshot or revision
    if commit is None:
        raise CaptionUnavailable(
            f"model.id {model_id} is an unpinned snapshot: it is not a hub-cache .../snapshots/<commit>/ "
            "folder, so set model.revision to the 40-character commit it was downloaded at "
            "(trust_remote_code runs its Python)")
    repo = path.parent.parent.name
    hub_id = repo[len("models--"):].replace("--", "/", 1) if snapshot and repo.startswith("models--") else model_id
    return Pin(str(path), commit, f"{hub_id}@{commit}", path)


def _hub_name(model_id: str) -> str:
    return model_id if HUB_ID.fullmatch(model_id) else "ORG/NAME"


# -- local files -----------------------------------------------------------------------------

def cached_file(repo_id: str, filename: str, revision: str | None = None) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, revision=revision)
    return Path(found) if isinstance(found, str) else None


def hub_reachable(timeout_s: float = 3.0) -> bool:
    """False in offline mode (HF_HUB_OFFLINE / TRANSFORMERS_OFFLINE) or when the endpoint does not answer."""
    flags = (os.environ.get(v, "").strip().lower() for v in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"))
    if any(f in ("1", "true", "yes", "on") for f in flags):
        return False
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    try:
        with socket.create_connection((url.hostname, url.port or 443), timeout=timeout_s):
            return True
    except OSError:
        return False


def snapshot_folder(pin: Pin) -> Path | None:
    """The pinned files on this machine: the folder, or the hub cache's snapshot of the commit."""
    if pin.folder is not None:
        return pin.folder
    config = cached_file(pin.load_from, "config.json", pin.commit)
    return config.parent if config else None


def read_config(folder: Path) -> dict:
    path = folder / "config.json"
    if not path.is_file():
        raise CaptionUnavailable(f"model folder {folder} has no config.json")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise CaptionUnavailable(f"{path} is not readable JSON: {err}") from err
    if not isinstance(config, dict):
        raise CaptionUnavailable(f"{path} is not a JSON object")
    return config


def code_files(folder: Path, config: dict) -> list[Path]:
    """The Python files trust_remote_code will run: auto_map's modules and what they import relatively."""
    auto_map = config.get("auto_map") or {}
    refs = [r for v in auto_map.values() for r in (v if isinstance(v, list) else [v]) if r]
    if "AutoModelForCausalLM" not in auto_map:
        refs.append("modeling_cogvlm.CogVLMForCausalLM")
    pending, files = [], []
    for ref in refs:
        if "--" in ref:
            raise CaptionUnavailable(f"{folder / 'config.json'} auto_map {ref!r} loads code from another "
                                     "repository: refused (only the pinned snapshot's own code may run)")
        pending.append((ref.rsplit(".", 1)[0], "config.json auto_map"))
    while pending:
        module, named_by = pending.pop()
        path = folder / (module.replace(".", "/") + ".py")
        if path in files:
            continue
        if not path.is_file():
            raise CaptionUnavailable(f"model folder {folder} lacks {path.name} (named by {named_by}): "
                                     "trust_remote_code needs the model's own code beside config.json")
        files.append(path)
        text = path.read_text(encoding="utf-8", errors="replace")
        pending += [(m, path.name) for m in re.findall(r"^\s*from\s+\.(\w[\w.]*)\s+import", text, re.MULTILINE)]
    return files


def folder_problem(folder: Path, hub_id: str) -> str | None:
    """What the pinned folder lacks to load here (code, weights, packages, tokenizer), or None."""
    from transformers.dynamic_module_utils import get_imports

    try:
        config = read_config(folder)
        files = code_files(folder, config)
    except CaptionUnavailable as err:
        return str(err)
    if not any(any(folder.glob(g)) for g in WEIGHT_GLOBS):
        return f"model folder {folder} has no weights ({' or '.join(WEIGHT_GLOBS)})"
    imported = sorted({m for f in files for m in get_imports(f)})
    missing = missing_packages(*imported)
    if missing:
        return f"{hub_id}'s remote code imports {', '.join(missing)}: pip install {' '.join(missing)}"
    if has_tokenizer(folder):
        return None
    base = BASE_TOKENIZERS.get(config.get("vocab_size"))
    if base is None:
        return f"model folder {folder} has no tokenizer and no known base tokenizer for vocab_size {config.get('vocab_size')}"
    if cached_file(base, "tokenizer_config.json") is None and not hub_reachable():
        return (f"{hub_id} uses the {base} tokenizer, which is not in the hub cache and no hub is reachable: "
                f"download it with `hf download {base}` (HF_HOME's cache) or copy its tokenizer files into {folder}")
    if cached_file(base, "tokenizer.json") is None and missing_packages("sentencepiece"):
        return f"the {base} tokenizer (tokenizer.model, no tokenizer.json) needs sentencepiece: pip install sentencepiece"
    return None


def has_tokenizer(folder: Path) -> bool:
    return any((folder / f).is_file() for f in TOKENIZER_FILES)


def check(cfg: CaptionConfig) -> str | None:
    problem = need(PACKAGES, "backend cogvlm")
    if problem:
        return problem
    try:
        pin = pin_model(cfg.model)
    except CaptionUnavailable as err:
        return str(err)
    folder = snapshot_folder(pin)
    if folder is not None:
        return folder_problem(folder, pin.ref.rsplit("@", 1)[0])
    if hub_reachable():
        return None  # setup downloads the pinned commit
    return (f"model.id {pin.load_from}: no local snapshot at commit {pin.commit} and no hub reachable: download it "
            f"with `hf download {pin.load_from} --revision {pin.commit} --local-dir DIR` (older huggingface_hub: "
            f"huggingface-cli download) and set model.id to DIR, keeping model.revision {pin.commit}")


# -- inputs ----------------------------------------------------------------------------------

@dataclass(frozen=True)
class VisionLayout:
    image_size: int
    patch_size: int
    merge: int = 1  # 1: CogVLM; 2: CogVLM2 (2x2 patches merged into one token)

    @property
    def tokens(self) -> int:
        side = self.image_size // self.patch_size // self.merge
        return side * side + 2  # + boi, eoi


def vision_layout(config: dict) -> VisionLayout:
    vision = config.get("vision_config") or {}
    try:
        size, patch = int(vision["image_size"]), int(vision["patch_size"])
    except (KeyError, TypeError, ValueError) as err:
        raise CaptionUnavailable("config.json has no vision_config.image_size/patch_size: not a CogVLM snapshot") from err
    return VisionLayout(size, patch, 2 if int(config.get("vocab_size") or 0) >= LLAMA3_VOCAB else 1)


def history_prompt(template: str, query: str, history: tuple[tuple[str, str], ...] = ()) -> str:
    """The text of a conversation as the remote ``_history_to_prompt`` writes it."""
    if template == "base":
        return query
    if template not in TEMPLATES:
        raise ValueError(f"unknown template_version {template!r}: base, chat or vqa")
    answer = TEMPLATES[template]
    turns = "".join(f"Question: {q} {answer} {a}\n" for q, a in history)
    return f"{turns}Question: {query} {answer}"


def image_tensor(image: np.ndarray, image_size: int):
    """(3, S, S) float32: bicubic resize to S x S, [0, 1], CLIP mean/std (torchvision's Resize/ToTensor/Normalize)."""
    import torch
    from PIL import Image

    resized = Image.fromarray(np.ascontiguousarray(image[..., :3]), "RGB").resize((image_size, image_size), Image.BICUBIC)
    pixels = np.asarray(resized, dtype=np.float32) / 255.0
    pixels = (pixels - np.asarray(CLIP_MEAN, np.float32)) / np.asarray(CLIP_STD, np.float32)
    return torch.from_numpy(pixels.transpose(2, 0, 1).copy())


def conversation_inputs(tokenizer, query: str, layout: VisionLayout, template: str, image: np.ndarray | None = None,
                        history: tuple[tuple[str, str], ...] = (), placeholder_id: int | None = None) -> dict:
    """One sample as ``build_conversation_input_ids`` makes it: 1-D ``input_ids``,
    ``token_type_ids``, ``attention_mask`` and ``images`` (``[tensor]``, or ``[]`` without an image)."""
    import torch

    if tokenizer.bos_token_id is None:
        raise ValueError("the tokenizer has no bos token")
    placeholder = tokenizer.pad_token_id if placeholder_id is None else placeholder_id
    ids, types, images = [tokenizer.bos_token_id], [LANGUAGE_TOKEN_TYPE], []
    if image is not None:
        if placeholder is None:
            raise ValueError("no placeholder id for the vision tokens (the tokenizer has no pad token)")
        images = [image_tensor(image, layout.image_size)]
        ids += [placeholder] * layout.tokens
        types += [VISION_TOKEN_TYPE] * layout.tokens
    text = tokenizer.encode(history_prompt(template, query, history), add_special_tokens=False)
    ids += text
    types += [LANGUAGE_TOKEN_TYPE] * len(text)
    return {"input_ids": torch.tensor(ids, dtype=torch.long),
            "token_type_ids": torch.tensor(types, dtype=torch.long),
            "attention_mask": torch.ones(len(ids), dtype=torch.long),
            "images": images}


def collate(samples: list[dict], pad_id: int) -> dict:
    """Left-pad samples into one batch (pad id, LANGUAGE type, attention 0); ``images`` one list per sample."""
    import torch

    width = max(len(s["input_ids"]) for s in samples)

    def left(key: str, value: int):
        return torch.stack([torch.cat([torch.full((width - len(s[key]),), value, dtype=torch.long), s[key]])
                            for s in samples])

    return {"input_ids": left("input_ids", pad_id), "token_type_ids": left("token_type_ids", LANGUAGE_TOKEN_TYPE),
            "attention_mask": left("attention_mask", 0), "images": [list(s["images"]) for s in samples]}


def position_ids(token_type_ids, attention_mask):
    """Positions as the remote ``build_position_ids`` counts them, from 0 at each row's first real token."""
    import torch
    import torch.nn.functional as F

    real = attention_mask.bool()
    vision = (token_type_ids == VISION_TOKEN_TYPE) & real
    inside = vision & F.pad(vision[:, :-1], (1, 0)) & F.pad(vision[:, 1:], (0, 1))  # not boi/eoi
    step = real & ~(inside & F.pad(inside[:, :-1], (1, 0)))  # only the first inner vision token steps
    return (torch.cumsum(step.long(), dim=1) - 1).clamp(min=0)


# -- decoding --------------------------------------------------------------------------------

def greedy_decode(model, batch: dict, max_new_tokens: int, stop_ids: set[int], pad_id: int):
    """(B, n) new token ids, argmax each step, through the model's own forward and tuple cache;
    a row is ``pad_id`` after its stop token; stops when every row has stopped."""
    import torch

    types, mask = batch["token_type_ids"], batch["attention_mask"]
    positions = position_ids(types, mask)
    stop = torch.tensor(sorted(stop_ids), dtype=torch.long, device=mask.device)
    done = torch.zeros(mask.shape[0], dtype=torch.bool, device=mask.device)
    step_inputs = {"input_ids": batch["input_ids"], "images": batch["images"], "token_type_ids": types,
                   "position_ids": positions, "past_key_values": None}
    last = positions[:, -1]
    new = []
    with torch.inference_mode():
        for _ in range(max_new_tokens):
            out = model(**step_inputs, attention_mask=mask, use_cache=True, output_attentions=False,
                        output_hidden_states=False, return_dict=True)
            token = torch.where(done, torch.full_like(last, pad_id), out.logits[:, -1].argmax(-1))
            new.append(token)
            done |= torch.isin(token, stop)
            if bool(done.all()):
                break
            last = last + 1
            mask = torch.cat([mask, mask.new_ones((mask.shape[0], 1))], dim=1)
            step_inputs = {"input_ids": token[:, None], "images": None,
                           "token_type_ids": torch.full_like(token[:, None], LANGUAGE_TOKEN_TYPE),
                           "position_ids": last[:, None], "past_key_values": out.past_key_values}
    return torch.stack(new, dim=1) if new else batch["input_ids"][:, :0]


def parse_answer(text: str) -> str:
    """The answer: cut at the first stop text, a leading "Answer:" echo removed, stripped."""
    for stop in STOP_TEXTS:
        text = text.split(stop, 1)[0]
    return _ANSWER_ECHO.sub("", text, count=1).strip()


def decode_answer(tokenizer, ids: list[int], stop_ids: set[int]) -> str:
    cut = next((i for i, t in enumerate(ids) if t in stop_ids), len(ids))
    return parse_answer(tokenizer.decode(ids[:cut], skip_special_tokens=True))


def stop_token_ids(config: dict, tokenizer) -> set[int]:
    eos = config.get("eos_token_id")
    ids = set(eos if isinstance(eos, list) else [eos]) | {tokenizer.eos_token_id}
    vocab = tokenizer.get_vocab()
    ids |= {vocab[t] for t in STOP_TEXTS if t in vocab}
    return {int(i) for i in ids if i is not None}


# -- backend ---------------------------------------------------------------------------------

class CogVLMBackend:
    def __init__(self, cfg: CaptionConfig) -> None:
        self.cfg = cfg
        self.pin = pin_model(cfg.model)
        self.model = self.tokenizer = self.device = self.dtype = self.layout = None
        self.config: dict = {}
        self.template, self.pad_id, self.stop_ids = "chat", 0, set()

    @property
    def model_ref(self) -> str:
        return self.pin.ref

    def setup(self, env: BackendEnv) -> None:
        env.pin_threads()
        from transformers import AutoModelForCausalLM, AutoTokenizer

        model = AutoModelForCausalLM.from_pretrained(self.pin.load_from, revision=self.pin.commit,
                                                     trust_remote_code=True, dtype=env.torch_dtype())
        self.model = model.eval().to(env.device)
        self.config = model.config.to_dict()
        self.layout = vision_layout(self.config)
        self.template = self.config.get("template_version") or "chat"
        folder = snapshot_folder(self.pin)
        if folder is not None and has_tokenizer(folder):
            self.tokenizer = AutoTokenizer.from_pretrained(self.pin.load_from, revision=self.pin.commit)
        else:
            base = BASE_TOKENIZERS.get(self.config.get("vocab_size"))
            if base is None:
                raise CaptionUnavailable(f"{self.pin.ref} has no tokenizer and no known base tokenizer")
            self.tokenizer = AutoTokenizer.from_pretrained(base)
        pad = self.config.get("pad_token_id")
        self.pad_id = int(pad if pad is not None else self.tokenizer.pad_token_id)
        self.stop_ids = stop_token_ids(self.config, self.tokenizer)
        self.device, self.dtype = env.device, env.torch_dtype()

    def caption(self, images: list[np.ndarray], prompts: list[str]) -> list[str | CaptionFailure]:
        if self.model is None:
            raise RuntimeError("CogVLMBackend.caption before setup")
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        if not images:
            return []
        samples = [conversation_inputs(self.tokenizer, prompt, self.layout, self.template, image=image,
                                       placeholder_id=self.pad_id) for image, prompt in zip(images, prompts)]
        batch = collate(samples, self.pad_id)
        batch = {"input_ids": batch["input_ids"].to(self.device),
                 "token_type_ids": batch["token_type_ids"].to(self.device),
                 "attention_mask": batch["attention_mask"].to(self.device),
                 "images": [[t.to(self.device, self.dtype) for t in row] for row in batch["images"]]}
        new = greedy_decode(self.model, batch, self.cfg.model.max_new_tokens, self.stop_ids, self.pad_id)
        return [decode_answer(self.tokenizer, row, self.stop_ids) for row in new.tolist()]
