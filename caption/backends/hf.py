"""The ``hf`` backend: any transformers image-text-to-text model, batched greedy generation.

Contract (the ``Backend`` protocol of ``caption.backends.base``):
- ``check(cfg) -> str | None`` (driver, no model load): None when torch and transformers
  import and the model is there offline, else one line saying what to install or download.
  ``model.id`` is a local folder when it exists as a directory or starts with ``/``, ``.``
  or ``~``: it needs ``config.json``, weights (``*.safetensors`` / ``pytorch_model*.bin``),
  a processor config and tokenizer files. Anything else is a hub id, which must be in the
  local Hugging Face cache at ``model.revision`` (``snapshot_download(local_files_only=True)``);
  the line says to ``hf download`` it into a folder and set ``model.id`` to it. A model
  without a chat template needs ``model.chat_template`` (a Jinja file, which must exist).
- ``HFBackend(cfg).model_ref``: ``id@revision``; a hub id without a revision takes the
  commit of its cached snapshot when there is one; a folder is its path (``@revision`` added
  only when one is given).
- ``setup(env)``: ``AutoProcessor`` + ``AutoModelForImageTextToText.from_pretrained`` (the
  revision passed through for a hub id, ``local_files_only`` for a folder), in ``env.dtype``,
  ``eval()``, on ``env.device``, torch pinned to ``env.threads``. ``model.chat_template``, when
  set, is the processor's chat template (replacing the model's own, if it has one); else the
  processor's, else the tokenizer's (older snapshots keep it in ``tokenizer_config.json``).
- ``caption(images, prompts)``: one user message per image (the image, then the prompt),
  rendered by the processor's chat template with the generation prompt; the batch is padded
  on the left (so every row's new tokens start at the same column), ``token_type_ids``
  dropped, ``generate(max_new_tokens=model.max_new_tokens, do_sample=False)``; returns the
  new tokens of each row decoded without special tokens, stripped. Greedy, so a batch
  gives what the images give one by one (up to the numerics of padded attention in
  low precision). Any error raises for the whole batch; CUDA out-of-memory propagates as is.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from caption.backends.base import BackendEnv, CaptionFailure, CaptionUnavailable, need
from caption.config import CaptionConfig

WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin")
PROCESSOR_FILES = ("processor_config.json", "preprocessor_config.json")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model", "vocab.json")
TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
TEMPLATE_HOLDERS = ("processor_config.json", "tokenizer_config.json", "preprocessor_config.json")


def is_local(model_id: str) -> bool:
    return model_id.startswith(("/", ".", "~")) or Path(model_id).expanduser().is_dir()


def cached_snapshot(model_id: str, revision: str | None) -> Path | None:
    """The folder of ``model_id`` at ``revision`` in the local Hugging Face cache, or None."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(model_id, revision=revision, local_files_only=True))
    except Exception:  # not cached, a malformed id, no huggingface_hub: all mean "not here"
        return None


def folder_problem(folder: Path) -> str | None:
    """What a model folder lacks for this backend, or None."""
    if not folder.is_dir():
        return "no such folder"
    if not (folder / "config.json").is_file():
        return "no config.json in it"
    if not any(next(folder.glob(g), None) for g in WEIGHT_GLOBS):
        return "no weights (*.safetensors or pytorch_model*.bin) in it"
    if not any((folder / f).is_file() for f in PROCESSOR_FILES):
        return f"no processor config ({' or '.join(PROCESSOR_FILES)}) in it"
    if not any((folder / f).is_file() for f in TOKENIZER_FILES):
        return "no tokenizer files in it"
    return None


def has_chat_template(folder: Path) -> bool:
    if any((folder / f).is_file() for f in TEMPLATE_FILES):
        return True
    return any((folder / f).is_file() and '"chat_template"' in (folder / f).read_text(errors="replace")
               for f in TEMPLATE_HOLDERS)


def download_advice(spec) -> str:
    revision = f" --revision {spec.revision}" if spec.revision else ""
    name = spec.id.rstrip("/").rsplit("/", 1)[-1]
    return (f"download it with `hf download {spec.id}{revision} --local-dir models/{name}` "
            f"(huggingface-cli download before huggingface_hub 1.0) and set model.id to that folder")


def check(cfg: CaptionConfig) -> str | None:
    return need(("torch", "transformers"), "backend hf") or model_problem(cfg)


def model_problem(cfg: CaptionConfig) -> str | None:
    """What keeps ``model`` from loading offline (folder, cache, chat template), or None (also ``vllm``'s check)."""
    spec = cfg.model
    if spec.chat_template and not Path(spec.chat_template).expanduser().is_file():
        return f"model.chat_template {spec.chat_template}: no such file"
    if is_local(spec.id):
        folder = Path(spec.id).expanduser()
        problem = folder_problem(folder)
        if problem:
            return (f"model.id {spec.id}: {problem}: point model.id at a snapshot folder "
                    "(config.json, weights, processor and tokenizer files)")
    else:
        folder = cached_snapshot(spec.id, spec.revision)
        at = f" at revision {spec.revision}" if spec.revision else ""
        if folder is None:
            return f"model.id {spec.id}{at}: no local snapshot and no hub reachable: {download_advice(spec)}"
        problem = folder_problem(folder)
        if problem:
            return f"model.id {spec.id}{at}: the cached snapshot {folder} is incomplete ({problem}): {download_advice(spec)}"
    if not spec.chat_template and not has_chat_template(folder):
        return f"model.id {spec.id}: its processor has no chat template: set model.chat_template to a Jinja template file"
    return None


def to_pil(image: np.ndarray):
    from PIL import Image

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"hf backend wants uint8 RGB arrays (h, w, 3), got {image.dtype} {image.shape}")
    return Image.fromarray(np.ascontiguousarray(image), "RGB")


class HFBackend:
    def __init__(self, cfg: CaptionConfig):
        self.cfg = cfg
        self.spec = cfg.model
        self.processor = None
        self.model = None
        self.device = "cpu"
        self.dtype = None

    @property
    def model_ref(self) -> str:
        spec = self.spec
        if is_local(spec.id):
            return f"{spec.id}@{spec.revision}" if spec.revision else spec.id
        revision = spec.revision
        if revision is None:
            snapshot = cached_snapshot(spec.id, None)
            revision = snapshot.name if snapshot is not None else None
        return f"{spec.id}@{revision}" if revision else spec.id

    def setup(self, env: BackendEnv) -> None:
        from transformers import AutoModelForImageTextToText, AutoProcessor

        env.pin_threads()
        spec = self.spec
        local = is_local(spec.id)
        source = str(Path(spec.id).expanduser()) if local else spec.id
        where = {"local_files_only": True} if local else {"revision": spec.revision}
        processor = AutoProcessor.from_pretrained(source, **where)
        if spec.chat_template:
            processor.chat_template = Path(spec.chat_template).expanduser().read_text()
        elif not getattr(processor, "chat_template", None):  # older snapshots keep it in tokenizer_config.json
            processor.chat_template = getattr(processor.tokenizer, "chat_template", None)
        if not processor.chat_template:
            raise CaptionUnavailable(f"model.id {spec.id}: its processor has no chat template: "
                                     "set model.chat_template to a Jinja template file")
        tokenizer = processor.tokenizer
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        self.dtype = env.torch_dtype()
        model = AutoModelForImageTextToText.from_pretrained(source, dtype=self.dtype, **where)
        model.eval().to(env.device)
        if model.generation_config.pad_token_id is None:
            model.generation_config.pad_token_id = tokenizer.pad_token_id
        self.processor, self.model, self.device = processor, model, env.device

    def messages(self, prompt: str) -> list[dict]:
        return [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]

    def caption(self, images: list[np.ndarray], prompts: list[str]) -> list[str | CaptionFailure]:
        import torch

        if self.model is None:
            raise RuntimeError("HFBackend.caption before setup()")
        if len(images) != len(prompts):
            raise ValueError(f"{len(images)} images but {len(prompts)} prompts")
        if not images:
            return []
        texts = [self.processor.apply_chat_template(self.messages(p), add_generation_prompt=True) for p in prompts]
        inputs = self.processor(text=texts, images=[to_pil(im) for im in images], padding=True, return_tensors="pt")
        inputs.pop("token_type_ids", None)
        inputs = inputs.to(self.device).to(self.dtype)  # .to(dtype) casts only the floating tensors (pixels)
        with torch.inference_mode():
            out = self.model.generate(**inputs, max_new_tokens=self.spec.max_new_tokens, do_sample=False)
        new = out[:, inputs["input_ids"].shape[1]:]
        return [t.strip() for t in self.processor.tokenizer.batch_decode(new, skip_special_tokens=True)]
