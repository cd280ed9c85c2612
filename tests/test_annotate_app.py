"""The review app under Textual's headless pilot: keys give votes, undo, skip, notes, caption
scores, refusals in the status line, the thumbnail in a graphics mode and in half-blocks, and
80x24 / 60x20 terminals; plus the rubric hints and ``open_full``."""
from __future__ import annotations

import asyncio
import io
import json
import os
import re
import time
from types import SimpleNamespace

import pytest
from PIL import Image
from sqlalchemy import select
from sqlalchemy.orm import Session
from textual.geometry import Region

from annotate import image_view
from annotate.app import ReviewApp
from annotate.db import Batch, Item, Skip, Vote
from annotate.image_view import ThumbnailView, image_mode, open_full
from annotate.rubric import hint_lines
from annotate.store import Store
from curate.schema import CAPTION_CRITERIA


def jpeg(color, size=(320, 240)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, color).save(out, "JPEG", quality=90)
    return out.getvalue()


def item_rows(n=4):
    colors = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (90, 90, 90)]
    return [{"row_key": 100 + i, "image_id": f"sha{i}", "source_uri": "file:///out", "unit": "u0",
             "caption": f"original caption {i}", "caption_synthetic": f"a synthetic [bold]caption[/] {i}",
             "hints_json": json.dumps({"face_count": i, "ocr_area": 0.2 * i, "nsfw": 0.01}),
             "thumbnail": jpeg(colors[i % len(colors)])} for i in range(n)]


@pytest.fixture
def team(tmp_path):
    """A SQLite store with a lead, annotator alice, grade batch b1 and caption batch c1 (4 items each)."""
    url = f"sqlite:///{tmp_path / 'grading.db'}"
    Store.init(url)
    store = Store.open(url)
    lead = store.login("lead", store.add_user(None, "lead", "lead"))
    alice = store.login("alice", store.add_user(lead, "alice", "annotator"))
    store.add_batch(lead, "b1")
    store.add_items(lead, "b1", item_rows())
    store.add_batch(lead, "c1", mode="caption")
    store.add_items(lead, "c1", item_rows())
    yield SimpleNamespace(store=store, lead=lead, alice=alice)
    store.close()


def votes(team, batch="b1"):
    """alice's votes of ``batch``: (row_key, level, note, scores), in the order they were made."""
    with Session(team.store.engine) as s:
        rows = s.execute(select(Item.row_key, Vote.level, Vote.note, *[getattr(Vote, c) for c in CAPTION_CRITERIA])
                         .join(Vote, Vote.item_id == Item.id).join(Batch, Batch.id == Item.batch_id)
                         .where(Batch.name == batch, Vote.user_id == team.alice.id).order_by(Vote.id))
        return [(key, level, note, dict(zip(CAPTION_CRITERIA, scores)) if any(scores) else None)
                for key, level, note, *scores in rows]


def skipped(team):
    with Session(team.store.engine) as s:
        return sorted(s.scalars(select(Item.row_key).join(Skip, Skip.item_id == Item.id)
                                .where(Skip.user_id == team.alice.id)))


def run(coro):
    return asyncio.run(coro)


def status_line(app) -> str:
    return str(app.query_one("#status").render())


# -- grade mode -----------------------------------------------------------------------------------
def test_keys_vote_skip_undo_and_note(team):
    async def drive():
        app = ReviewApp(team.store, team.alice, batch="b1", image_mode="halfblock")
        async with app.run_test(size=(80, 24)) as pilot:
            assert app.item.row_key == 100
            await pilot.press("3")
            assert votes(team) == [(100, 3, None, None)]
            assert app.item.row_key == 101
            await pilot.press("s")
            assert skipped(team) == [101] and app.item.row_key == 102
            await pilot.press("n", *"blurry", "enter")
            assert app.note == "blurry" and "note kept" in status_line(app)
            await pilot.press("5")
            assert votes(team)[-1] == (102, 5, "blurry", None)
            assert app.item.row_key == 103 and app.note is None
            await pilot.press("u")
            assert votes(team) == [(100, 3, None, None)]
            assert app.item.row_key == 102 and "undone: row 102 (was 5)" in status_line(app)
            await pilot.press("2")
            assert votes(team) == [(100, 3, None, None), (102, 2, None, None)]
            assert app.item.row_key == 103  # the item shown before the undo comes back
            await pilot.pause()
            assert len(app.latencies_s) == 4 and all(0 < s < 5 for s in app.latencies_s)
            assert "done today 2 · left 1" in str(app.query_one("#progress").render())
    run(drive())


def test_note_input_takes_the_keys_and_escape_drops_it(team):
    async def drive():
        app = ReviewApp(team.store, team.alice, image_mode="halfblock")
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("n", "1", "s", "q")
            assert votes(team) == [] and app.query_one("#note").value == "1sq" and app.is_running
            await pilot.press("escape")
            assert app.note is None and "dropped" in status_line(app)
            await pilot.press("4")
            assert votes(team) == [(100, 4, None, None)]
    run(drive())


def test_refused_vote_shows_in_status_line(team):
    async def drive():
        app = ReviewApp(team.store, team.alice, batch="b1", image_mode="halfblock")
        async with app.run_test(size=(80, 24)) as pilot:
            team.store.vote(team.alice, app.item.id, level=2)  # alice's second terminal votes this item first
            await pilot.press("4")
            assert "refused: you already voted on item" in status_line(app)
            assert app.is_running and app.item.row_key == 101
            assert votes(team) == [(100, 2, None, None)]
            await pilot.press("3")
            assert votes(team)[-1] == (101, 3, None, None) and "row 101: level 3" in status_line(app)
    run(drive())


def test_end_of_batch_and_quit(team):
    team.store.add_batch(team.lead, "one")
    team.store.add_items(team.lead, "one", item_rows(1))

    async def drive():
        app = ReviewApp(team.store, team.alice, batch="one", image_mode="halfblock")
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("1")
            assert app.item is None and "Nothing left" in str(app.query_one("#original").render())
            await pilot.press("3", "s")
            assert "nothing to skip" in status_line(app) and votes(team, "one") == [(100, 1, None, None)]
            await pilot.press("q")
            assert not app.is_running
    run(drive())


# -- caption mode ---------------------------------------------------------------------------------
def test_caption_mode_stores_four_scores(team):
    async def drive():
        app = ReviewApp(team.store, team.alice, batch="c1", mode="caption", image_mode="halfblock")
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("4", "5", "enter")
            assert votes(team, "c1") == [] and "missing: hallucination, subjectivity" in status_line(app)
            await pilot.press("2", "3", "shift+tab", "1", "tab", "tab", "4")
            assert "▶ completeness" not in str(app.query_one("#panel").render())
            await pilot.press("enter")
            assert votes(team, "c1") == [(100, None, None, {"completeness": 4, "correlation": 5,
                                                            "hallucination": 4, "subjectivity": 1})]
            assert app.item.row_key == 101 and app.scores == {}
    run(drive())


# -- the thumbnail --------------------------------------------------------------------------------
def picture_segments(app):
    picture = app.thumb._picture
    lines = picture.render_lines(Region(0, 0, picture.size.width, picture.size.height))
    return picture, [segment for line in lines for segment in line]


def test_halfblock_mode_draws_the_thumbnail_colours(team):
    async def drive():
        app = ReviewApp(team.store, team.alice, image_mode="halfblock")
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            picture, segments = picture_segments(app)
            assert app.thumb.mode == "halfblock" and segments
            assert {s.text for s in segments if s.text != "\n"} == {"▀"}
            top = segments[0].style.color.triplet
            assert abs(top.red - 200) < 12 and top.green < 45 and top.blue < 45
            # scaled into the widget, aspect kept (320x240 with 10x20-pixel cells: twice as wide as tall in cells)
            assert app.thumb.region.contains_region(picture.region)
            assert abs(picture.size.width / picture.size.height - 8 / 3) < 0.3
            await pilot.press("4")
            await pilot.pause()
            _, segments = picture_segments(app)
            assert segments[0].style.color.triplet.green > 170  # the next item's (green) thumbnail
    run(drive())


def test_kitty_mode_sends_the_image_and_draws_placeholders(team, monkeypatch):
    from textual_image.renderable import tgp
    sent = []
    monkeypatch.setattr(tgp, "_send_tgp_message", lambda payload=None, **keys: sent.append(keys))
    async def drive():
        app = ReviewApp(team.store, team.alice, image_mode="kitty")
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            picture, segments = picture_segments(app)
            assert app.thumb.mode == "kitty"
            placements = [m for m in sent if m.get("a") == "p"]
            assert placements and (placements[-1]["c"], placements[-1]["r"]) == tuple(picture.size)
            assert any(m.get("f") == 100 for m in sent)  # the PNG upload itself
            text = "".join(s.text for s in segments)
            assert text.count(chr(0x10EEEE)) == picture.size.width * picture.size.height
            assert app.thumb.region.contains_region(picture.region)
    run(drive())


def test_sixel_mode_injects_sixel_data(team):
    async def drive():
        app = ReviewApp(team.store, team.alice, image_mode="sixel")
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.pause()
            impl = app.thumb._picture.children[0]
            lines = impl.render_lines(Region(0, 0, impl.size.width, impl.size.height))
            data = "".join(s.text for line in lines for s in line)
            width, height = app.thumb._picture.size  # 10x20-pixel cells when no terminal answers
            assert "\x1bP" in data and f'"1;1;{width * 10};{height * 20}#' in data  # DCS, raster size
            red, green, blue = map(int, re.search(r"#0;2;(\d+);(\d+);(\d+)", data).groups())
            assert abs(red - 78) <= 5 and green < 18 and blue < 18  # the thumbnail's red, in percent
    run(drive())


def test_image_mode_from_env_parameter_and_detection(monkeypatch):
    import textual_image.renderable as detected
    monkeypatch.delenv("REFINERY_IMAGE_MODE", raising=False)
    for found, mode in ((detected.TGPImage, "kitty"), (detected.SixelImage, "sixel"),
                        (detected.HalfcellImage, "halfblock"), (detected.UnicodeImage, "halfblock")):
        monkeypatch.setattr(detected, "Image", found)  # what textual-image's terminal query picked
        assert image_mode() == mode == image_mode("auto")
    monkeypatch.setenv("REFINERY_IMAGE_MODE", "Kitty")
    assert image_mode() == "kitty" and image_mode("halfblock") == "halfblock"
    assert ThumbnailView().mode == "kitty"
    monkeypatch.setenv("REFINERY_IMAGE_MODE", "ascii")
    with pytest.raises(ValueError, match="image mode 'ascii'"):
        image_mode()


def test_narrow_terminal_still_works(team):
    rows = item_rows(2)
    rows[0]["caption"] = "a very long original caption " * 30
    team.store.add_batch(team.lead, "long")
    team.store.add_items(team.lead, "long", rows)

    async def drive():
        app = ReviewApp(team.store, team.alice, batch="long", image_mode="halfblock")
        async with app.run_test(size=(60, 20)) as pilot:
            await pilot.pause()
            for name in ("#progress", "#status", "#keys", "#panel", "#original", "#synthetic", "#hints"):
                region = app.query_one(name).region
                assert region.height >= 1 and region.bottom <= 20 and region.right <= 60, name
            panel = app.query_one("#panel").region
            assert panel.height == 5 and panel.bottom <= app.query_one("#status").region.y  # the whole rubric
            assert app.query_one("#synthetic").region.bottom <= panel.y  # a long caption does not hide it
            picture = app.thumb._picture
            assert picture.size.width > 5 and app.thumb.region.contains_region(picture.region)
            await pilot.press("2")
            assert votes(team, "long") == [(100, 2, None, None)] and app.item.row_key == 101
    run(drive())


# -- hints and the full image ---------------------------------------------------------------------
def test_hint_lines_point_at_levels():
    lines = hint_lines(json.dumps({"nsfw": 0.9, "stat_ocr_area": 0.12, "face_count": 2, "border": None,
                                   "aesthetic": 6.5, "ocr_text": "SALE  50%\noff"}))
    assert lines == ["NSFW 0.90 → 1", "OCR area 12% → 2", "faces 2", "aesthetic 6.5 → 5", "text 'SALE 50% off'"]
    assert hint_lines(None) == [] and hint_lines("not json") == [] and hint_lines("[1]") == []


def fake_viewer(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    script = bin_dir / "xdg-open"
    script.write_text(f"#!/bin/sh\nsleep 2\necho \"$1\" > {tmp_path}/opened\n")
    script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}:/usr/bin:/bin")
    monkeypatch.setenv("DISPLAY", ":0")
    monkeypatch.setattr(image_view.sys, "platform", "linux")
    return tmp_path / "opened"


def test_open_full_starts_the_viewer_without_waiting(tmp_path, monkeypatch):
    opened = fake_viewer(tmp_path, monkeypatch)
    started = time.perf_counter()
    message = open_full(jpeg((1, 2, 3)))
    assert time.perf_counter() - started < 1.0 and message.startswith("opened refinery-")
    for _ in range(100):
        if opened.exists() and opened.read_text().strip():
            break
        time.sleep(0.05)
    path = opened.read_text().strip()
    assert Image.open(path).size == (320, 240)
    os.unlink(path)


def test_open_full_says_why_nothing_opened(tmp_path, monkeypatch):
    monkeypatch.setattr(image_view.sys, "platform", "linux")
    monkeypatch.setenv("PATH", str(tmp_path))
    picture = tmp_path / "p.jpg"
    picture.write_bytes(jpeg((5, 5, 5)))
    assert open_full(picture) == f"no image viewer (xdg-open/open) on this machine; the image is at {picture}"
    assert open_full(tmp_path / "missing.jpg") == f"no image at {tmp_path / 'missing.jpg'}"
    fake_viewer(tmp_path, monkeypatch)
    monkeypatch.delenv("DISPLAY")
    monkeypatch.delenv("WAYLAND_DISPLAY", raising=False)
    assert open_full(picture) == f"no display here (SSH session?); the image is at {picture}"


def test_o_key_opens_the_full_image(team, tmp_path, monkeypatch):
    opened = fake_viewer(tmp_path, monkeypatch)
    full = tmp_path / "full.jpg"
    full.write_bytes(jpeg((9, 9, 9), (1024, 768)))

    async def drive():
        app = ReviewApp(team.store, team.alice, image_mode="halfblock", full_image=lambda item: full)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("o")
            assert status_line(app) == "opened full.jpg in xdg-open"
    run(drive())
    for _ in range(100):
        if opened.exists() and opened.read_text().strip():
            break
        time.sleep(0.05)
    assert opened.read_text().strip() == str(full)


def test_the_first_key_press_reads_with_sql_compiled_at_start(team):
    """The app calls ``Store.warm`` on mount, so every statement of the first vote and of the next claim
    (reads and writes) runs as SQLAlchemy compiled it before the key press (cold ones compile on first use)."""
    from sqlalchemy import event
    from sqlalchemy.engine.default import CACHE_MISS

    compiled_on_the_key: list[str] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if context.cache_hit is CACHE_MISS:
            compiled_on_the_key.append(statement)

    async def drive():
        app = ReviewApp(team.store, team.alice, batch="b1", image_mode="halfblock")
        async with app.run_test(size=(80, 24)) as pilot:
            assert app.item.row_key == 100
            event.listen(team.store.engine, "after_cursor_execute", record)
            try:
                await pilot.press("4")
            finally:
                event.remove(team.store.engine, "after_cursor_execute", record)
            assert votes(team) == [(100, 4, None, None)] and app.item.row_key == 101
    run(drive())
    assert compiled_on_the_key == []
