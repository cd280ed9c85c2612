"""``annotate review``: the full-screen review app (Textual), keyboard only, fits 80x24 and SSH.

Contract: ``ReviewApp(store, user, batch=None, mode="grade"|"caption", image_mode=None,
full_image=None)`` claims items one at a time from ``store`` (``Store.claim_next``) for
``user`` (a batch name, or any open batch of the app's mode) and shows the thumbnail
(``image_view``), the original and synthetic captions, the item's model hints, the rubric and a
progress line (done today, left in the batch, from ``Store.status``).
Keys, both modes: ``s`` skip (``Store.skip``), ``u`` undo the user's last vote
(``Store.undo_last``; an item voted in this session is shown again to be re-voted), ``n`` a
note (an input line; enter keeps it for this item's vote, escape drops it), ``o`` the full
image in the system viewer (``full_image(item)`` gives a path or bytes; default: the
thumbnail), ``q`` quit.
- grade mode: ``1``..``5`` vote that level (with the note) and show the next item.
- caption mode: tab / shift+tab (or right / left) move between the four criteria, ``1``..``5``
  set the selected one and move on, enter submits the four scores as one vote (``level`` null);
  an incomplete set is not submitted, the status line names what is missing.
Every refusal of the store (``VoteRefused`` and the other store errors, all ``ValueError``) is
shown in the status line; the app does not stop. ``latencies_s`` holds, per vote or skip, the
seconds from the key's action to the next item painted (also logged at debug level).
"""
from __future__ import annotations

import logging
import time
from typing import Callable

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Input, Static

from annotate.app_widgets import (KEYS_CAPTION, KEYS_GRADE, captions_text, hints_text, progress_text,
                                  rubric_text, scores_text)
from annotate.image_view import ThumbnailView, open_full
from annotate.rubric import CRITERIA

logger = logging.getLogger(__name__)
MODES = ("grade", "caption")


class ReviewApp(App):
    AUTO_FOCUS = None  # keys go to the app; only the note input takes focus, while open
    CSS = """
    #progress { height: 1; background: $primary-background; }
    #body { height: 1fr; }
    ThumbnailView { width: 40%; height: 100%; }
    #side { width: 1fr; height: 100%; padding: 0 1; }
    #original { height: auto; max-height: 4; }
    #synthetic { height: auto; max-height: 5; }
    #hints { height: auto; max-height: 3; }
    #panel { height: 5; text-wrap: nowrap; text-overflow: ellipsis; }
    #status { height: 1; color: $warning; }
    #note { display: none; height: 3; }
    #keys { height: 1; color: $text-muted; }
    """
    BINDINGS = [
        *[Binding(str(digit), f"digit({digit})", show=False) for digit in range(1, 6)],
        Binding("s", "skip", show=False),
        Binding("u", "undo", show=False),
        Binding("n", "note", show=False),
        Binding("o", "open_full", show=False),
        Binding("q", "quit", show=False),
        Binding("tab,right", "criterion(1)", show=False, priority=True),
        Binding("shift+tab,left", "criterion(-1)", show=False, priority=True),
        Binding("enter", "submit", show=False),
    ]

    def __init__(self, store, user, batch: str | None = None, mode: str = "grade",
                 image_mode: str | None = None,
                 full_image: Callable[[object], str | bytes] | None = None) -> None:
        if mode not in MODES:
            raise ValueError(f"review mode {mode!r}: use grade or caption")
        super().__init__()
        self.store, self.user, self.batch, self.mode = store, user, batch, mode
        self.image_mode = image_mode
        self.full_image = full_image or (lambda item: item.thumbnail)
        self.item = None
        self.note: str | None = None
        self.scores: dict[str, int] = {}
        self.selected = 0
        self.latencies_s: list[float] = []
        self._seen: dict[int, object] = {}

    # -- layout -------------------------------------------------------------------------------
    def compose(self) -> ComposeResult:
        yield Static(id="progress", markup=False)
        with Horizontal(id="body"):
            yield ThumbnailView(self.image_mode, id="thumb")
            with Vertical(id="side"):
                yield Static(id="original", markup=False)
                yield Static(id="synthetic", markup=False)
                yield Static(id="hints", markup=False)
        yield Static(id="panel", markup=False)
        yield Static(id="status", markup=False)
        yield Input(placeholder="note for this item (enter keeps, escape drops)", id="note")
        yield Static(KEYS_GRADE if self.mode == "grade" else KEYS_CAPTION, id="keys", markup=False)

    def on_mount(self) -> None:
        try:  # compile the hot SQL before the first key press (Store.warm reads nothing that matches a row)
            self.store.warm(self.user, self.batch, self.mode)
        except ValueError:
            pass  # a bad batch or mode is reported by the claim below, in the app's own words
        self._next(None)

    @property
    def thumb(self) -> ThumbnailView:
        return self.query_one("#thumb", ThumbnailView)

    def say(self, message: str) -> None:
        self.query_one("#status", Static).update(message)

    def _note_open(self) -> bool:
        return self.query_one("#note", Input).display

    # -- showing items -------------------------------------------------------------------------
    def _show(self, item, started: float | None) -> None:
        self.item = item
        self.note, self.scores, self.selected = None, {}, 0
        if item is not None:
            self._seen[item.id] = item
        self.thumb.show(item.thumbnail if item is not None else None)
        original, synthetic = captions_text(item)
        self.query_one("#original", Static).update(original)
        self.query_one("#synthetic", Static).update(synthetic)
        self.query_one("#hints", Static).update(hints_text(item))
        self._refresh_panel()
        self._refresh_progress()
        if started is not None:
            self.call_after_refresh(self._painted, started)

    def _painted(self, started: float) -> None:
        elapsed = time.perf_counter() - started
        self.latencies_s.append(elapsed)
        logger.debug("key to next image shown: %.1f ms", elapsed * 1000)

    def _next(self, started: float | None) -> None:
        try:
            item = self.store.claim_next(self.user, self.batch, mode=self.mode)
        except ValueError as error:
            self.say(str(error))
            item = None
        self._show(item, started)

    def _refresh_panel(self) -> None:
        panel = rubric_text() if self.mode == "grade" else scores_text(self.scores, self.selected)
        self.query_one("#panel", Static).update(panel)

    def _refresh_progress(self) -> None:
        try:
            status = self.store.status(self.user, self.batch)
        except ValueError as error:
            self.say(str(error))
            status = {}
        self.query_one("#progress", Static).update(progress_text(self.user, self.batch, status, self.item))

    # -- actions -------------------------------------------------------------------------------
    def check_action(self, action: str, parameters: tuple) -> bool | None:
        if self._note_open() and action not in ("quit",):
            return False  # keys go to the note input
        if action in ("criterion", "submit") and self.mode != "caption":
            return False
        return True

    def _vote(self, level: int | None, scores: dict[str, int] | None) -> None:
        if self.item is None:
            self.say("nothing to vote on")
            return
        started = time.perf_counter()
        item = self.item
        try:
            self.store.vote(self.user, item.id, level=level, note=self.note, scores=scores)
        except ValueError as error:
            self.say(f"refused: {error}")
            self._next(started)
            return
        what = f"level {level}" if level is not None else "scores " + " ".join(str(s) for s in scores.values())
        self.say(f"row {item.row_key}: {what}" + (" + note" if self.note else ""))
        self._next(started)

    def action_digit(self, digit: int) -> None:
        if self.mode == "grade":
            self._vote(digit, None)
            return
        if self.item is None:
            self.say("nothing to score")
            return
        self.scores[CRITERIA[self.selected][0]] = digit
        self.selected = (self.selected + 1) % len(CRITERIA)
        self._refresh_panel()

    def action_criterion(self, step: int) -> None:
        self.selected = (self.selected + step) % len(CRITERIA)
        self._refresh_panel()

    def action_submit(self) -> None:
        missing = [name for name, _ in CRITERIA if name not in self.scores]
        if missing:
            self.say(f"score all four first (missing: {', '.join(missing)})")
            return
        self._vote(None, {name: self.scores[name] for name, _ in CRITERIA})

    def action_skip(self) -> None:
        if self.item is None:
            self.say("nothing to skip")
            return
        started, item = time.perf_counter(), self.item
        try:
            self.store.skip(self.user, item.id)
        except ValueError as error:
            self.say(f"refused: {error}")
            return
        self.say(f"row {item.row_key} skipped")
        self._next(started)

    def action_undo(self) -> None:
        try:
            vote = self.store.undo_last(self.user)
        except ValueError as error:
            self.say(f"refused: {error}")
            return
        if vote is None:
            self.say("nothing to undo")
            return
        item = self._seen.get(vote.item_id)
        if item is None:
            self.say("undone a vote of an earlier session; its item returns to the pool")
            self._refresh_progress()
            return
        self._show(item, None)
        self.say(f"undone: row {item.row_key} (was {vote.level if vote.level is not None else 'scores'}); vote again")

    def action_note(self) -> None:
        if self.item is None:
            self.say("nothing to note")
            return
        note = self.query_one("#note", Input)
        note.value = self.note or ""
        note.display = True
        note.focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        self.note = event.value.strip() or None
        self._close_note("note kept for this item's vote" if self.note else "note cleared")

    def on_key(self, event) -> None:
        if event.key == "escape" and self._note_open():
            self._close_note("note dropped")
            event.stop()

    def _close_note(self, message: str) -> None:
        note = self.query_one("#note", Input)
        note.display = False
        self.set_focus(None)
        self.say(message)

    def action_open_full(self) -> None:
        if self.item is None:
            self.say("no image")
            return
        try:
            self.say(open_full(self.full_image(self.item)))
        except (OSError, ValueError) as error:
            self.say(f"cannot open the image: {error}")
