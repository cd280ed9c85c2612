"""Raw VLM text to a training caption: cleaned, then cut to the text encoder's token budget.

Contract:
- ``clean(raw) -> str``, in this order: markdown to plain sentences (headings that are only a
  label such as "Description:" dropped, other headings, bullets and numbered items each a
  sentence, ``**bold**``/``*italic*``/```code```/links unwrapped); boilerplate openings stripped
  at the start of the text and of each line, English ("The image shows", "In this image,",
  "Sure! Here is a description:" …) and Chinese ("这张图片展示了", "图中", "在这张图片中，" …),
  the next word capitalised (unless it has capitals of its own: "iPhone"); repetition loops
  removed, keeping the first occurrence (a run of 3+ copies of 1-3 words or CJK characters, 2+
  copies of 4 or more, and any sentence said before); a trailing unfinished fragment dropped
  when a complete sentence precedes it (the model was cut off); whitespace collapsed (none
  around CJK punctuation or before ``, . ; : ! ?``). Empty or blank input gives "".
- ``fit(text, encoder, limit) -> (text, tokens)``: the longest prefix whose ``tokens.count`` is
  within ``tokens.budget_text_tokens(encoder, limit)`` (``limit`` is the encoder's whole
  sequence: 77 for CLIP leaves 75 text tokens), cut at a sentence end (``. ! ?`` and ``。！？``)
  when that keeps at least ``SENTENCE_CUT_MIN_SHARE`` of the budget, else at a word boundary
  (between any two characters next to CJK), else at a character; ``tokens`` is the count of
  the text returned, never above the budget.
- ``finish(raw, encoder, limit)`` is ``fit(clean(raw), encoder, limit)``.
Only the first ``MAX_RAW_CHARS`` characters of ``raw`` are read (bounded work on a runaway output).
"""
from __future__ import annotations

import unicodedata

import regex

from caption import tokens

VERSION = "2"  # bump when a rule changes what a caption becomes (it is part of the caption group version)
MAX_RAW_CHARS = 16_000
SENTENCE_CUT_MIN_SHARE = 0.5  # a sentence cut that keeps less of the budget than this loses to a word cut
SHORT_UNIT, SHORT_REPEATS, LONG_REPEATS = 3, 3, 2  # a loop: 3+ copies of <= 3 tokens, 2+ copies of more
MAX_UNIT = 40

_CJK = r"\p{Han}\p{Hiragana}\p{Katakana}\p{Hangul}"
_CJK_PUNCT = "，。！？；：、（）《》「」『』【】"  # no curly quotes or "…": English uses them too
_HAN_KANA = r"\p{Han}\p{Hiragana}\p{Katakana}"
_TERMINAL = regex.compile(rf"(?:[.!?]+|[。！？]+)[\"'”’」』)\]）]*(?=\s|$|[{_CJK}])|[。！？]+[”’」』）]*")
_ENDS_SENTENCE = regex.compile(r"(?:[.!?]|[。！？])[\"'”’」』)\]）]*\s*$")

# Markdown.
_FENCE = regex.compile(r"^\s*```.*$", regex.M)
_HEADING = regex.compile(r"^\s{0,3}#{1,6}\s*(.*?)\s*#*\s*$")
_BULLET = regex.compile(r"^\s*(?:[-*+•·]|\d{1,2}[.)、])\s+")
_RULE = regex.compile(r"^\s*(?:[-*_]\s*){3,}$")
_BOLD_LABEL = regex.compile(r"^\s*(?:\*\*[^*\n]{1,40}\*\*\s*[:：]|\*\*[^*\n]{1,40}[:：]\*\*)")
_LABEL = regex.compile(r"^([^:：]{1,40}[:：])\s*(.+)$")
_LINK = regex.compile(r"!?\[([^\]]*)\]\([^)]*\)")
_EMPHASIS = (
    regex.compile(r"\*\*(.+?)\*\*"), regex.compile(r"__(.+?)__"),
    regex.compile(r"(?<![\w*])\*(?!\s)(.+?)(?<!\s)\*(?![\w*])"), regex.compile(r"(?<!\w)_(?!\s)(.+?)(?<!\s)_(?!\w)"),
    regex.compile(r"`([^`]*)`"),
)
_LABEL_HEADING = regex.compile(
    r"(?:image |detailed |short |brief )?(?:description|caption|overview|summary|details|analysis|key (?:elements|features|details)"
    r"|scene|setting|图片描述|图像描述|描述|概述|总结|详细描述)\s*[:：]?", regex.I,
)

# Boilerplate openings, tried again until none matches (so "Sure! Here is a description: The image shows" goes whole).
_MEDIUM = r"(?:image|picture|photo|photograph|illustration|artwork|drawing|painting|scene|screenshot|graphic|render(?:ing)?)"
_VERB = (r"(?:shows|depicts|features|displays|presents|portrays|captures|showcases|illustrates|contains|highlights"
         r"|is (?:a |an )?(?:picture |photo |image )?of)")
_OPENINGS = [regex.compile(p, regex.I) for p in (
    r"(?:sure|certainly|of course|okay|ok|absolutely)\s*[!.,]\s*",
    r"here(?:'s| is| are)\s+(?:a|an|the)?\s*(?:\w+\s+){0,3}(?:description|caption)s?(?:\s+of\s+(?:the|this)\s+\w+)?\s*[:.]\s*",
    r"(?:image\s+)?(?:description|caption)\s*:\s*",
    rf"(?:the|this)\s+{_MEDIUM}\s+{_VERB}(?:\s+|[\s.:…]*$)",
    rf"(?:the|this)\s+{_MEDIUM}\s+is\s+(?=an?\s)",
    rf"(?:in|within)\s+(?:the|this)\s+{_MEDIUM}\s*,?\s*(?:(?:we|you|i)\s+can\s+see|there\s+(?:is|are)|(?:is|are)\s+shown)?\s*,?\s*",
    r"this\s+is\s+(?:an?\s+)?(?:image|picture|photo|photograph)\s+(?:of|showing|depicting)\s+",
    r"(?:好的|当然|没问题)[，,！!。.]?\s*",
    r"(?:以下|下面)是(?:对)?(?:这张|该|这幅)?(?:图片|图像|照片|画面)?的?(?:详细|简要)?(?:描述|说明|介绍)[：:。]\s*",
    r"(?:在)?(?:这张|这幅|该|此)?(?:图片|图像|照片|画面|图)(?:里|中|上)(?![央间心部])[，,]?\s*(?:可以看到|我们可以看到|能看到|展示了|显示了|呈现了|描绘了|有|是)?[，,]?\s*",
    r"(?:这张|这幅|该|此)(?:图片|图像|照片|画面|图画|图)(?:展示|显示|描绘|呈现|描述|表现)了?[，,]?\s*",
    r"(?:图片|图像|照片|画面)(?:展示|显示|描绘|呈现)了?[，,]?\s*",
    r"这是(?=一[张幅])",
)]
_LEADING_JUNK = regex.compile(r"^[\s,，:：;；、.。-]+")

_TOKEN = regex.compile(rf"[{_CJK}]|[^\W_{_CJK}]+(?:['’][^\W_{_CJK}]+)*")
_SPACE_BEFORE_PUNCT = regex.compile(r"\s+([,.;:!?%)\]])")
_SPACE_AROUND_CJK_PUNCT = regex.compile(rf"\s*([{_CJK_PUNCT}])\s*")
_SPACE_BETWEEN_CJK = regex.compile(rf"(?<=[{_HAN_KANA}])\s+(?=[{_HAN_KANA}])")  # Hangul keeps its spaces


def finish(raw: str, encoder: str, limit: int) -> tuple[str, int]:
    """``fit(clean(raw), encoder, limit)``."""
    return fit(clean(raw), encoder, limit)


_INVISIBLE = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff"}
# A model that declines to describe the image: no caption (the row trains on its original one).
_REFUSAL = regex.compile(
    r"^\s*(?:(?:i'?m|i am)?\s*(?:sorry|apologi[sz]e)[^.!?]{0,40}?\b(?:can(?:'|no)?t|unable|not able)\b"
    r"|i\s+can(?:'|no)?t\s+(?:help|assist|describe|provide|caption)|i\s*(?:am|'m)\s+(?:unable|not able)\s+to"
    r"|as an ai\b|(?:抱歉|对不起)[^。！？]{0,10}?(?:无法|不能)|我(?:无法|不能)(?:描述|提供|帮助))", regex.I)
REFUSAL_MAX_CHARS = 240


def _visible(text: str) -> str:
    """Control characters (but tab and newline) and zero-width characters out."""
    return "".join(ch for ch in text if (ch in "\t\n\r" or unicodedata.category(ch) != "Cc") and ch not in _INVISIBLE)


def clean(raw: str) -> str:
    """Plain caption text: markdown flattened, boilerplate and loops out, a cut-off fragment dropped."""
    if not raw or not raw.strip():
        return ""
    raw = _visible(raw[:MAX_RAW_CHARS])
    if _REFUSAL.match(raw) and len(raw.strip()) <= REFUSAL_MAX_CHARS:
        return ""
    lines = [_strip_openings(line) for line in _plain_lines(raw)]
    text = _normalise_space(" ".join(line for line in lines if line))
    text = _strip_openings(text)
    text = _drop_repeated_sentences(_collapse_loops(text))
    return _normalise_space(_drop_fragment(text))


def fit(text: str, encoder: str, limit: int) -> tuple[str, int]:
    """The longest prefix of ``text`` within the budget, cut at a sentence end when possible, and its count."""
    budget = tokens.budget_text_tokens(encoder, limit)
    text = text.strip()
    n = tokens.count(text, encoder)
    if n <= budget:
        return text, n
    sentence_ends = [m.end() for m in _TERMINAL.finditer(text)]
    best = _longest_within(text, sentence_ends, encoder, budget)
    if best is None or best[1] < SENTENCE_CUT_MIN_SHARE * budget:
        words = _longest_within(text, _word_cuts(text), encoder, budget, trim=True)
        if words is not None and (best is None or words[1] > best[1]):
            best = words
    if best is None:
        best = _longest_within(text, list(range(1, len(text))), encoder, budget)
    return best or ("", 0)


def _longest_within(text: str, cuts: list[int], encoder: str, budget: int, trim: bool = False) -> tuple[str, int] | None:
    """The longest ``text[:cut]`` (cuts ascending; ``trim``: less dangling commas) within ``budget``: binary search, checked."""
    lo, hi, found = 0, len(cuts) - 1, None
    while lo <= hi:
        mid = (lo + hi) // 2
        n = tokens.count(text[: cuts[mid]], encoder)
        if n <= budget:
            found, lo = mid, mid + 1
        else:
            hi = mid - 1
    while found is not None and found >= 0:  # counts are monotone in practice; never trust it blindly
        prefix = text[: cuts[found]].strip()
        if trim:
            prefix = prefix.rstrip(" ,;:、，；：-—(（")
        n = tokens.count(prefix, encoder)
        if prefix and n <= budget:
            return prefix, n
        found -= 1
    return None


def _word_cuts(text: str) -> list[int]:
    """Positions where a word ends: before whitespace, and beside every CJK character."""
    cuts = {m.start() for m in regex.finditer(r"\s+", text)}
    cuts |= {m.end() for m in regex.finditer(rf"[{_CJK}{_CJK_PUNCT}]", text)}
    return sorted(c for c in cuts if 0 < c < len(text))


def _plain_lines(raw: str) -> list[str]:
    """Markdown to plain lines: each heading, bullet or paragraph line one sentence."""
    raw = _FENCE.sub("", raw.replace("\r\n", "\n").replace("\r", "\n"))
    out = []
    for line in raw.split("\n"):
        if _RULE.match(line):
            continue
        heading = _HEADING.match(line)
        is_item = heading is not None or _BULLET.match(line) is not None or _BOLD_LABEL.match(line) is not None
        line = heading.group(1) if heading else _BULLET.sub("", line)
        line = _LINK.sub(r"\1", line)
        for pattern in _EMPHASIS:
            line = pattern.sub(r"\1", line)
        line = line.strip()
        if not line or (is_item or line.endswith((":", "："))) and _LABEL_HEADING.fullmatch(line):
            continue
        labelled = _LABEL.match(line) if is_item else None
        if labelled:  # "Setting: The image shows a kitchen" -> "Setting: A kitchen"
            line = f"{labelled.group(1)} {_strip_openings(labelled.group(2))}"
        if is_item and not _ENDS_SENTENCE.search(line):
            line = line.rstrip(":：,，;；") + ("。" if regex.search(rf"[{_CJK}]$", line) else ".")
        out.append(line)
    return out


def _strip_openings(text: str) -> str:
    """``text`` without its boilerplate openings, the next word capitalised."""
    stripped = text.strip()
    while True:
        for pattern in _OPENINGS:
            m = pattern.match(stripped)
            if m and m.end() > 0:
                stripped = _LEADING_JUNK.sub("", stripped[m.end():])
                break
        else:
            break
    if stripped == text.strip():
        return stripped
    return _capitalise(stripped)


def _capitalise(text: str) -> str:
    m = regex.match(r"[^\p{L}]*(\p{L}+)", text)
    if not m or not m.group(1)[0].islower() or any(c.isupper() for c in m.group(1)):
        return text
    i = m.start(1)
    return text[:i] + text[i].upper() + text[i + 1:]


def _collapse_loops(text: str) -> str:
    """Consecutive copies of a run of words (or CJK characters) cut to the first copy."""
    found = list(_TOKEN.finditer(text))
    words = [m.group().lower() for m in found]
    cuts, i = [], 0  # cuts: (start, end) character spans to delete
    while i < len(words):
        best = None
        for k in range(1, min(MAX_UNIT, (len(words) - i) // 2) + 1):
            if words[i + k] != words[i]:
                continue
            r = 1
            while i + (r + 1) * k <= len(words) and words[i + r * k: i + (r + 1) * k] == words[i: i + k]:
                r += 1
            if r >= (SHORT_REPEATS if k <= SHORT_UNIT else LONG_REPEATS) and (best is None or k * r > best[0] * best[1]):
                best = (k, r)
        if best is None:
            i += 1
            continue
        k, r = best
        end = found[i + k * r - 1].end()
        rest = words[i + k * r:]
        if 0 < len(rest) < k + 1 and rest[:-1] == words[i:i + len(rest) - 1] and words[i + len(rest) - 1].startswith(rest[-1]):
            end = len(text)  # the loop ran into the token limit: its cut-off last copy goes too
        cuts.append((found[i + k - 1].end(), end))
        i += k * r
    for start, end in reversed(cuts):
        text = text[:start] + text[end:]
    return text


def _sentences(text: str) -> list[str]:
    spans, start = [], 0
    for m in _TERMINAL.finditer(text):
        spans.append(text[start:m.end()])
        start = m.end()
    if text[start:].strip():
        spans.append(text[start:])
    return spans


def _drop_repeated_sentences(text: str) -> str:
    seen, kept = set(), []
    for sentence in _sentences(text):
        key = " ".join(m.group().lower() for m in _TOKEN.finditer(sentence))
        if key and key in seen:
            continue
        seen.add(key)
        kept.append(sentence)
    return "".join(kept)


def _drop_fragment(text: str) -> str:
    text = text.strip()
    if not text or _ENDS_SENTENCE.search(text):
        return text
    ends = [m.end() for m in _TERMINAL.finditer(text)]
    return text[: ends[-1]] if ends else text


def _normalise_space(text: str) -> str:
    text = " ".join(text.split())
    text = _SPACE_BEFORE_PUNCT.sub(r"\1", text)
    text = _SPACE_AROUND_CJK_PUNCT.sub(r"\1", text)
    return _SPACE_BETWEEN_CJK.sub("", text).strip()
