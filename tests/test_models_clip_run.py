"""``curate run`` with CLIP (a tiny random open_clip model from config), the aesthetic head
(a random MLP saved in the published checkpoint format), CLIP confirmation of near-dup pairs
and semantic dedup, end to end on local Ray. With random weights this checks the plumbing
(groups, shapes, dtypes, copies, values equal to the head run directly, confirmation acting on
decisions), not the models' judgement.
"""
from __future__ import annotations

import json

import numpy as np
import pytest

import torch  # noqa: E402 -- make setup installs the models extra: missing is a failure, not a skip
import open_clip  # noqa: E402,F401

import curate  # noqa: E402
from cases import TEST_CONFIG, cases, write_folder  # noqa: E402
from curate.config import load_config  # noqa: E402
from curate.pipeline import run  # noqa: E402
from curate.retune import retune  # noqa: E402
from test_models_clip import TINY, published_aesthetic  # noqa: E402

pytestmark = pytest.mark.ray


# One stats actor: the CPU pass is not what this module checks, and on 2 CPUs each actor is one
# more worker process to start.
STATS_ACTORS = ("stats: {num_cpus: 0.5, batch_size: 4, actors: 2}", "stats: {num_cpus: 0.5, batch_size: 4, actors: 1}")
assert STATS_ACTORS[0] in TEST_CONFIG


def _config(tmp, clip_confirm: float, semantic: float) -> str:
    return (TEST_CONFIG.replace(*STATS_ACTORS).replace("dedup: {exact: true, near: true, radius: 4}",
                                f"dedup: {{exact: true, near: true, radius: 4, clip_confirm: {clip_confirm}, "
                                f"semantic: {{enabled: true, threshold: {semantic}, cluster_rows: 4}}}}")
            + f"models:\n  clip: {{enabled: true, model: null, model_config_file: {tmp / 'tiny.json'}}}\n"
            + f"  aesthetic: {{enabled: true, model: {tmp / 'aesthetic.pth'}}}\n"
            + "ray: {in_process_below: 0}\n")


@pytest.fixture(scope="module")
def curated(tmp_path_factory, local_ray):
    tmp = tmp_path_factory.mktemp("clip_run")
    (tmp / "tiny.json").write_text(json.dumps(TINY))
    torch.manual_seed(0)
    mlp = published_aesthetic(TINY["embed_dim"])
    torch.save(mlp.state_dict(), tmp / "aesthetic.pth")
    src = write_folder(tmp / "in")
    (tmp / "run.yaml").write_text(_config(tmp, 0.5, 0.99999))
    result = run(str(src), str(tmp / "out"), load_config(tmp / "run.yaml"))
    return tmp, result, mlp


def _rows(out) -> dict[str, dict]:
    return {r["source_uri"].rsplit("/", 1)[-1][:-4]: r for r in curate.open(str(out)).read().to_pylist()}


def test_embeddings_group_and_aesthetic_scores(curated):
    tmp, result, mlp = curated
    manifest = result.manifest
    assert manifest["current"]["embeddings"] == manifest["current"]["models"]
    rows = _rows(tmp / "out")
    measured = {k for k, r in rows.items() if r["model_pass"] == "measured"}
    assert len(measured) == 8  # the 7 rows passing the CPU rules + the exact copy (values copied)
    schema = curate.open(str(tmp / "out")).read(["clip_embedding"]).schema
    assert str(schema.field("clip_embedding").type) == "list<item: halffloat>"
    for key in measured:
        emb = np.asarray(rows[key]["clip_embedding"], dtype=np.float32)
        assert emb.shape == (TINY["embed_dim"],) and abs(np.linalg.norm(emb) - 1) < 1e-2
        with torch.no_grad():
            direct = float(mlp.layers(torch.from_numpy(emb / np.linalg.norm(emb))[None]).item())
        assert rows[key]["stat_aesthetic"] == pytest.approx(direct, abs=1e-3), key
    for key in set(rows) - measured:
        assert rows[key]["clip_embedding"] is None and rows[key]["stat_aesthetic"] is None
    assert rows["m_copy_astronaut"]["clip_embedding"] == rows["a_astronaut"]["clip_embedding"]


def test_decisions_with_loose_confirmation_are_the_hash_decisions(curated):
    tmp, result, _ = curated
    rows = _rows(tmp / "out")
    assert {k: r["reasons"] for k, r in rows.items()} == {k: v[2] for k, v in cases().items()}
    applied = result.manifest["decided_with"]["embeddings"]
    assert applied["clip_confirm"] and applied["semantic"]


def test_a_strict_clip_confirmation_splits_the_near_pair_on_retune(curated):
    tmp, _, _ = curated
    rows = _rows(tmp / "out")
    a = np.asarray(rows["a_astronaut"]["clip_embedding"], np.float32)
    near = np.asarray(rows["l_near_astronaut"]["clip_embedding"], np.float32)
    cosine = float(a @ near / np.linalg.norm(a) / np.linalg.norm(near))
    assert cosine < 1
    strict = cosine + (1 - cosine) / 2  # random weights: the pair is very close, but not identical
    (tmp / "strict.yaml").write_text(_config(tmp, strict, strict))
    retune(str(tmp / "out"), load_config(tmp / "strict.yaml"))
    rows = _rows(tmp / "out")
    assert rows["l_near_astronaut"]["reasons"] == [] and rows["l_near_astronaut"]["keep"]  # no longer merged
    assert rows["m_copy_astronaut"]["reasons"] == ["exact_duplicate"]  # same bytes: CLIP is not asked
