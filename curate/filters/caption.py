"""Caption filters: measurements of a row's original caption (no image decode), nothing else.

Contract: a caption filter has ``columns`` (its ``stat_caption_*`` names, each in
``curate.schema.SCHEMA``) and ``measure(caption) -> dict`` with a value for each of them, for
one caption (``None`` when the row has none). It never decides (rules do) and never raises
for a caption. Models load once per process, on first use (``functools.cache``), so
building the filter is free. ``CaptionFilter`` fills:

- ``stat_caption_chars`` / ``stat_caption_words``: length in characters (as stored) and in
  whitespace-separated words; 0 for no caption.
- ``stat_caption_clip_tokens``: CLIP's BPE token count, start and end tokens included
  (``curate.filters.clip_bpe``): above 77 CLIP truncates the caption.
- ``stat_caption_lang`` / ``stat_caption_lang_prob``: ISO 639-1 code of the most probable of
  py3langid's languages and its probability (normalised, 0..1; short captions score low),
  read from the first ``LANGUAGE_CHARS`` characters; ``und`` with probability 0 when there
  is no language to find: a caption that is not ``text`` or ``boilerplate`` (below), or one
  none of whose character n-grams the model knows.
- ``stat_caption_kind``: what the caption is (``CAPTION_KINDS``), the first that applies:
  ``empty`` (none, or no letter or digit), ``url`` (nothing but URLs), ``filename`` (a
  file name or an ID: ``IMG_1234.jpg``, ``DSC01234``, a hex hash, only digits),
  ``boilerplate`` (a placeholder or auto alt-text: "image may contain …", "no description
  available", "untitled"), else ``text``.
"""
from __future__ import annotations

import functools
import re

from curate.filters.clip_bpe import clip_token_count

CAPTION_KINDS = ("text", "empty", "url", "filename", "boilerplate")
UNDETERMINED = "und"

LANGUAGE_CHARS = 2048  # language is read from the caption's start: bounded work on a hostile megabyte
_URL = re.compile(r"\b(?:[a-z][a-z0-9+.-]{0,15}://|www\.)\S+", re.IGNORECASE)  # bounded scheme: linear search
_ALNUM = re.compile(r"[^\W_]")
IMAGE_EXTENSIONS = "jpe?g|jfif|png|gif|webp|bmp|tiff?|heic|heif|avif|svg|raw|cr2|nef|dng"
_FILENAME = re.compile(
    rf"[\w\-.()\[\] ]*\.(?:{IMAGE_EXTENSIONS})"                            # anything.jpg
    r"|(?:img|dsc[nf]?|dcim|pxl|mvimg|gopr|sam|wp|p|image|photo|pic)[\s_-]*\d[\w\-.]*"       # camera names: IMG_1234
    r"|screen ?shot[\s_-]*\d[\d\s_\-.]*(?:at[\d\s_\-.]+)?"               # Screenshot 2024-01-01 at 10.00.00
    r"|[0-9a-f]{8,}(?:-[0-9a-f]{4,})*"                                     # a hex hash or a UUID
    r"|[\d\s_\-.]+",                                                       # only digits
    re.IGNORECASE,
)
# Normalised captions (lower case, whitespace collapsed, trailing punctuation dropped) that carry no description.
BOILERPLATE_PREFIXES = (
    "image may contain", "may be an image of", "may be a photo of", "no photo description available",
    "no description available", "photo description not available", "no alt text", "no image description",
)
BOILERPLATE_CAPTIONS = frozenset({
    "image", "photo", "picture", "img", "untitled", "untitled image", "no title", "thumbnail", "placeholder",
    "image not found", "image not available", "no image", "no image available", "click to enlarge",
    "click here to enlarge", "view larger image", "featured image", "image description", "alt", "alt text",
    "null", "none", "undefined", "n/a", "default", "stock photo",
})


def caption_kind(caption: str | None) -> str:
    """The first of ``CAPTION_KINDS`` after ``text`` that applies to ``caption``, else ``text``."""
    text = (caption or "").strip()
    if not _ALNUM.search(text):
        return "empty"
    if _URL.search(text) and not _ALNUM.search(_URL.sub(" ", text)):
        return "url"
    if _FILENAME.fullmatch(text):
        return "filename"
    norm = " ".join(text.lower().split()).rstrip(" .,:;!?-")
    if norm in BOILERPLATE_CAPTIONS or norm.startswith(BOILERPLATE_PREFIXES):
        return "boilerplate"
    return "text"


@functools.cache
def _identifier():
    """py3langid's model (normalised probabilities) and the top probability of a uniform answer."""
    from py3langid.langid import MODEL_FILE, LanguageIdentifier

    identifier = LanguageIdentifier.from_model_file(MODEL_FILE, norm_probs=True)
    columns = identifier.nb_classes  # a label may own several columns (script variants), summed by classify
    return identifier, max(columns.count(c) for c in set(columns)) / len(columns)


def language(caption: str) -> tuple[str, float]:
    """(ISO 639-1 code, probability) of ``caption``, ``(und, 0.0)`` when the model has nothing to go on."""
    identifier, uniform = _identifier()
    lang, prob = identifier.classify(caption[:LANGUAGE_CHARS])
    if prob <= uniform * 1.0001:  # no n-gram the model knows: every language equally likely
        return UNDETERMINED, 0.0
    return lang, float(prob)


class CaptionFilter:
    columns = (
        "stat_caption_chars", "stat_caption_words", "stat_caption_clip_tokens",
        "stat_caption_lang", "stat_caption_lang_prob", "stat_caption_kind",
    )

    def measure(self, caption: str | None) -> dict[str, int | float | str]:
        text = caption or ""
        kind = caption_kind(text)
        lang, prob = language(text) if kind in ("text", "boilerplate") else (UNDETERMINED, 0.0)
        return {
            "stat_caption_chars": len(text),
            "stat_caption_words": len(text.split()),
            "stat_caption_clip_tokens": clip_token_count(text),
            "stat_caption_lang": lang,
            "stat_caption_lang_prob": prob,
            "stat_caption_kind": kind,
        }
