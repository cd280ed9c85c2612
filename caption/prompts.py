"""Versioned caption prompts: what the VLM is asked, and the hints it may be given.

Contract: ``PROMPTS`` maps a prompt id to a ``Prompt`` (``id``, ``version``, ``lang``: the
language the caption should be in, ``text``). ``Prompt.ref`` (``detailed-en@v1``) is what a
row stores in ``caption_synthetic_prompt``: a prompt's wording never changes under one
version; a new wording is a new version (and so a new caption group version).
``Prompt.render(caption=None, ocr=None)`` is the instruction for one image: the template,
plus the original caption and the OCR text as hints when given (each cut to a bounded
length, whitespace collapsed), never both missing information and hints invented.

The wording follows the recaptioning prompts of DALL-E 3 and CogView3 (a dense description:
subject, attributes, setting, composition, lighting, style, any legible text verbatim) and a
brief one-sentence form; Chinese prompts ask for Chinese output, as Kolors trains bilingual.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

HINT_CHARS = 300


@dataclass(frozen=True)
class Prompt:
    id: str
    version: str
    lang: str
    text: str
    caption_hint: str  # "{caption}" is replaced
    ocr_hint: str  # "{ocr}" is replaced

    @property
    def ref(self) -> str:
        return f"{self.id}@{self.version}"

    def render(self, caption: str | None = None, ocr: str | None = None) -> str:
        parts = [self.text]
        caption, ocr = _hint(caption), _hint(ocr)
        if caption:
            parts.append(self.caption_hint.replace("{caption}", caption))
        if ocr:
            parts.append(self.ocr_hint.replace("{ocr}", ocr))
        return " ".join(parts)


def _hint(text: str | None) -> str:
    if not text:
        return ""
    text = re.sub(r"\s+", " ", text).strip()
    return text if len(text) <= HINT_CHARS else text[:HINT_CHARS].rsplit(" ", 1)[0] + "…"


_EN_CAPTION = 'The image was published with the caption "{caption}"; use it only where the image agrees.'
_EN_OCR = 'Text detected in the image: "{ocr}"; quote it where it is legible.'
_ZH_CAPTION = "这张图片原有的说明是“{caption}”，只在与图片一致时参考。"
_ZH_OCR = "图片中识别出的文字：“{ocr}”，清晰可辨时请原样引用。"

PROMPTS: dict[str, Prompt] = {p.id: p for p in [
    Prompt("detailed-en", "v1", "en",
           "Describe this image in detail for an image generation dataset: the main subject and its attributes, "
           "the setting and background, the composition and viewpoint, lighting and colours, the artistic style or "
           "medium, and any legible text. Write plain sentences, no lists, no preamble.",
           _EN_CAPTION, _EN_OCR),
    Prompt("brief-en", "v1", "en",
           "Describe this image in one sentence: the main subject, the setting and the style.",
           _EN_CAPTION, _EN_OCR),
    Prompt("detailed-zh", "v1", "zh",
           "请用中文详细描述这张图片，用于图像生成数据集：主体及其特征、场景与背景、构图与视角、光线与色彩、艺术风格或媒介，以及图中清晰可辨的文字。"
           "用完整的句子，不要列表，不要开场白。",
           _ZH_CAPTION, _ZH_OCR),
    Prompt("brief-zh", "v1", "zh",
           "请用一句中文描述这张图片：主体、场景和风格。",
           _ZH_CAPTION, _ZH_OCR),
]}
