"""Hostile review of the store file and the review app: older and newer migrations, missing files and
folders, concurrent init, PostgreSQL limits, an empty batch in the app."""
from __future__ import annotations

import asyncio
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from annotate import migrate
from annotate.store import Store, StoreError


from annotate_hostile_support import cli, sqlite_store, pg_url  # noqa: F401 (fixtures)


# -- the store file and its schema --------------------------------------------------------------------
def test_cli_on_a_store_at_an_older_migration(tmp_path, capsys):
    db = f"sqlite:///{tmp_path / 'old.db'}"
    assert migrate.upgrade(db, "0001") == "0001"
    rc, out, err = cli(capsys, "status", "--db", db, "--user", "x", "--token", "t")
    assert rc == 2 and out == ""
    assert err.startswith("error: ") and "revision 0001" in err and "refinery annotate init" in err
    assert len(err.strip().splitlines()) == 1
    assert cli(capsys, "init", "--db", db)[0] == 0 and migrate.current(db) == migrate.head()


def test_cli_on_a_store_from_newer_code(tmp_path, capsys):
    path = tmp_path / "future.db"
    Store.init(f"sqlite:///{path}")
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE alembic_version SET version_num = '0099'")
    rc, _, err = cli(capsys, "init", "--db", f"sqlite:///{path}")
    assert rc == 2 and err.startswith("error: ") and "0099" in err


def test_open_does_not_create_a_missing_sqlite_file(tmp_path):
    path = tmp_path / "typo.db"
    with pytest.raises(StoreError, match="refinery annotate init"):
        Store.open(f"sqlite:///{path}")
    assert not path.exists()


def test_store_in_a_missing_folder_is_one_line(tmp_path, capsys):
    rc, _, err = cli(capsys, "status", "--db", f"sqlite:///{tmp_path / 'no' / 'such' / 'g.db'}", "--user", "x", "--token", "t")
    assert rc == 2 and err.startswith("error: ")


INIT_AT_ONCE = """
import os, sys, time
from annotate.store import Store
open(f"{sys.argv[2]}.{os.getpid()}", "w").close()
while not os.path.exists(sys.argv[2]):
    time.sleep(0.002)
print(Store.init(sys.argv[1]))
"""


def _concurrent_init(url: str, gate: Path, n: int = 3) -> list[tuple[int, str]]:
    """``n`` processes run ``Store.init(url)`` at the same moment (each imports first, then waits at a gate)."""
    procs = [subprocess.Popen([sys.executable, "-c", INIT_AT_ONCE, url, str(gate)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(n)]
    deadline = time.monotonic() + 60
    while len(list(gate.parent.glob(gate.name + ".*"))) < n and time.monotonic() < deadline:
        time.sleep(0.01)
    gate.touch()
    results = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        results.append((proc.returncode, out.strip() or err.strip()[-300:]))
    return results


def test_concurrent_init_on_sqlite(tmp_path):
    url = f"sqlite:///{tmp_path / 'g.db'}"
    assert _concurrent_init(url, tmp_path / "go") == [(0, migrate.head())] * 3
    Store.open(url).close()


def test_concurrent_init_on_postgresql(pg_url, tmp_path):
    assert _concurrent_init(pg_url, tmp_path / "go") == [(0, migrate.head())] * 3


def test_long_batch_name_on_postgresql(pg_url):
    Store.init(pg_url)
    store = Store.open(pg_url)
    lead = store.login("lead", store.add_user(None, "lead", "lead"))
    try:
        with pytest.raises(StoreError):
            store.add_batch(lead, "x" * 300)
    finally:
        store.close()


def test_note_with_a_nul_on_postgresql(pg_url):
    Store.init(pg_url)
    store = Store.open(pg_url)
    lead = store.login("lead", store.add_user(None, "lead", "lead"))
    store.add_batch(lead, "b")
    store.add_items(lead, "b", [{"row_key": 1, "image_id": "i"}])
    try:
        item = store.claim_next(lead, "b")
        try:
            store.vote(lead, item.id, level=3, note="before\x00after")
        except ValueError:
            pass  # refused with a reason, or stored: both fine
    finally:
        store.close()


# -- the review app -----------------------------------------------------------------------------------
def _status_line(app) -> str:
    return str(app.query_one("#status").render())


def test_review_app_on_an_empty_and_on_an_unknown_batch(tmp_path):
    from annotate.app import ReviewApp

    store, lead, u = sqlite_store(tmp_path)
    store.add_batch(lead, "empty")

    async def drive():
        app = ReviewApp(store, u["alice"], batch="empty", image_mode="halfblock")
        async with app.run_test(size=(80, 24)) as pilot:
            assert app.item is None and "Nothing left" in str(app.query_one("#original").render())
            for key, said in (("3", "nothing to vote on"), ("s", "nothing to skip"), ("u", "nothing to undo"),
                              ("n", "nothing to note"), ("o", "no image")):
                await pilot.press(key)
                assert said in _status_line(app), key
            assert app.is_running
        app = ReviewApp(store, u["alice"], batch="nope", image_mode="halfblock")
        async with app.run_test(size=(80, 24)) as pilot:
            assert "no batch named 'nope'" in _status_line(app) and app.item is None
            await pilot.press("4")
            assert app.is_running
    asyncio.run(drive())
    store.close()


def test_review_without_a_batch_gets_items_it_can_grade(tmp_path):
    from annotate.app import ReviewApp

    store, lead, u = sqlite_store(tmp_path)
    store.add_batch(lead, "cap", mode="caption")
    store.add_items(lead, "cap", [{"row_key": 1, "image_id": "c", "caption_synthetic": "a dog"}])
    store.add_batch(lead, "grade")
    store.add_items(lead, "grade", [{"row_key": 2, "image_id": "g"}])

    async def drive():
        app = ReviewApp(store, u["alice"], mode="grade", image_mode="halfblock")
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("3")
            assert "refused" not in _status_line(app), _status_line(app)
    asyncio.run(drive())
    assert [(v[0], v[3]) for v in store.votes(lead, "grade")] == [(2, 3)]
    store.close()
