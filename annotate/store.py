"""The annotation store's operations, used by the CLI, the review app, the importer and the exporter.

``Store.open(url)`` reaches a store whose schema is at the Alembic head (else ``StoreError``: run
``refinery annotate init``, or a newer refinery; a missing SQLite file is never created);
``Store.init(url)`` creates or migrates it and returns the revision. A batch name is checked
(``store_queries.check_batch``); a batch of that name is reused only with the same settings and source.
Every write is one transaction run by ``db.in_transaction`` (SQLite: BEGIN IMMEDIATE, retried while
busy); a vote, its claim's release and its audit row commit together, in five or six statements
(``bench/bench_annotate.md``). ``warm(user, batch, mode)`` compiles the hot statements ahead of the
first key press (a rehearsal rolled back). Each change to an item's claims or votes first locks the item row (PostgreSQL ``FOR UPDATE``;
claims take ``FOR UPDATE SKIP LOCKED`` and re-check the item in a fresh statement once locked, so a
count from an older snapshot never over-assigns it). Invariant: an item's votes plus its live
claims by others never exceed ``votes_needed`` when a claim is granted; a vote beyond
``votes_needed``, a second vote of one annotator (also a UNIQUE constraint), or a vote on a final
item is a ``VoteRefused`` naming the reason. Levels settle through ``aggregate.final_level``
(grade mode); a caption-mode item is done once it has ``votes_needed`` votes. Annotators see and
undo only their own votes; batches, items, every vote, finals and the team's status need a lead.
Batches are named by their name (str). Times are UTC.
"""
from __future__ import annotations

import json
import secrets
from datetime import timedelta

from sqlalchemy import delete, insert, select, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from annotate import access, migrate, store_queries
from annotate.store_queries import (VoteRefused, batch_filter, cast, check_batch, check_vote, lock_item, next_offerable,
                                    offerable, others_claims, own_claim, settle)
from annotate.access import AccessError
from annotate.db import (SCORE_COLUMNS, Audit, Batch, Claim, Item, Skip, StoreError, User, Vote, default_url, engine_for,
                         WriteQueue, in_transaction, normalize_url, utcnow, write_engine)

__all__ = ["Store", "StoreError", "AccessError", "VoteRefused", "ITEM_FIELDS"]
ITEM_FIELDS = ("row_key", "image_id", "source_uri", "unit", "caption", "caption_synthetic", "hints_json", "thumbnail")


class _Rehearsed(Exception):
    """Raised to roll ``Store.warm``'s rehearsal back."""


def _audit(s: Session, user: User | None, action: str, item_id: int | None = None, **detail) -> None:
    """One audit row, inserted at once in the caller's transaction (so it commits or rolls back with the change)."""
    s.execute(insert(Audit).values(user_id=user.id if user else None, action=action, item_id=item_id,
                                   detail_json=json.dumps(detail, sort_keys=True)))


class Store:
    def __init__(self, url: str):
        self.url = url
        self.engine = engine_for(url)
        self._read = sessionmaker(self.engine, expire_on_commit=False)
        self._write = sessionmaker(write_engine(self.engine), expire_on_commit=False)
        self._queue = WriteQueue.for_url(url)

    @classmethod
    def open(cls, url: str | None = None) -> "Store":
        url = url or default_url()
        shown = make_url(normalize_url(url)).render_as_string(hide_password=True)
        exists = migrate.exists(url)  # a missing SQLite file is not created here
        have, head = migrate.current(url) if exists else None, migrate.head()
        if have is not None and not migrate.known(have):
            raise StoreError(migrate.newer_message(url, have))
        if have != head:
            state = "does not exist" if not exists else "has no annotation schema" if have is None else \
                f"is at revision {have}, the code needs {head}"
            raise StoreError(f"the store {shown} {state}: run `refinery annotate init --db {shown}`")
        return cls(url)

    @staticmethod
    def init(url: str | None = None) -> str:
        return migrate.upgrade(url or default_url())

    def close(self) -> None:
        self.engine.dispose()
        if self._queue is not None:
            self._queue.close()

    def _tx(self, work):
        return in_transaction(self._write, work, self._queue)

    # -- users ---------------------------------------------------------------------------------
    def add_user(self, by: User | None, name: str, role: str) -> str:
        """Add a user; returns their token (shown once). ``by`` None only to bootstrap the first lead."""
        def work(s):
            token = access.add_user(s, name, role, by)
            _audit(s, by, "user_add", name=name, role=role)
            return token
        return self._tx(work)

    def has_users(self) -> bool:
        """Whether the store has a lead yet (before that, the first ``add_user`` needs no one)."""
        with self._read() as s:
            return access.has_lead(s)

    def login(self, name: str, token: str | None) -> User:
        with self._read() as s:
            return access.authenticate(s, name, token)

    # -- batches and items (lead) --------------------------------------------------------------
    def _batch(self, s: Session, name: str) -> Batch:
        batch = s.scalar(select(Batch).where(Batch.name == name))
        if batch is None:
            raise StoreError(f"no batch named {name!r}")
        return batch

    def add_batch(self, lead: User, name: str, votes_per_item: int = 3, tie_policy: str = "adjudicate",
                  unsafe_veto: bool = False, mode: str = "grade", source_uri: str = "") -> Batch:
        """A new batch, or the existing one of that name when its settings and source are the same."""
        check_batch(name, votes_per_item, tie_policy, mode)
        wanted = dict(votes_per_item=votes_per_item, tie_policy=tie_policy, unsafe_veto=unsafe_veto, mode=mode)

        def work(s):
            access.require_lead(s, lead, "adding a batch")
            batch = s.scalar(select(Batch).where(Batch.name == name))
            if batch is not None:
                if {k: getattr(batch, k) for k in wanted} != wanted:
                    raise StoreError(f"batch {name!r} exists with other settings")
                if batch.source_uri != source_uri:
                    raise StoreError(f"batch {name!r} was imported from {batch.source_uri or 'no output'!r}, "
                                     f"not {source_uri or 'no output'!r}: name a new batch")
                return batch
            batch = Batch(name=name, source_uri=source_uri, **wanted)
            s.add(batch)
            s.flush()
            _audit(s, lead, "batch_add", name=name, source_uri=source_uri, **wanted)
            return batch
        return self._tx(work)

    def add_items(self, lead: User, batch: str, items: list[dict]) -> int:
        """Add items (keys: ITEM_FIELDS; row_key and image_id required); rows already in the batch are
        left as they are. Returns how many were added."""
        for row in items:
            if set(row) - set(ITEM_FIELDS) or "row_key" not in row or "image_id" not in row:
                raise StoreError(f"an item takes the keys {ITEM_FIELDS} (row_key, image_id required); got {sorted(row)}")

        def work(s):
            access.require_lead(s, lead, "adding items")
            found = self._batch(s, batch)
            keys = [int(row["row_key"]) for row in items]
            have = set(s.scalars(select(Item.row_key).where(Item.batch_id == found.id, Item.row_key.in_(keys)))) if keys else set()
            now, fresh, seen = utcnow(), [], set()
            for row in items:
                key = int(row["row_key"])
                if key in have or key in seen:
                    continue
                seen.add(key)
                fresh.append({"source_uri": "", "unit": "", "hints_json": "{}", **row, "row_key": key,
                              "batch_id": found.id, "votes_needed": found.votes_per_item, "adjudicated": False, "created": now})
            if fresh:
                s.execute(insert(Item), fresh)
            _audit(s, lead, "items_add", batch=batch, added=len(fresh), given=len(items))
            return len(fresh)
        return self._tx(work)

    # -- annotating (hot path: statement counts per call in bench/bench_annotate.md) -----------------------
    def claim_next(self, user: User, batch: str | None = None, lease_s: float = 600,
                   mode: str | None = None) -> Item | None:
        """The user's own live claim (lease renewed), else a newly claimed item; None when nothing is left.
        ``batch`` and ``mode`` (None: any) narrow the items offered."""
        return self._tx(lambda s: self._claim(s, user, batch, lease_s, mode))

    def _claim(self, s: Session, user: User, batch: str | None, lease_s: float, mode: str | None) -> Item | None:
        postgresql = s.bind.dialect.name == "postgresql"
        if postgresql:  # a lease lost in a server crash only expires early
            s.execute(text("SET LOCAL synchronous_commit = off"))
        now = utcnow()
        until = now + timedelta(seconds=lease_s)
        in_batch = batch_filter(batch, mode)
        s.execute(delete(Claim).where(Claim.user_id == user.id, Claim.expires_at <= now))
        own = s.scalar(own_claim(user.id, in_batch))
        if own is not None:
            s.execute(update(Claim).where(Claim.item_id == own.id, Claim.user_id == user.id).values(expires_at=until))
            return own
        for _ in range(100):
            item = s.scalar(next_offerable(user.id, now, in_batch))
            if item is None:
                if batch is not None:
                    self._batch(s, batch)  # a StoreError when there is no such batch
                return None
            # PostgreSQL, locked now: a fresh statement sees every claim and vote committed before the lock
            # (SQLite's BEGIN IMMEDIATE already read them all).
            if not postgresql or s.scalar(select(Item.id).where(Item.id == item.id, offerable(user.id, now))) is not None:
                s.execute(insert(Claim).values(item_id=item.id, user_id=user.id, expires_at=until, created=now))
                return item
        return None

    def warm(self, user: User, batch: str | None = None, mode: str | None = None) -> None:
        """Compile this process's SQL for ``claim_next(user, batch, mode)`` and ``vote`` before the first key press
        (SQLAlchemy compiles a statement on first use, ~1 ms of CPU each, which 20 annotators starting at once
        pay together): a rehearsal in one write transaction that is rolled back. It adds a throwaway batch of
        ``mode`` (default grade) with one item needing one vote, claims it through the same code as
        ``claim_next`` (with a batch; without one, the new-item query stays cold, since a batch-less claim could
        reach a real item), votes on it through the same code as ``vote`` (so the claim release, the vote, the
        settling UPDATE and the audit row are compiled), and rolls everything back: nothing is kept, the audit log
        included (PostgreSQL's id sequences advance). SQLite holds its write lock for those few milliseconds."""
        rehearsal, kind = f"~warm-{secrets.token_hex(8)}", mode or "grade"

        def work(s):
            batch_id = s.scalar(insert(Batch).values(name=rehearsal, mode=kind, votes_per_item=1,
                                                     created=utcnow()).returning(Batch.id))
            item_id = s.scalar(insert(Item).values(batch_id=batch_id, row_key=0, image_id="", votes_needed=1,
                                                   adjudicated=False, created=utcnow()).returning(Item.id))
            if batch is not None:
                # SQLAlchemy gives the first build of this ORM query in a process another cache key than the
                # next ones (mapper state reaches its subqueries on first compile): build it once ahead.
                s.scalar(next_offerable(user.id, utcnow(), batch_filter(rehearsal, mode)))
                self._claim(s, user, rehearsal, 600, mode)
            grade = kind == "grade"
            self._vote(s, user, item_id, 4 if grade else None, "warm", None if grade else dict.fromkeys(SCORE_COLUMNS, 3))
            raise _Rehearsed

        try:
            self._tx(work)
        except _Rehearsed:
            pass

    def vote(self, user: User, item_id: int, level: int | None = None, note: str | None = None,
             scores: dict[str, int] | None = None) -> Vote:
        try:
            return self._tx(lambda s: self._vote(s, user, item_id, level, note, scores))
        except IntegrityError as exc:
            if "unique" in str(exc.orig).lower() or "duplicate" in str(exc.orig).lower():
                raise VoteRefused(f"you already voted on item {item_id} (from another terminal?)") from None
            raise StoreError(f"vote on item {item_id} violates the schema: {str(exc.orig).splitlines()[0]}") from None

    def _vote(self, s: Session, user: User, item_id: int, level: int | None, note: str | None,
              scores: dict[str, int] | None) -> Vote:
        now = utcnow()
        item = lock_item(s, item_id)
        checked = check_vote(item.mode, level, scores, note)
        votes = cast(s, item_id)
        if any(voter == user.id for voter, _ in votes):
            raise VoteRefused(f"you already voted on item {item_id} (from another terminal?); undo it to change it")
        if item.final_level is not None:
            raise VoteRefused(f"item {item_id} is final (level {item.final_level}); it takes no more votes")
        # Releasing the claim tells whether it was live; a refusal below rolls the release back.
        mine = s.execute(delete(Claim).where(Claim.item_id == item_id, Claim.user_id == user.id)
                         .returning(Claim.expires_at > now)).scalar()
        if len(votes) >= item.votes_needed or (
                not mine and len(votes) + s.scalar(others_claims(item_id, user.id, now)) >= item.votes_needed):
            raise VoteRefused(f"item {item_id} has all the votes it needs (your claim expired or you never claimed it)")
        fields = dict(item_id=item_id, user_id=user.id, level=level, note=note or None, created=now, **checked)
        vote = Vote(id=s.scalar(insert(Vote).values(fields).returning(Vote.id)), **fields)
        final = settle(s, item, [lvl for _, lvl in votes] + [level])
        _audit(s, user, "vote", item_id, level=level, scores=checked, final=final)
        return vote

    def skip(self, user: User, item_id: int) -> None:
        """The item is not offered to this user again; their claim on it is released."""
        def work(s):
            lock_item(s, item_id)
            if s.get(Skip, (item_id, user.id)) is None:
                s.add(Skip(item_id=item_id, user_id=user.id))
            s.execute(delete(Claim).where(Claim.item_id == item_id, Claim.user_id == user.id))
            _audit(s, user, "skip", item_id)
        self._tx(work)

    def undo_last(self, user: User, lease_s: float = 600) -> Vote | None:
        """Remove the user's latest vote while its item is not final; the user gets a claim on the item
        back (lease ``lease_s``). None when the user has no vote."""
        def work(s):
            last = s.scalar(select(Vote).where(Vote.user_id == user.id).order_by(Vote.id.desc()).limit(1))
            if last is None:
                return None
            item = lock_item(s, last.item_id)
            votes = cast(s, item.id)
            if item.final_level is not None or (item.mode == "caption" and len(votes) >= item.votes_needed):
                raise VoteRefused(f"item {item.id} is final; your vote on it can no longer be undone")
            s.delete(last)
            s.flush()
            settle(s, item, [lvl for voter, lvl in votes if voter != user.id])
            now = utcnow()
            s.add(Claim(item_id=item.id, user_id=user.id, expires_at=now + timedelta(seconds=lease_s), created=now))
            _audit(s, user, "undo", item.id, level=last.level)
            return last
        return self._tx(work)

    def import_vote(self, lead: User, batch: str, image_id: str, annotator: str, level: int,
                    note: str | None = None) -> Vote:
        """A vote made elsewhere (``import-votes``), for ``annotator`` on the batch's item of ``image_id``,
        under the rules of ``vote`` (one per annotator, never beyond what the item needs, not on a final item)."""
        with self._read() as s:
            access.require_lead(s, lead, "importing votes")
            user = s.scalar(select(User).where(User.name == annotator))
            item = s.scalar(select(Item).where(Item.batch_id == self._batch(s, batch).id, Item.image_id == image_id))
        if user is None:
            raise VoteRefused(f"no user named {annotator!r} (add them with `refinery annotate users add`)")
        if item is None:
            raise VoteRefused(f"batch {batch!r} has no item with id {image_id[:16]!r}")
        return self.vote(user, item.id, level, note)

    def batch_settings(self, user: User, batch: str) -> dict:
        with self._read() as s:
            b = self._batch(s, batch)
            return {"votes_per_item": b.votes_per_item, "tie_policy": b.tie_policy, "unsafe_veto": b.unsafe_veto,
                    "mode": b.mode, "source_uri": b.source_uri}

    # -- reading (queries in annotate/store_queries.py) ----------------------------------------------
    def status(self, user: User, batch: str | None = None) -> dict:
        """An annotator: their own done_today, done_total, left. A lead also gets ``batches`` (items, final,
        votes, votes_left per batch) and ``annotators`` (done_today, done_total, left per user)."""
        with self._read() as s:
            return store_queries.status(s, user, self._batch(s, batch).id if batch is not None else None)

    def votes(self, lead: User, batch: str) -> list[tuple]:
        """Every vote of the batch: (row_key, image_id, annotator, level, scores dict, created), by row_key."""
        with self._read() as s:
            access.require_lead(s, lead, "reading every vote")
            return store_queries.votes(s, self._batch(s, batch))

    def finals(self, lead: User, batch: str) -> list[dict]:
        """Per item of the batch (by row_key): row_key, image_id, source_uri, unit, level (None while not final),
        adjudicated, votes_needed, votes [(annotator, level)] in order cast, scores {criterion: aggregated or
        None} and caption_votes [{annotator, completeness, correlation, hallucination, subjectivity}]."""
        with self._read() as s:
            access.require_lead(s, lead, "reading the finals")
            return store_queries.finals(s, self._batch(s, batch))
