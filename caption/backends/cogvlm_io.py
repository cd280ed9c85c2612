"""Model inputs and outputs of the ``cogvlm`` backend, as the snapshots' remote code lays them out.

Contract (pure functions; torch and PIL imported when called):
- ``vision_layout(config) -> VisionLayout``: image side, patch side and 2x2 merge from
  ``config.json``; ``.tokens`` is the number of vision placeholders. ``CaptionUnavailable``
  when the config has no ``vision_config.image_size/patch_size``.
- ``history_prompt(template, query, history)``: the conversation text of ``template_version``.
- ``image_tensor(image, side)``: (3, S, S) float32, the remote image transform.
- ``conversation_inputs(...)``: one sample (1-D ``input_ids``, ``token_type_ids``,
  ``attention_mask``, ``images``); ``collate(samples, pad_id)``: left-padded into one batch;
  ``position_ids(token_type_ids, attention_mask)``: CogVLM positions.
- ``greedy_decode(model, batch, max_new_tokens, stop_ids, pad_id)``: (B, n) new ids;
  ``stop_token_ids(config, tokenizer)``; ``decode_answer``/``parse_answer``: the new tokens
  cut at the first stop token or text, a leading "Answer:" echo removed, stripped.

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

import re
from dataclasses import dataclass

import numpy as np

from caption.backends.base import CaptionUnavailable

LANGUAGE_TOKEN_TYPE = 0
VISION_TOKEN_TYPE = 1
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)
TEMPLATES = {"chat": "Answer:", "vqa": "Short answer:"}  # "base": the query alone
STOP_TEXTS = ("</s>", "<|end_of_text|>", "<|eot_id|>")
LLAMA3_VOCAB = 128000  # CogVLM2 and later: LLaMA-3 vocabulary, 2x2-merged vision tokens
_ANSWER_ECHO = re.compile(r"^\s*(short\s+)?answer\s*:\s*", re.IGNORECASE)


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
