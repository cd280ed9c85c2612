"""Character error rate, for judging OCR output against the text that was rendered.

``cer(refs, hyps)``: summed Levenshtein edits over summed reference length, both texts NFKC
normalised with runs of spaces and line breaks read as one space (``norm``).
"""
from __future__ import annotations

import unicodedata


def edit_distance(a: str, b: str) -> int:
    row = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, cb in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (ca != cb))
    return row[-1]


def norm(text: str) -> str:
    return " ".join(unicodedata.normalize("NFKC", text).split())  # line breaks and spaces alike


def cer(refs: list[str], hyps: list[str]) -> float:
    return sum(edit_distance(norm(r), norm(h)) for r, h in zip(refs, hyps)) / sum(len(norm(r)) for r in refs)
