"""Inter-annotator agreement of a batch: pure numpy, no database.

Contract:
- ``fleiss_kappa(counts)``: ``counts`` is an items × categories table of how many annotators
  put each item in each category; every row must have the same total (>= 2). Fleiss (1971).
- ``krippendorff_alpha_ordinal(reliability)``: ``reliability`` is annotators × items, ``nan``
  where an annotator did not grade an item; units with fewer than two values are not pairable
  and do not count. Ordinal difference function of Krippendorff (2011), computed from the
  coincidence matrix (values only matter by their order).
  Both return ``nan`` where the coefficient is undefined (no pairable values, or every value
  the same so no disagreement is expected); malformed input is an ``AgreementError``.
- ``votes`` below are ``(item_key, annotator, level)`` tuples in the order they were cast (one
  per item and annotator; a duplicate is an ``AgreementError``); a level of ``None`` is a
  caption-only vote and is ignored. ``finals`` maps item_key → final level (``None`` or absent:
  not final). Only votes on final items count for the per-annotator measures, and an annotator
  with no such vote is absent from their results:
  - ``consensus_agreement(votes, finals)``: annotator → share of their votes equal to the final;
  - ``confusion(votes, finals)``: annotator → 5×5 int array, row = final level − 1,
    column = the annotator's level − 1;
  - ``drift(votes, finals, max_disagreement=0.4, min_votes=20)``: annotators (sorted) with at
    least ``min_votes`` votes on final items whose disagreement (1 − agreement) is above
    ``max_disagreement``.
- ``summary(votes, finals, raters_per_item=None, …)``: a plain, JSON-ready dict for the CLI.
  Fleiss' kappa needs the same number of raters per item: it uses ``raters_per_item`` (default:
  the most common vote count among items with >= 2 votes, the smaller on a tie) and the first that many votes of
  each item that has them, so adjudicated items count with their original panel and items
  still short of votes (or closed early by a veto) are left out. Alpha uses every vote.
  Undefined coefficients are ``None``.
"""
from __future__ import annotations

from collections import Counter

import numpy as np

from annotate.aggregate import LEVELS


class AgreementError(ValueError):
    """Input that agreement cannot be computed from."""


def fleiss_kappa(counts: np.ndarray) -> float:
    table = np.asarray(counts, dtype=float)
    if table.ndim != 2 or table.shape[0] < 1 or table.shape[1] < 1:
        raise AgreementError(f"fleiss_kappa needs an items × categories table, got shape {table.shape}")
    if not np.all(np.isfinite(table)) or np.any(table < 0) or np.any(table != np.round(table)):
        raise AgreementError("fleiss_kappa needs non-negative integer counts")
    raters = table.sum(axis=1)
    if np.any(raters != raters[0]) or raters[0] < 2:
        raise AgreementError("fleiss_kappa needs the same number (>= 2) of ratings on every item")
    n = raters[0]
    per_item = (np.sum(table * table, axis=1) - n) / (n * (n - 1))
    observed = per_item.mean()
    shares = table.sum(axis=0) / table.sum()
    expected = float(np.sum(shares * shares))
    if expected >= 1.0:
        return float("nan")
    return float((observed - expected) / (1.0 - expected))


def krippendorff_alpha_ordinal(reliability: np.ndarray) -> float:
    data = np.asarray(reliability, dtype=float)
    if data.ndim != 2:
        raise AgreementError(f"krippendorff_alpha_ordinal needs annotators × items, got shape {data.shape}")
    if np.any(np.isinf(data)):
        raise AgreementError("krippendorff_alpha_ordinal: values must be finite or nan (missing)")
    present = ~np.isnan(data)
    pairable = present.sum(axis=0) >= 2
    data, present = data[:, pairable], present[:, pairable]
    if not present.any():
        return float("nan")
    values = np.unique(data[present])
    units = np.nonzero(present)[1]
    value_index = np.searchsorted(values, data[present])
    per_unit = np.zeros((data.shape[1], values.size))
    np.add.at(per_unit, (units, value_index), 1.0)
    weights = 1.0 / (per_unit.sum(axis=1) - 1.0)
    coincidence = (per_unit * weights[:, None]).T @ per_unit - np.diag((per_unit * weights[:, None]).sum(axis=0))
    marginals = coincidence.sum(axis=1)
    total = marginals.sum()
    through = np.cumsum(marginals)
    # sum of marginals from value c to value k inclusive, minus half of each end, squared
    spread = through[None, :] - through[:, None] + (marginals[:, None] - marginals[None, :]) / 2.0
    delta = spread * spread
    expected = float(np.sum(np.outer(marginals, marginals) * delta))
    if expected == 0.0:
        return float("nan")
    return float(1.0 - (total - 1.0) * np.sum(coincidence * delta) / expected)


def _level_votes(votes) -> list[tuple[object, object, int]]:
    seen = set()
    kept = []
    for item, annotator, level in votes:
        if (item, annotator) in seen:
            raise AgreementError(f"two votes of {annotator!r} on item {item!r}")
        seen.add((item, annotator))
        if level is None:
            continue
        if isinstance(level, bool) or not isinstance(level, (int, np.integer)) or level not in LEVELS:
            raise AgreementError(f"a level must be an integer 1..5, got {level!r} ({annotator!r}, item {item!r})")
        kept.append((item, annotator, int(level)))
    return kept


def _final_of(finals: dict, item) -> int | None:
    level = finals.get(item)
    if level is not None and (isinstance(level, bool) or not isinstance(level, (int, np.integer))
                              or level not in LEVELS):
        raise AgreementError(f"final level of item {item!r} must be 1..5 or None, got {level!r}")
    return level


def confusion(votes, finals: dict) -> dict:
    matrices: dict = {}
    for item, annotator, level in _level_votes(votes):
        final = _final_of(finals, item)
        if final is None:
            continue
        matrix = matrices.setdefault(annotator, np.zeros((len(LEVELS), len(LEVELS)), dtype=np.int64))
        matrix[final - 1, level - 1] += 1
    return {annotator: matrices[annotator] for annotator in sorted(matrices, key=str)}


def consensus_agreement(votes, finals: dict) -> dict:
    return {annotator: float(np.trace(matrix) / matrix.sum()) for annotator, matrix in confusion(votes, finals).items()}


def drift(votes, finals: dict, max_disagreement: float = 0.4, min_votes: int = 20) -> list:
    if not 0.0 <= max_disagreement <= 1.0:
        raise AgreementError(f"max_disagreement must be within 0..1, got {max_disagreement!r}")
    if min_votes < 1:
        raise AgreementError(f"min_votes must be at least 1, got {min_votes!r}")
    return [annotator for annotator, matrix in confusion(votes, finals).items()
            if matrix.sum() >= min_votes and (matrix.sum() - np.trace(matrix)) / matrix.sum() > max_disagreement]


def _by_item(level_votes) -> dict:
    items: dict = {}
    for item, annotator, level in level_votes:
        items.setdefault(item, []).append((annotator, level))
    return items


def _fleiss_table(by_item: dict, raters: int) -> np.ndarray:
    rows = [[sum(1 for _, level in cast[:raters] if level == category) for category in LEVELS]
            for cast in by_item.values() if len(cast) >= raters]
    return np.array(rows, dtype=np.int64).reshape(-1, len(LEVELS))


def _reliability(level_votes, by_item: dict) -> np.ndarray:
    annotators = sorted({annotator for _, annotator, _ in level_votes}, key=str)
    row = {annotator: i for i, annotator in enumerate(annotators)}
    data = np.full((len(annotators), len(by_item)), np.nan)
    for column, cast in enumerate(by_item.values()):
        for annotator, level in cast:
            data[row[annotator], column] = level
    return data


def _plain(value: float) -> float | None:
    return None if np.isnan(value) else round(float(value), 6)


def summary(votes, finals: dict, raters_per_item: int | None = None,
            max_disagreement: float = 0.4, min_votes: int = 20) -> dict:
    level_votes = _level_votes(votes)
    by_item = _by_item(level_votes)
    if raters_per_item is None:
        counts = Counter(len(cast) for cast in by_item.values() if len(cast) >= 2)
        raters_per_item = min(counts, key=lambda k: (-counts[k], k)) if counts else 2
    if raters_per_item < 2:
        raise AgreementError(f"raters_per_item must be at least 2, got {raters_per_item!r}")
    table = _fleiss_table(by_item, raters_per_item)
    kappa = fleiss_kappa(table) if len(table) else float("nan")
    alpha = krippendorff_alpha_ordinal(_reliability(level_votes, by_item)) if level_votes else float("nan")
    matrices = confusion(level_votes, finals)
    cast = Counter(annotator for _, annotator, _ in level_votes)
    annotators = {}
    for annotator in sorted(cast, key=str):
        matrix = matrices.get(annotator, np.zeros((len(LEVELS), len(LEVELS)), dtype=np.int64))
        on_final = int(matrix.sum())
        annotators[str(annotator)] = {
            "votes": cast[annotator],
            "votes_on_final": on_final,
            "agreement": round(float(np.trace(matrix)) / on_final, 6) if on_final else None,
            "confusion": matrix.tolist(),
        }
    return {
        "items": len(by_item),
        "votes": len(level_votes),
        "final_items": sum(1 for item in by_item if _final_of(finals, item) is not None),
        "raters_per_item": raters_per_item,
        "fleiss_items": int(len(table)),
        "fleiss_kappa": _plain(kappa),
        "krippendorff_alpha_ordinal": _plain(alpha),
        "annotators": annotators,
        "drift": [str(a) for a in drift(level_votes, finals, max_disagreement, min_votes)],
        "max_disagreement": max_disagreement,
        "min_votes": min_votes,
    }
