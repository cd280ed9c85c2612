"""Decisions over stored stats: thresholds (``config.rules``) and duplicates.

Contract: ``decide(table, config)`` takes rows in their deterministic order with the
schema's stat columns and ``reasons`` (decode failures recorded by the stats stage; any
earlier rule or duplicate reasons are discarded and recomputed) and returns the table with
``keep``, ``reasons`` and ``dup_of`` set. Reasons are ordered: decode failure, rules in
config order, then ``exact_duplicate`` / ``near_duplicate`` / ``semantic_duplicate``. Only
rows that pass every rule take part in dedup, so a blurry copy never displaces a sharp one.
No image is read. Where the table has ``clip_embedding`` (finalize reads it only when
``dedup.clip_confirm`` or ``dedup.semantic.enabled`` asks), near pairs of embedded rows are
confirmed by CLIP cosine and, with ``dedup.semantic.enabled``, the rows left after exact and
near dedup are searched for semantic duplicates (``curate.dedup.semantic``).
``prior`` (id and hash columns of rows earlier runs kept, ``curate.dedup.index``) takes part
in dedup as rows already kept: copies of them are duplicates pointing at their ids.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from curate.config import CurateConfig, Rule
from curate.dedup import dedup_decisions, near_pairs
from curate.dedup.graph import NO_COLOUR
from curate.dedup.keeper import table_rank
from curate.dedup.semantic import embedding_arrays, semantic_duplicates
from curate.filters.colour import mirror_colour
from curate.reasons import DECODE_FAILURES
from curate.schema import SCHEMA, set_column

# Near duplicates: entry x of one row against entry y of the other when NEAR_DUP_COMPARED[x][y];
# pHashes within dedup.radius and the dHashes of the same two frames within dedup.confirm_radius.
# Whole frame against whole frame, centre crops and mirror; crops never against crops or mirror.
# And the colour signatures (stat_colorhash, per entry: the whole frame's, mirrored for the
# mirror entry) within dedup.color_radius (curate.filters.colour): every check must pass.
NEAR_DUP_HASHES = ("stat_phash", "stat_phash_c95", "stat_phash_c90", "stat_phash_mirror")
NEAR_DUP_CONFIRM = ("stat_dhash", "stat_dhash_c95", "stat_dhash_c90", "stat_dhash_mirror")
NEAR_DUP_COLOUR = "stat_colorhash"
NEAR_DUP_COMPARED = np.array(
    [[True, True, True, True], [True, False, False, False], [True, False, False, False], [True, False, False, False]]
)


def rule_violations(table: pa.Table, rule: Rule) -> np.ndarray:
    """Boolean mask of rows whose ``rule.column`` is outside [min, max], or not one of ``rule.values``.

    A null value (a row the stage never measured) violates the rule when ``rule.on_null`` is
    ``reject`` (the default: never silently passed) and passes when it is ``pass``.
    A column the table lacks reads as all null.
    """
    if rule.column not in table.column_names:  # a group never written (a model stage that did not run): all null
        table = table.append_column(SCHEMA.field(rule.column), pa.nulls(table.num_rows, SCHEMA.field(rule.column).type))
    if rule.values is not None:
        column = table.column(rule.column)
        allowed = pc.is_in(column, value_set=pa.array(rule.values, column.type))  # false for a null
        allowed = np.asarray(allowed.to_numpy(zero_copy_only=False), dtype=bool)
        null = np.asarray(column.is_null().to_numpy(zero_copy_only=False), dtype=bool)
        return ~allowed & ~null if rule.on_null == "pass" else ~allowed | null
    values = pc.fill_null(table.column(rule.column).cast(pa.float64()), np.nan).to_numpy(zero_copy_only=False)
    bad = np.isnan(values) if rule.on_null == "reject" else np.zeros(len(values), dtype=bool)
    with np.errstate(invalid="ignore"):
        if rule.min is not None:
            bad |= values < rule.min
        if rule.max is not None:
            bad |= values > rule.max
    return bad


def decode_reasons(table: pa.Table) -> list[list[str]]:
    return [[r for r in (rs or []) if r in DECODE_FAILURES] for rs in table.column("reasons").to_pylist()]


def hash_arrays(table: pa.Table) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Near-dup hashes ``(n, k)``, confirm hashes ``(n, k)`` and whether a row has a hash at all."""
    phash_col = table.column("stat_phash")
    has_phash = ~np.asarray(phash_col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    # A file from before the crop/mirror hashes: the whole-frame hash stands in; before the
    # dHashes: 0 (such rows confirm only against each other).
    phash, confirm = (
        np.stack(
            [
                pc.fill_null(pc.coalesce(table.column(name), fallback), 0).to_numpy(zero_copy_only=False).astype(np.uint64)
                for name in names
            ],
            axis=1,
        )
        for names, fallback in ((NEAR_DUP_HASHES, phash_col), (NEAR_DUP_CONFIRM, table.column("stat_dhash")))
    )
    return phash, confirm, has_phash


def colour_arrays(table: pa.Table) -> np.ndarray:
    """Colour signature per near-dup entry ``(n, k)`` (``NO_COLOUR`` where a row, or the file, has none)."""
    n, k = table.num_rows, len(NEAR_DUP_HASHES)
    if NEAR_DUP_COLOUR not in table.column_names:
        return np.full((n, k), NO_COLOUR, dtype=np.uint64)
    col = table.column(NEAR_DUP_COLOUR)
    missing = np.asarray(col.is_null().to_numpy(zero_copy_only=False), dtype=bool)
    sig = pc.fill_null(col, 0).to_numpy(zero_copy_only=False).astype(np.uint64)
    out = np.stack([sig] * (k - 1) + [mirror_colour(sig)], axis=1)  # the last entry is the mirror's
    out[missing] = NO_COLOUR
    return out


def rule_reasons(table: pa.Table, config: CurateConfig) -> list[list[str]]:
    """Per row: its decode failure, then the reason of every rule it violates, in config order."""
    reasons = decode_reasons(table)
    decoded = np.array([not r for r in reasons], dtype=bool)  # rules judge only rows that decoded
    for rule in config.rules:
        for i in np.flatnonzero(rule_violations(table, rule) & decoded):
            if str(rule.reason) not in reasons[i]:
                reasons[i].append(str(rule.reason))
    return reasons


def duplicate_reasons(
    table: pa.Table, config: CurateConfig, pair_finder: Callable = near_pairs, prior: pa.Table | None = None
) -> tuple[list[str | None], list[str | None]]:
    """Duplicate reason and ``dup_of`` per row of ``table``, all of whose rows take part (eligible)."""
    phash, confirm, has_phash = hash_arrays(table)
    colour = colour_arrays(table)
    rank = table_rank(table, config.dedup.keeper)  # which copy of a near-duplicate group is kept
    ids = table.column("id").to_pylist()
    eligible = np.ones(table.num_rows, dtype=bool)
    n_prior = 0 if prior is None else prior.num_rows
    if n_prior:  # rows kept by earlier runs (curate.dedup.index): first in order, always the keepers
        p_phash, p_confirm, p_has = hash_arrays(prior)
        phash, confirm = np.concatenate([p_phash, phash]), np.concatenate([p_confirm, confirm])
        colour = np.concatenate([colour_arrays(prior), colour])
        has_phash = np.concatenate([p_has, has_phash])
        rank = np.concatenate([np.full(n_prior, np.inf), np.asarray(rank, dtype=np.float64)])
        eligible = np.concatenate([np.ones(n_prior, dtype=bool), eligible])
        ids = prior.column("id").to_pylist() + ids
    embedding = None
    if "clip_embedding" in table.column_names:  # prior rows (the dedup index) carry none
        vectors, index = embedding_arrays(table.column("clip_embedding"))
        embedding = vectors, np.concatenate([np.full(n_prior, -1, dtype=np.int64), index])
    dup_reason, dup_of = dedup_decisions(
        ids, phash, has_phash, rank, eligible, config.dedup, pair_finder, confirm, NEAR_DUP_COMPARED, colour, embedding,
    )
    dup_reason, dup_of = dup_reason[n_prior:], dup_of[n_prior:]
    if embedding is not None and config.dedup.semantic.enabled:
        left = np.array([r is None for r in dup_reason], dtype=bool)  # survivors of exact and near dedup
        index = np.where(left, embedding[1][n_prior:], -1)
        sem_reason, sem_of = semantic_duplicates(embedding[0], index, rank[n_prior:], table.column("row_key").to_numpy(),
                                                 ids[n_prior:], config.dedup.semantic)
        for i in np.flatnonzero(left & (index >= 0)).tolist():
            if sem_reason[i]:
                dup_reason[i], dup_of[i] = sem_reason[i], sem_of[i]
    return dup_reason, dup_of


def decide(table: pa.Table, config: CurateConfig, pair_finder: Callable = near_pairs, prior: pa.Table | None = None) -> pa.Table:
    reasons = rule_reasons(table, config)
    eligible = np.flatnonzero([not r for r in reasons])
    dup_of: list[str | None] = [None] * table.num_rows
    if len(eligible):
        dup_reason, eligible_dup_of = duplicate_reasons(table.take(eligible), config, pair_finder, prior)
        for i, reason, of in zip(eligible.tolist(), dup_reason, eligible_dup_of):
            if reason:
                reasons[i].append(str(reason))
                dup_of[i] = of
    table = set_column(table, "reasons", reasons)
    table = set_column(table, "keep", [not r for r in reasons])
    return set_column(table, "dup_of", dup_of)
