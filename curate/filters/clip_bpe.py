"""CLIP's byte-pair tokenizer, for counting: how many tokens CLIP's text encoder sees in a caption.

Contract: ``clip_token_count(text)`` is ``len(tokenize(text))`` of OpenAI CLIP's / open_clip's
``SimpleTokenizer`` before truncation, including the start and end tokens: CLIP's text
encoders read 77 tokens, so a caption whose count is above ``CLIP_CONTEXT`` (77) is cut.
Same cleaning as open_clip's default (``clean="lower"``: ftfy, HTML unescaped twice,
whitespace collapsed, lower case), same pre-tokenizing pattern, same merges. The merges are
``bpe_simple_vocab_16e6.txt.gz`` beside this file, shipped in open_clip's wheel (MIT
licence, Copyright (c) 2021 OpenAI and 2012-2021 the open_clip authors); the code follows
open_clip's ``tokenizer.py`` (MIT), less torch: only counts are kept, never token ids.
Bounded work on hostile text: only the first ``MAX_CHARS`` characters are counted, and a
pre-token (a run of letters or symbols) longer than ``MAX_WORD`` byte characters counts as
its ``MAX_WORD``-long pieces; every other caption's count is exact (no real word is that long,
and a caption that long is far past 77 tokens).
"""
from __future__ import annotations

import functools
import gzip
import html
from pathlib import Path

import ftfy
import regex

CLIP_CONTEXT = 77
MAX_CHARS = 2048
MAX_WORD = 100
VOCAB_FILE = Path(__file__).with_name("bpe_simple_vocab_16e6.txt.gz")
N_MERGES = 49152 - 256 - 2  # CLIP's vocabulary: 256 bytes x 2 (word-final), these merges, 2 special tokens
_SPECIAL = ("<start_of_text>", "<end_of_text>")
_PATTERN = regex.compile(
    "|".join(_SPECIAL) + r"""|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+""", regex.IGNORECASE
)


@functools.cache
def _byte_chars() -> dict[int, str]:
    """CLIP's reversible byte -> printable character map (bytes that are printable map to themselves)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars = {b: chr(b) for b in printable}
    extra = 0
    for b in range(256):
        if b not in chars:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


@functools.cache
def _ranks() -> dict[tuple[str, str], int]:
    lines = gzip.decompress(VOCAB_FILE.read_bytes()).decode("utf-8").split("\n")[1 : N_MERGES + 1]
    return {tuple(line.split()): i for i, line in enumerate(lines)}


def clean(text: str) -> str:
    """open_clip's ``lower`` cleaning: ftfy, HTML unescape (twice), collapsed whitespace, lower case."""
    text = html.unescape(html.unescape(ftfy.fix_text(text))).strip()
    return " ".join(text.split()).lower()


@functools.lru_cache(maxsize=1 << 16)
def _pieces(token: str) -> int:
    """Number of BPE pieces of one pre-token (already mapped to byte characters)."""
    if token in _SPECIAL:
        return 1
    ranks = _ranks()
    word = (*token[:-1], token[-1] + "</w>")
    while len(word) > 1:
        pairs = set(zip(word, word[1:]))
        best = min(pairs, key=lambda pair: ranks.get(pair, float("inf")))
        if best not in ranks:
            break
        merged, i = [], 0
        while i < len(word):
            if i < len(word) - 1 and (word[i], word[i + 1]) == best:
                merged.append(word[i] + word[i + 1])
                i += 2
            else:
                merged.append(word[i])
                i += 1
        word = tuple(merged)
    return len(word)


def clip_token_count(text: str) -> int:
    """Tokens CLIP's tokenizer gives ``text`` before truncation, start and end tokens included."""
    chars = _byte_chars()
    count = 2
    for token in _PATTERN.findall(clean(text[:MAX_CHARS])):
        mapped = "".join(chars[b] for b in token.encode("utf-8"))
        count += sum(_pieces(mapped[i : i + MAX_WORD]) for i in range(0, len(mapped), MAX_WORD))
    return count
