"""The final level (and caption scores) of one item from its votes: pure, no database.

Contract: ``final_level(levels, votes_per_item=3, tie_policy="adjudicate", unsafe_veto=False)``
takes the item's grade votes in the order they were cast (ints 1..5; anything else is an
``AggregateError``) and returns ``(final, adjudicated, votes_needed)``:
- ``final`` is the item's level, or ``None`` while more votes are needed;
- ``adjudicated`` is True only when an adjudicator's vote decided;
- ``votes_needed`` is how many votes the item needs in all (the store keeps it on the item).
Rules, in this order:
1. ``unsafe_veto``: a single vote of 1 (unsafe) decides as soon as it is cast, whatever the
   other votes and however many: ``(1, False, len(levels))`` (the item closes with the votes it has).
2. Fewer votes than ``votes_per_item``: ``(None, False, votes_per_item)``.
3. The panel is the first ``votes_per_item`` votes. A level with strictly more panel votes
   than any other level (a majority, or a plurality) decides: ``(level, False, votes_per_item)``.
4. No such level (all differ, or a tie between the most-voted levels):
   - ``"median"``: the median of the panel (the lower median for an even panel), not adjudicated;
   - ``"adjudicate"``: one more vote is needed, from a new annotator (``votes_needed`` =
     ``votes_per_item + 1``); ``None`` until it is cast, then that vote decides (adjudicated).
Apart from the veto, votes beyond those the item needs do not change the result.

``final_scores(score_votes, votes_per_item=3)`` aggregates the caption scores: each vote is a
dict with exactly the four criteria (completeness, correlation, hallucination, subjectivity;
ints 1..5). Per criterion the result is the median of all votes cast (the lower median for an
even count), so it is always one of the scores given; every criterion is ``None`` while fewer
than ``votes_per_item`` votes exist.
"""
from __future__ import annotations

from collections import Counter

LEVELS = (1, 2, 3, 4, 5)
UNSAFE = 1
TIE_POLICIES = ("adjudicate", "median")
CRITERIA = ("completeness", "correlation", "hallucination", "subjectivity")


class AggregateError(ValueError):
    """Votes or settings that cannot be aggregated."""


def _check_score(value, what: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value not in LEVELS:
        raise AggregateError(f"{what} must be an integer 1..5, got {value!r}")
    return value


def _check_settings(votes_per_item: int, tie_policy: str = "adjudicate") -> None:
    if isinstance(votes_per_item, bool) or not isinstance(votes_per_item, int) or votes_per_item < 1:
        raise AggregateError(f"votes_per_item must be a positive integer, got {votes_per_item!r}")
    if tie_policy not in TIE_POLICIES:
        raise AggregateError(f"tie_policy must be one of {TIE_POLICIES}, got {tie_policy!r}")


def lower_median(values: list[int]) -> int:
    """The median of ``values``; for an even count the lower of the two middle values."""
    ordered = sorted(values)
    return ordered[(len(ordered) - 1) // 2]


def plurality(levels: list[int]) -> int | None:
    """The level with strictly more votes than any other, or None when the top is shared."""
    ranked = Counter(levels).most_common()
    if len(ranked) > 1 and ranked[0][1] == ranked[1][1]:
        return None
    return ranked[0][0]


def final_level(levels: list[int], votes_per_item: int = 3, tie_policy: str = "adjudicate",
                unsafe_veto: bool = False) -> tuple[int | None, bool, int]:
    _check_settings(votes_per_item, tie_policy)
    levels = [_check_score(level, "a level") for level in levels]
    if unsafe_veto and UNSAFE in levels:
        return UNSAFE, False, len(levels)
    if len(levels) < votes_per_item:
        return None, False, votes_per_item
    panel = levels[:votes_per_item]
    decided = plurality(panel)
    if decided is not None:
        return decided, False, votes_per_item
    if tie_policy == "median":
        return lower_median(panel), False, votes_per_item
    needed = votes_per_item + 1
    if len(levels) < needed:
        return None, False, needed
    return levels[votes_per_item], True, needed


def final_scores(score_votes: list[dict[str, int]], votes_per_item: int = 3) -> dict[str, int | None]:
    _check_settings(votes_per_item)
    for vote in score_votes:
        if not isinstance(vote, dict) or set(vote) != set(CRITERIA):
            got = sorted(vote) if isinstance(vote, dict) else type(vote).__name__
            raise AggregateError(f"a caption vote needs exactly the criteria {list(CRITERIA)}, got {got}")
        for criterion in CRITERIA:
            _check_score(vote[criterion], f"caption score {criterion!r}")
    if len(score_votes) < votes_per_item:
        return {criterion: None for criterion in CRITERIA}
    return {criterion: lower_median([vote[criterion] for vote in score_votes]) for criterion in CRITERIA}
