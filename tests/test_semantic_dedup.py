"""Semantic dedup (curate.dedup.semantic) and CLIP confirmation of near pairs (curate.dedup.clip_confirm).

Synthetic embeddings stand in for CLIP (the tiny random open_clip model cannot tell an edited
pair from a copy: with it this is plumbing, which is what is checked here).
"""
from __future__ import annotations

import hashlib

import numpy as np
import pyarrow as pa
import pytest
import yaml

import curate
from cases import TEST_CONFIG
from curate.config import CurateConfig, SemanticConfig
from curate.dedup import dedup_decisions, semantic
from curate.dedup.clip_confirm import confirmed_labels
from curate.dedup.clusters import SearchStats, UnionFind, components
from curate.dedup.graph import HashGraph
from curate.dedup.semantic import cosine_join, embedding_arrays, semantic_duplicates
from curate.finalize import Plan, finalize
from curate.groups import GroupWriter
from curate.manifest import read_manifest, units_of
from curate.store import Store
from finalize_inputs import HASHES, write_output

D = 32


@pytest.fixture(autouse=True)
def _no_report(monkeypatch):
    """The report (plots) is not under test here and costs most of a small finalize's time."""
    import curate.finalize

    monkeypatch.setattr(curate.finalize, "_write_report", lambda *args: None)


def _unit(v: np.ndarray) -> np.ndarray:
    return v / np.linalg.norm(v, axis=-1, keepdims=True)


def _planted(seed: int, groups: int, size: int, distinct: int) -> tuple[np.ndarray, list[list[int]]]:
    """``groups`` groups of ``size`` near-identical vectors (cos > 0.99), then ``distinct`` random ones, shuffled."""
    rng = np.random.default_rng(seed)
    centres = _unit(rng.normal(size=(groups, D)))
    near = _unit(np.repeat(centres, size, axis=0) + 0.01 * rng.normal(size=(groups * size, D)))
    x = np.vstack([near, _unit(rng.normal(size=(distinct, D)))])
    perm = rng.permutation(len(x))
    where = np.argsort(perm)  # new position of each original row
    planted = [sorted(where[g * size : (g + 1) * size].tolist()) for g in range(groups)]
    return x[perm].astype(np.float16), planted


def _semantic(x, rank=None, cfg=SemanticConfig(enabled=True), index=None, keys=None):
    n = len(x)
    ids = [f"id{i:04d}" for i in range(n)]
    rank = np.zeros(n) if rank is None else rank
    index = np.arange(n) if index is None else index
    keys = np.arange(n) if keys is None else keys
    return semantic_duplicates(x, index, rank, keys, ids, cfg)


def _groups(reasons, dup_of) -> list[list[int]]:
    by: dict[str, list[int]] = {}
    for i, (r, of) in enumerate(zip(reasons, dup_of)):
        if r:
            assert r == "semantic_duplicate"
            by.setdefault(of, []).append(i)
    return sorted(sorted([int(of[2:]), *rows]) for of, rows in by.items())


def test_planted_groups_are_found_and_distinct_rows_are_not_merged():
    x, planted = _planted(0, groups=6, size=4, distinct=80)
    reasons, dup_of = _semantic(x)
    assert _groups(reasons, dup_of) == sorted(planted)
    assert sum(r is not None for r in reasons) == 6 * 3
    # random directions in 32 dims are far apart: nothing among them is a duplicate
    reasons, _ = _semantic(_unit(np.random.default_rng(1).normal(size=(200, D))).astype(np.float16))
    assert not any(reasons)


def test_several_kmeans_clusters_still_find_the_planted_groups():
    x, planted = _planted(2, groups=10, size=3, distinct=170)
    cfg = SemanticConfig(enabled=True, cluster_rows=40)  # k = 5 clusters
    reasons, dup_of = _semantic(x, cfg=cfg)
    assert _groups(reasons, dup_of) == sorted(planted)  # near-identical vectors fall into one cluster
    assert _semantic(x, cfg=cfg) == (reasons, dup_of)  # fixed seed: the same decisions


def test_keeper_is_highest_rank_then_smallest_row_key():
    rng = np.random.default_rng(3)
    c = _unit(rng.normal(size=D))
    x = _unit(np.stack([c + 0.005 * rng.normal(size=D) for _ in range(4)])).astype(np.float16)
    reasons, dup_of = _semantic(x, rank=np.array([0.0, 2.0, 2.0, 1.0]), keys=np.array([40, 30, 20, 10]))
    assert reasons == ["semantic_duplicate", "semantic_duplicate", None, "semantic_duplicate"]  # rank 2, row key 20
    assert dup_of == [None if r is None else "id0002" for r in reasons]
    reasons, dup_of = _semantic(x, keys=np.array([40, 30, 20, 10]))  # all ranks equal: the smallest row key
    assert reasons[3] is None and set(dup_of[:3]) == {"id0003"}


def test_rows_without_an_embedding_take_no_part():
    x, planted = _planted(4, groups=2, size=3, distinct=10)
    index = np.arange(len(x))
    dropped = planted[0][0]
    index[dropped] = -1  # e.g. a row the model pass could not measure
    reasons, _ = _semantic(x, index=index)
    assert reasons[dropped] is None
    assert _groups(reasons, _semantic(x, index=index)[1]) == sorted([planted[0][1:], planted[1]])


def test_blocked_search_equals_the_unblocked_one(monkeypatch):
    x, _ = _planted(5, groups=12, size=5, distinct=60)
    # a chain (a ~ b ~ c with a, c below the threshold) crossing block edges
    whole = _semantic(x, cfg=SemanticConfig(enabled=True, threshold=0.9))
    monkeypatch.setattr(semantic, "BLOCK", 7)
    assert _semantic(x, cfg=SemanticConfig(enabled=True, threshold=0.9)) == whole
    # and cosine_join's components equal those of every pair of the full similarity matrix
    xs = _unit(x.astype(np.float32))
    sims = xs @ xs.T
    i, j = np.nonzero(np.triu(sims >= 0.9, k=1))
    uf = UnionFind(len(x), SearchStats())
    cosine_join(x, 0.9, uf, np.arange(len(x)))
    assert np.array_equal(uf.find(np.arange(len(x))), components(len(x), np.stack([i, j], axis=1)))


def test_embedding_arrays_reads_nulls_and_checks_lengths():
    col = pa.array([[1.0, 0.0], None, [0.0, 2.0], [], [0.0, 0.0]], pa.list_(pa.float16()))
    vectors, index = embedding_arrays(col)
    assert index.tolist() == [0, -1, 1, -1, -1]  # null, empty and all-zero rows have none
    assert vectors.dtype == np.float16 and vectors[index[2]].tolist() == [0.0, 2.0]
    with pytest.raises(ValueError, match="lengths"):
        embedding_arrays(pa.array([[1.0, 0.0], [1.0, 0.0, 0.0]], pa.list_(pa.float16())))


# CLIP confirmation of pHash pairs ------------------------------------------------------------


def _edited_pair():
    """Rows 0, 1: near-identical hashes (one bit apart); row 2: a re-encoded copy of row 0 (two bits off)."""
    phash = np.array([[0xF0F0_1234_5678_9ABC], [0xF0F0_1234_5678_9ABD], [0xF0F0_1234_5678_9AB8 ^ 0x100]], dtype=np.uint64)
    rng = np.random.default_rng(6)
    a, b = _unit(rng.normal(size=D)), _unit(rng.normal(size=D))  # the edit: another subject, CLIP far
    vectors = _unit(np.stack([a, b, a + 0.01 * rng.normal(size=D)])).astype(np.float16)
    return phash, vectors


def _near(phash, embedding, clip_confirm=0.9):
    cfg = CurateConfig().dedup.model_copy(update={"clip_confirm": clip_confirm, "radius": 4, "color_radius": None})
    n = len(phash)
    return dedup_decisions([f"id{i}" for i in range(n)], phash, np.ones(n, bool), np.array([2.0, 1.0, 0.0]),
                           np.ones(n, bool), cfg, embedding=embedding)


def test_edited_pair_is_not_merged_when_embeddings_exist():
    phash, vectors = _edited_pair()
    assert _near(phash, (vectors, np.arange(3))) == ([None, None, "near_duplicate"], [None, None, "id0"])


def test_edited_pair_is_merged_without_embeddings_as_today():
    phash, vectors = _edited_pair()
    today = ([None, "near_duplicate", "near_duplicate"], [None, "id0", "id0"])
    assert _near(phash, None) == today
    assert _near(phash, (vectors, np.full(3, -1))) == today  # no row has one
    assert _near(phash, (vectors, np.arange(3)), clip_confirm=None) == today  # confirmation off
    # row 1 without an embedding: its pairs are judged by the hashes alone
    assert _near(phash, (vectors, np.array([0, -1, 2]))) == today


def test_confirmed_labels_equal_components_of_the_confirmed_pair_graph():
    rng = np.random.default_rng(8)
    n = 60
    bits = rng.integers(0, 64, n)
    phash = np.array([0xABCD_0000_1111_2222 ^ (1 << int(b)) for b in bits], dtype=np.uint64).reshape(n, 1)
    phash[40:50, 0] = [0x1234_5678_0000_FFFF ^ (1 << int(b)) for b in bits[40:50]]  # a second hash cluster
    phash[50:] = rng.integers(0, 2**63, size=(10, 1), dtype=np.uint64)  # rows far from both
    centres = _unit(rng.normal(size=(3, D)))
    vectors = _unit(centres[rng.integers(0, 3, n)] + 0.02 * rng.normal(size=(n, D))).astype(np.float16)
    index = np.arange(n)
    index[[40, 41, 42, 55]] = -1  # without an embedding: joined by the hashes alone
    graph = HashGraph.from_rows(phash, None, 4)
    hash_label = components(n, np.argwhere(np.triu(np.bitwise_count(phash ^ phash.T) <= 4, k=1)))
    got = confirmed_labels(graph, hash_label, vectors, index, 0.9)
    xs = _unit(vectors.astype(np.float32))
    both = (index[:, None] >= 0) & (index[None, :] >= 0)
    ok = (np.bitwise_count(phash ^ phash.T) <= 4) & (~both | (xs @ xs.T >= 0.9))
    assert np.array_equal(got, components(n, np.argwhere(np.triu(ok, k=1))))
    assert len(set(got[:40].tolist())) > 1  # CLIP split the first hash cluster
    assert len(set(got[40:50].tolist())) == 1  # rows without embeddings bridge the second, as hashes alone would


# End to end: finalize over a measured output with an embeddings group --------------------------


def _row(i: int, rng, **update) -> dict:
    row = {h: int(rng.integers(0, 2**63)) for h in HASHES}
    row.update(id=hashlib.sha256(f"sem-{i}".encode()).hexdigest(), width=800, height=600, image_format="JPEG",
               stat_quality=90, stat_upscale=1.0, stat_overlay=0.0, stat_colorhash=int(rng.integers(0, 2**40)))
    row.update(update)
    return row


def _config(**dedup) -> CurateConfig:
    raw = yaml.safe_load(TEST_CONFIG)
    raw["dedup"].update(dedup)
    return CurateConfig.model_validate(raw)


def test_finalize_confirms_near_pairs_and_finds_semantic_duplicates(tmp_path):
    rng = np.random.default_rng(9)
    a = _row(0, rng, width=1600, height=1200)  # the original: most pixels, kept
    copy = _row(1, rng, **{h: a[h] ^ 0b1 for h in HASHES}, stat_colorhash=a["stat_colorhash"])  # re-encoded copy
    edited = _row(2, rng, **{h: a[h] ^ 0b11 for h in HASHES}, stat_colorhash=a["stat_colorhash"])  # same layout, new subject
    # no embedding, hashes 3 bits from the original and 5 from the edit (radius 4): a pair with a row
    # without an embedding is judged by the hashes, so one within reach of the edit would chain it in
    unmeasured = _row(5, rng, **{h: a[h] ^ 0b11100 for h in HASHES}, stat_colorhash=a["stat_colorhash"])
    rows = [a, copy, edited, _row(3, rng, width=1000), _row(4, rng), unmeasured, _row(6, rng, fail_rule=True)]
    rows += [_row(i, rng) for i in range(7, 12)]
    plan = write_output(tmp_path / "out", rows, unit_rows=4)
    out = str(tmp_path / "out")
    finalize(Store.open(out), plan, _config(semantic={"enabled": True}))  # no embeddings yet: hashes only

    def decisions() -> list[tuple]:
        t = curate.open(out).read(["id", "keep", "reasons", "dup_of"])
        ids = {r["id"]: i for i, r in enumerate(rows)}
        return [(ids[r["id"]], r["reasons"], ids.get(r["dup_of"])) for r in t.to_pylist()]

    today = decisions()
    assert today[1] == (1, ["near_duplicate"], 0) and today[2] == (2, ["near_duplicate"], 0)
    assert today[4] == (4, [], None)

    emb = _unit(rng.normal(size=(len(rows), D)))
    emb[1] = _unit(emb[0] + 0.01 * rng.normal(size=D))  # the copy: CLIP near its original
    emb[4] = _unit(emb[3] + 0.01 * rng.normal(size=D))  # other hashes, the same picture to CLIP
    emb[6] = emb[3]  # fails a rule: never a semantic duplicate
    values = [None if i == 5 else e.astype(np.float16).tolist() for i, e in enumerate(emb)]
    writer = GroupWriter(out, "embeddings", "clip-test", "test clip", {"model": "synthetic", "dim": D})
    for unit, lo in zip(writer.units, range(0, len(rows), 4)):
        keys = writer.output.read_unit(unit, ["row_key"]).column("row_key")
        writer.write(unit, pa.table({"row_key": keys, "clip_embedding": pa.array(values[lo : lo + unit.rows],
                                                                                 pa.list_(pa.float16()))}))
    manifest = writer.commit()

    def again(**dedup) -> dict:
        m = read_manifest(Store.open(out))
        replan = Plan(units=units_of(m), groups=m["groups"], current=m["current"], generation=m["generation"] + 1,
                      input_desc=m.get("input", ""), measured_with={}, stage="curate retune")
        return finalize(Store.open(out), replan, _config(**dedup))

    assert "embeddings" in manifest["current"]
    result = again(semantic={"enabled": True})
    assert decisions() == [
        (0, [], None),
        (1, ["near_duplicate"], 0),  # CLIP agrees with the hashes
        (2, [], None),  # the edited pair: hashes near, CLIP far: kept
        (3, [], None),  # kept: more pixels than its semantic copy
        (4, ["semantic_duplicate"], 3),
        (5, ["near_duplicate"], 0),  # no embedding: hashes alone, as before
        (6, ["too_small"], None),
        *[(i, [], None) for i in range(7, 12)],
    ]
    assert result["reasons"] == {"near_duplicate": 2, "semantic_duplicate": 1, "too_small": 1}
    assert result["decided_with"]["embeddings"] == {"version": "clip-test", "clip_confirm": True, "semantic": True}
    # both off: today's decisions, with the embeddings present
    again(clip_confirm=None)
    assert decisions() == today
    # above dedup.distributed_above (the staged path carries no embeddings): hashes only, and the manifest says so
    staged = again(semantic={"enabled": True}, distributed_above=0)
    assert decisions() == today
    assert staged["decided_with"]["embeddings"] == {"version": "clip-test", "clip_confirm": False, "semantic": False}
