"""The annotation store's SQL expressions, read-only reports and value checks (used by ``annotate.store.Store``).

``offerable(user_id, now)``: an item this user may claim now (not final, not voted or skipped by
them, its votes plus live claims by others below ``votes_needed``); ``n_votes``/``others_claims``
count an item's votes and the live claims of other users. The hot path of ``claim_next`` and ``vote``:
``batch_filter``, ``own_claim``, ``next_offerable`` (statements), ``lock_item`` (the item and its batch's
settings in one locking statement, no thumbnail), ``cast`` (an item's votes in order) and ``settle``
(the aggregated final level, written with one UPDATE only when it changes). ``progress``, ``status``, ``votes`` and
``finals`` read inside a session the caller opened (``Store`` checks roles before calling them).
Times come back in UTC; "today" is the local calendar day. In ``status`` a batch's ``final`` counts
its items that are done: a final level (grade mode), or ``votes_needed`` votes (caption mode).
``check_batch`` refuses a batch name or setting the store or an export could not hold (a name is
1-64 characters, none of them '/', '\\' or a control character, not starting with '.' or
'-'; a ``StoreError``); ``check_vote`` refuses a level, scores or note the rules do not allow
(a ``VoteRefused``) and returns the checked scores.
"""
from __future__ import annotations

import re
from datetime import datetime, time as day_time, timezone

from sqlalchemy import and_, case, exists, func, or_, select, update
from sqlalchemy.engine import Row
from sqlalchemy.orm import Session

from annotate.aggregate import final_level, final_scores
from annotate.db import SCORE_COLUMNS, Batch, Claim, Item, Skip, StoreError, User, Vote, utcnow

MODES, TIE_POLICIES = ("grade", "caption"), ("adjudicate", "median")
BATCH_NAME = re.compile(r"[^/\\\x00-\x1f\x7f.\-][^/\\\x00-\x1f\x7f]{0,63}")


class VoteRefused(ValueError):
    """A vote (or undo, skip) the rules refuse; the message says why."""


def check_batch(name: str, votes_per_item: int, tie_policy: str, mode: str) -> None:
    if not isinstance(name, str) or not BATCH_NAME.fullmatch(name):
        raise StoreError(f"batch name {name!r:.80} must be 1-64 characters without '/', '\\' or control "
                         "characters, not starting with '.' or '-'")
    if mode not in MODES or tie_policy not in TIE_POLICIES or not 1 <= votes_per_item <= 20:
        raise StoreError(f"a batch takes mode {MODES}, tie_policy {TIE_POLICIES}, votes_per_item 1..20")


def check_vote(mode: str, level: int | None, scores: dict | None, note: str | None = None) -> dict:
    def one_to_five(value) -> bool:
        return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 5
    if level is not None and not one_to_five(level):
        raise VoteRefused(f"level must be 1..5, got {level!r}")
    if mode == "grade" and level is None:
        raise VoteRefused("a grade vote needs a level 1..5")
    if note is not None and "\x00" in note:
        raise VoteRefused("a note cannot hold a NUL character")
    scores = dict(scores or {})
    if set(scores) - set(SCORE_COLUMNS) or not all(one_to_five(v) for v in scores.values()):
        raise VoteRefused(f"caption scores take the criteria {', '.join(SCORE_COLUMNS)}, each 1..5; got {scores!r}")
    if mode == "caption" and set(scores) != set(SCORE_COLUMNS):
        raise VoteRefused(f"a caption vote needs all four scores ({', '.join(SCORE_COLUMNS)})")
    return scores


def n_votes(item_id):
    return select(func.count()).select_from(Vote).where(Vote.item_id == item_id)


def others_claims(item_id, user_id: int, now: datetime):
    return select(func.count()).select_from(Claim).where(Claim.item_id == item_id, Claim.user_id != user_id, Claim.expires_at > now)


def offerable(user_id: int, now: datetime):
    return and_(Item.final_level.is_(None),
                ~exists().where(Vote.item_id == Item.id, Vote.user_id == user_id),
                ~exists().where(Skip.item_id == Item.id, Skip.user_id == user_id),
                n_votes(Item.id).scalar_subquery() + others_claims(Item.id, user_id, now).scalar_subquery() < Item.votes_needed)


def batch_filter(batch: str | None, mode: str | None) -> list:
    """Criteria on ``Item`` for the batch of that name and the batches of that mode (None: any)."""
    where = [Item.batch_id == select(Batch.id).where(Batch.name == batch).scalar_subquery()] if batch is not None else []
    return where + ([Item.batch_id.in_(select(Batch.id).where(Batch.mode == mode))] if mode is not None else [])


def own_claim(user_id: int, where: list):
    """The item of the user's oldest claim on a not-final item matching ``where``."""
    return (select(Item).join(Claim, Claim.item_id == Item.id)
            .where(Claim.user_id == user_id, Item.final_level.is_(None), *where).order_by(Claim.id).limit(1))


def next_offerable(user_id: int, now: datetime, where: list):
    """The first offerable item matching ``where``, locked (PostgreSQL ``FOR UPDATE SKIP LOCKED``)."""
    return select(Item).where(offerable(user_id, now), *where).order_by(Item.id).limit(1).with_for_update(skip_locked=True, of=Item)


def lock_item(s: Session, item_id: int) -> Row:
    """The item (id, batch_id, final_level, votes_needed, adjudicated) and its batch's settings (mode,
    votes_per_item, tie_policy, unsafe_veto), in one statement that locks the item row (PostgreSQL
    ``FOR UPDATE OF items``; SQLite: the caller's BEGIN IMMEDIATE). No thumbnail is read."""
    row = s.execute(select(Item.id, Item.batch_id, Item.final_level, Item.votes_needed, Item.adjudicated, Batch.mode,
                           Batch.votes_per_item, Batch.tie_policy, Batch.unsafe_veto)
                    .join(Batch, Batch.id == Item.batch_id).where(Item.id == item_id).with_for_update(of=Item)).one_or_none()
    if row is None:
        raise VoteRefused(f"there is no item {item_id}")
    return row


def cast(s: Session, item_id: int) -> list[tuple[int, int | None]]:
    """The item's votes as (user_id, level), in the order cast."""
    return [tuple(row) for row in s.execute(select(Vote.user_id, Vote.level).where(Vote.item_id == item_id).order_by(Vote.id))]


def settle(s: Session, item: Row, levels: list[int]) -> int | None:
    """Store the final level, adjudication and votes needed that ``levels`` (all the item's votes, in order
    cast) give a grade-mode item (one UPDATE, only when they change); returns the final level."""
    if item.mode != "grade":
        return item.final_level
    settled = final_level(levels, item.votes_per_item, item.tie_policy, item.unsafe_veto)
    if settled != (item.final_level, bool(item.adjudicated), item.votes_needed):
        s.execute(update(Item).where(Item.id == item.id).values(final_level=settled[0], adjudicated=settled[1],
                                                                votes_needed=settled[2]))
    return settled[0]


def progress(s: Session, user_id: int, batch_id: int | None) -> dict:
    """done_today, done_total (this user's votes) and left (items this user could still claim)."""
    local_now = datetime.now().astimezone()
    today = datetime.combine(local_now.date(), day_time(), local_now.tzinfo).astimezone(timezone.utc)
    in_batch = [Item.batch_id == batch_id] if batch_id is not None else []
    mine = select(func.count()).select_from(Vote).join(Item, Item.id == Vote.item_id).where(Vote.user_id == user_id, *in_batch)
    left = select(func.count()).select_from(Item).where(offerable(user_id, utcnow()), *in_batch)
    return {"done_today": s.scalar(mine.where(Vote.created >= today)), "done_total": s.scalar(mine), "left": s.scalar(left)}


def status(s: Session, user: User, batch_id: int | None) -> dict:
    result = {"user": user.name, **progress(s, user.id, batch_id)}
    stored = s.get(User, user.id)
    if stored is None or stored.role != "lead":
        return result
    done = or_(Item.final_level.is_not(None),
               and_(Batch.mode == "caption", n_votes(Item.id).scalar_subquery() >= Item.votes_needed))
    items = {row[0]: row[1:] for row in s.execute(
        select(Item.batch_id, func.count(), func.sum(case((done, 1), else_=0)), func.sum(Item.votes_needed))
        .join(Batch, Batch.id == Item.batch_id).group_by(Item.batch_id))}
    votes = dict(s.execute(select(Item.batch_id, func.count()).join(Vote, Vote.item_id == Item.id).group_by(Item.batch_id)).all())
    result["batches"] = []
    for b in s.scalars(select(Batch).order_by(Batch.id)):
        if batch_id in (None, b.id):
            n_items, n_final, needed = items.get(b.id, (0, 0, 0))
            result["batches"].append({"name": b.name, "mode": b.mode, "items": n_items, "final": n_final or 0,
                                      "votes": votes.get(b.id, 0), "votes_left": max((needed or 0) - votes.get(b.id, 0), 0)})
    result["annotators"] = [{"name": u.name, "role": u.role, **progress(s, u.id, batch_id)}
                            for u in s.scalars(select(User).order_by(User.name))]
    return result


def _batch_rows(s: Session, batch: Batch):
    """The batch's items (no thumbnails) by row_key, and its votes with annotator names in order cast."""
    items = s.execute(select(Item.id, Item.row_key, Item.image_id, Item.source_uri, Item.unit, Item.final_level,
                             Item.adjudicated, Item.votes_needed).where(Item.batch_id == batch.id).order_by(Item.row_key)).all()
    votes = s.execute(select(Vote, User.name).join(User, User.id == Vote.user_id).join(Item, Item.id == Vote.item_id)
                      .where(Item.batch_id == batch.id).order_by(Vote.id)).all()
    return items, votes


def _scores(vote: Vote) -> dict:
    return {c: getattr(vote, c) for c in SCORE_COLUMNS if getattr(vote, c) is not None}


def votes(s: Session, batch: Batch) -> list[tuple]:
    items, cast = _batch_rows(s, batch)
    keys = {item.id: (item.row_key, item.image_id) for item in items}
    rows = [(*keys[v.item_id], name, v.level, _scores(v), v.created if v.created.tzinfo else v.created.replace(tzinfo=timezone.utc))
            for v, name in cast]
    return sorted(rows, key=lambda row: row[0])


def finals(s: Session, batch: Batch) -> list[dict]:
    items, cast = _batch_rows(s, batch)
    by_item: dict[int, list] = {}
    for v, name in cast:
        by_item.setdefault(v.item_id, []).append((name, v))
    result = []
    for item in items:
        mine = by_item.get(item.id, [])
        caption_votes = [{"annotator": name, **_scores(v)} for name, v in mine if len(_scores(v)) == len(SCORE_COLUMNS)]
        scores = final_scores([{c: cv[c] for c in SCORE_COLUMNS} for cv in caption_votes], batch.votes_per_item)
        result.append({"row_key": item.row_key, "image_id": item.image_id, "source_uri": item.source_uri, "unit": item.unit,
                       "level": item.final_level, "adjudicated": item.adjudicated, "votes_needed": item.votes_needed,
                       "votes": [(name, v.level) for name, v in mine], "scores": scores, "caption_votes": caption_votes})
    return result
