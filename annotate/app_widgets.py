"""The review app's text panels, built as Rich ``Text`` (never markup: captions are data).

Contract (pure functions of what the app holds; the app puts them into ``Static`` widgets):
- ``captions_text(item)``: the original and the synthetic caption of an item (each cut to a few
  lines), or a line saying the batch has nothing left; ``hints_text(item)``: its model hints
  (``rubric.hint_lines``) on one line, empty without hints.
- ``rubric_text()``: Kolors' five levels with their keys, one line each (<= 64 columns).
- ``scores_text(scores, selected)``: the four caption criteria, each with its score or ``·``,
  the selected one marked ``▶``.
- ``progress_text(user, batch, status, item)``: one line: who, which batch, the item's row key,
  done today and left in the batch (from ``Store.status``; a key it lacks is left out).
- ``KEYS_GRADE`` / ``KEYS_CAPTION``: the key line of each mode.
"""
from __future__ import annotations

from rich.text import Text

from annotate.rubric import CRITERIA, LEVELS, hint_lines

KEYS_GRADE = "1-5 vote  s skip  u undo  n note  o open  q quit"
KEYS_CAPTION = "tab next  1-5 score  enter submit  s skip  u undo  n note  o open  q quit"
_CAPTION_LINES = 4  # each caption is cut to this many lines (80x24 keeps the rubric visible)


def _clip(caption: str | None, width_hint: int = 48) -> str:
    if not caption or not caption.strip():
        return "—"
    words = " ".join(caption.split())
    limit = _CAPTION_LINES * width_hint
    return words if len(words) <= limit else words[: limit - 1] + "…"


def captions_text(item) -> tuple[Text, Text]:
    if item is None:
        return Text("Nothing left to review in this batch. q quits.", style="bold"), Text("")
    original = Text("original  ", style="bold cyan")
    original.append(_clip(item.caption))
    synthetic = Text("synthetic ", style="bold magenta")
    synthetic.append(_clip(item.caption_synthetic))
    return original, synthetic


def hints_text(item) -> Text:
    hints = hint_lines(item.hints_json) if item is not None else []
    if not hints:
        return Text("")
    text = Text("hints ", style="bold yellow")
    text.append(" · ".join(hints))
    return text


def rubric_text() -> Text:
    text = Text()
    for level, name, covers in LEVELS:
        if level > 1:
            text.append("\n")
        text.append(f"{level}", style="bold reverse")
        text.append(f" {name}", style="bold")
        text.append(f": {covers}", style="dim")
    return text


def scores_text(scores: dict[str, int], selected: int) -> Text:
    text = Text()
    for index, (name, best) in enumerate(CRITERIA):
        if index:
            text.append("\n")
        mark = "▶ " if index == selected else "  "
        value = scores.get(name)
        text.append(mark, style="bold")
        text.append(f"{name:<13} ", style="bold reverse" if index == selected else "bold")
        text.append(f"{value if value is not None else '·'} ", style="bold green" if value else "dim")
        text.append(f" 5 = {best}", style="dim")
    return text


def progress_text(user, batch: str | None, status: dict, item) -> Text:
    name = getattr(user, "name", user)
    parts = [f"{name}", batch or "all batches"]
    if item is not None:
        parts.append(f"row {item.row_key}")
    if status.get("done_today") is not None:
        parts.append(f"done today {status['done_today']}")
    if status.get("left") is not None:
        parts.append(f"left {status['left']}")
    return Text(" · ".join(str(part) for part in parts), style="bold")
