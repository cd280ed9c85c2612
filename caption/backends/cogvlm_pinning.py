"""Pinning and the driver-side check of the ``cogvlm`` backend: files and packages, no model load.

Contract:
- ``pin_model(model) -> Pin``: ``trust_remote_code`` runs the model repository's Python, so
  the code must be a fixed commit. A hub id needs ``model.revision`` = a full 40-hex commit
  (a branch, a tag or a short hash is refused). A local folder is pinned by being a hub-cache
  snapshot (``.../models--ORG--NAME/snapshots/<40-hex>/``: the folder name is the commit; a
  different ``model.revision`` is refused) or, for any other folder, by ``model.revision``;
  neither is refused as an unpinned snapshot. ``Pin.ref`` is ``id@commit`` (a snapshot's id
  is its hub id, ``ORG/NAME``). Refusals raise ``CaptionUnavailable`` with one line.
- ``check(cfg) -> str | None``: the packages, the pin; then the local files: a folder (or the
  cached snapshot of a hub id, ``snapshot_folder``) needs ``config.json``, every file its
  ``auto_map`` names (``modeling_cogvlm.py`` when it names none) and the files those import
  relatively (``code_files``), weights, the packages that code imports, and a tokenizer (its
  own, or the base tokenizer below in the cache or reachable; sentencepiece when that has no
  tokenizer.json). An ``auto_map`` entry that loads code from another repository
  (``repo--module.Class``) is refused. A hub id that is not cached is accepted when the hub
  is reachable (setup downloads that commit), else the line says to ``hf download`` it at
  that commit into a folder and set ``model.id`` to it.
- ``BASE_TOKENIZERS``: the tokenizer of a snapshot that ships none, by vocabulary size.
  CogVLM-1.1 (THUDM/cogvlm-chat-hf, vocab 32000) ships none and its model card loads
  ``lmsys/vicuna-7b-v1.5``'s (the hub's current one: it is data, not code); CogVLM2 ships
  LLaMA-3's. ``has_tokenizer(folder)`` says whether a snapshot ships one.

Sources: ``transformers.dynamic_module_utils`` (``get_imports``; ``repo--module.Class``
auto_map entries load another repository's code); ``huggingface_hub.try_to_load_from_cache``
and its cache layout; THUDM/cogvlm-chat-hf's README and config.json on huggingface.co (whose
main branch moved after the v1.1 release, hence pinning for reproducibility as well).
"""
from __future__ import annotations

import json
import os
import re
import socket
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

from caption.backends.base import CaptionUnavailable, missing_packages, need
from caption.config import CaptionConfig, ModelSpec

BASE_TOKENIZERS = {32000: "lmsys/vicuna-7b-v1.5"}  # vocab_size -> tokenizer of a snapshot without one
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "tokenizer_config.json")
WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin")
COMMIT = re.compile(r"[0-9a-f]{40}")
HUB_ID = re.compile(r"[\w.-]+(/[\w.-]+)?")
PACKAGES = ("torch", "torchvision", "transformers", "PIL")


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
