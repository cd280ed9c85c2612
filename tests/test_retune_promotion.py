"""A retune that promotes rejected rows never points duplicates at a row it cannot keep."""
from __future__ import annotations

import yaml

import curate
from cases import TEST_CONFIG
from curate.config import CurateConfig
from curate.pipeline import run
from curate.retune import retune
from photos import encode, photo


def _config(min_side: int) -> CurateConfig:
    raw = yaml.safe_load(TEST_CONFIG)
    raw["rules"] = [{"column": "stat_short_side", "min": min_side, "reason": "too_small"}]
    return CurateConfig.model_validate(raw)


def test_four_rejected_copies_whose_sources_are_gone_keep_one_after_a_looser_retune(tmp_path):
    # Four copies of one photo, all below the size rule; then their sources vanish.
    small = photo("chelsea").resize((200, 133))
    source = tmp_path / "in"
    source.mkdir()
    for i, quality in enumerate((95, 90, 85, 80)):
        (source / f"copy{i}.jpg").write_bytes(encode(small, quality=quality))
        (source / f"copy{i}.txt").write_text(f"copy {i}")
    out = tmp_path / "out"
    first = run(str(source), str(out), _config(256))
    assert first.manifest["rows"]["kept"] == 0 and first.manifest["reasons"]["too_small"] == 4
    for f in source.iterdir():
        f.unlink()

    manifest = retune(str(out), _config(64))
    rows = curate.open(str(out)).read(["id", "image", "keep", "reasons", "dup_of"]).to_pylist()
    kept = [r for r in rows if r["keep"]]
    assert len(kept) == 1 and kept[0]["image"]  # kept, with its bytes (stored once, never re-fetched)
    assert sorted(r["reasons"][0] for r in rows if not r["keep"]) == ["near_duplicate"] * 3
    assert {r["dup_of"] for r in rows if not r["keep"]} == {kept[0]["id"]}
    assert manifest["rows"] == {"in": 4, "kept": 1, "rejected": 3}
