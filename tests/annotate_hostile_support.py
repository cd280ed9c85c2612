"""Shared inputs of the annotate hostile tests: curated outputs of four photos, a team with tokens,
and helpers to vote, read grades and open stores."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml

import curate
from annotate.cli import main
from annotate.store import Store
from cases import TEST_CONFIG, cases
from curate.config import CurateConfig
from curate.pipeline import run as curate_run
from test_annotate_concurrency import pg_url, throwaway_pg  # noqa: F401 - pg_url is a fixture


PHOTOS = ["a_astronaut", "b_chelsea", "c_coffee", "d_rocket"]
PG_SECRET = "hunter2-pg-Secret"
FULL = {"completeness": 4, "correlation": 5, "hallucination": 3, "subjectivity": 2}


# -- inputs -----------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    """Two curated outputs of the same four photos, in opposite order: the same row keys, other images."""
    root = tmp_path_factory.mktemp("hostile")
    made = {}
    for name, order in (("A", PHOTOS), ("B", PHOTOS[::-1])):
        folder = root / f"in{name}"
        folder.mkdir()
        for n, key in enumerate(order):
            (folder / f"{n}_{key}.jpg").write_bytes(cases()[key][0])
            (folder / f"{n}_{key}.txt").write_text(cases()[key][1])
        curate_run(str(folder), str(root / f"out{name}"), CurateConfig.model_validate(yaml.safe_load(TEST_CONFIG)))
        made[name] = root / f"out{name}"
    return made


def cli(capsys, *argv) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


class Team:
    def __init__(self, db: str, capsys):
        self.db, self.capsys, self.tokens, self.printed = db, capsys, {}, []
        assert self.run("init", as_user=None)[0] == 0
        rc, out, _ = self.run("users", "add", "lena", "--role", "lead", "--user", "lena", as_user=None)
        self.tokens["lena"] = out.splitlines()[1].strip()
        for name in ("alice", "bob", "carol", "dave"):
            rc, out, _ = self.run("users", "add", name, "--role", "annotator")
            assert rc == 0
            self.tokens[name] = out.splitlines()[1].strip()

    def run(self, *argv, as_user: str | None = "lena") -> tuple[int, str, str]:
        who = ["--user", as_user, "--token", self.tokens[as_user]] if as_user else []
        result = cli(self.capsys, *argv, "--db", self.db, *who)
        if argv[:2] != ("users", "add"):
            self.printed.append(result[1] + result[2])
        return result

    def store(self):
        store = Store.open(self.db)
        return store, {name: store.login(name, token) for name, token in self.tokens.items()}


@pytest.fixture
def team(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("REFINERY_TOKEN", raising=False)
    monkeypatch.delenv("REFINERY_DB", raising=False)
    return Team(f"sqlite:///{tmp_path / 'grading.db'}", capsys)


def copy_of(output: Path, tmp_path: Path, name: str = "out") -> Path:
    target = tmp_path / name
    shutil.copytree(output, target)
    return target


def vote_all(store, users, batch: str, level_of) -> None:
    for name in ("alice", "bob", "carol"):
        while (item := store.claim_next(users[name], batch)) is not None:
            store.vote(users[name], item.id, level=level_of(name, item.row_key))


def grades(output: Path, versions: dict | None = None) -> dict[int, dict]:
    table = curate.open(str(output)).read(["row_key", "id", "level", "votes", "level_adjudicated", "level_votes_needed",
                                           "grade_batch"], versions=versions)
    return {r["row_key"]: r for r in table.to_pylist()}


def shard_bytes(output: Path) -> bytes:
    return b"".join(p.read_bytes() for p in sorted(output.rglob("*")) if p.is_file())


def sqlite_store(tmp_path) -> tuple[Store, object, dict]:
    url = f"sqlite:///{tmp_path / 'g.db'}"
    Store.init(url)
    store = Store.open(url)
    lead = store.login("lead", store.add_user(None, "lead", "lead"))
    users = {n: store.login(n, store.add_user(lead, n, "annotator")) for n in ("alice", "bob", "carol", "dave")}
    return store, lead, users


