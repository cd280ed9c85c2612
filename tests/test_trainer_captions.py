"""Caption choice per sample and epoch, and CFG text dropout per encoder: rates within binomial
tolerance, independence, determinism, the caption package's fallbacks."""
from __future__ import annotations

import hashlib
import math

import pytest

from trainer.captions import SD3_DROP, cfg_drop, choose_caption

N = 6000
IDS = [hashlib.sha256(f"image-{i}".encode()).hexdigest() for i in range(N)]


def _within(count, n, p, sigmas=4.0):
    sd = math.sqrt(n * p * (1 - p))
    return abs(count - n * p) < sigmas * sd, (count, n * p, sd)


def _synthetic_share(ratio, seed=0, epoch=0):
    return sum(choose_caption(i, "orig", "synth", "original", ratio, seed, epoch, "redraw") == "synth" for i in IDS)


@pytest.mark.parametrize("ratio", [0.5, 0.2, 0.9])
def test_redraw_mix_holds_the_ratio_within_binomial_tolerance(ratio):
    ok, detail = _within(_synthetic_share(ratio), N, ratio)
    assert ok, detail


def test_redraw_changes_per_epoch_and_seed_and_repeats_exactly():
    def choices(seed, epoch):
        return [choose_caption(i, "orig", "synth", None, 0.5, seed, epoch, "redraw") for i in IDS]
    base = choices(0, 0)
    assert choices(0, 0) == base
    for other in (choices(0, 1), choices(1, 0)):
        changed = sum(a != b for a, b in zip(base, other))
        ok, detail = _within(changed, N, 0.5)  # independent draws at 0.5 differ half the time
        assert ok, detail


def test_the_extreme_ratios_are_all_one_or_the_other():
    assert _synthetic_share(0.0) == 0 and _synthetic_share(1.0) == N


def test_source_mode_honours_caption_source_with_the_caption_packages_fallbacks():
    assert choose_caption("a", "orig", "synth", "synthetic") == "synth"
    assert choose_caption("a", "orig", "synth", "original") == "orig"
    assert choose_caption("a", "orig", None, "synthetic") == "orig"  # no synthetic -> original
    assert choose_caption("a", "orig", "   ", "synthetic") == "orig"
    assert choose_caption("a", None, "synth", "original") == "synth"  # no original -> synthetic
    assert choose_caption("a", "orig", None, None) == "orig"  # no caption group
    assert choose_caption("a", "", "synth", None) == "synth"
    assert choose_caption("a", None, None, None) == ""
    sources = ["synthetic" if k % 3 else "original" for k in range(300)]
    picked = [choose_caption(i, "orig", "synth", s, 0.5, 0, epoch, "source") for epoch in (0, 7)
              for i, s in zip(IDS, sources)]
    assert picked == [{"synthetic": "synth", "original": "orig"}[s] for s in sources] * 2  # not redrawn


def test_fixed_modes_and_redraw_fall_back_when_their_caption_is_missing():
    assert choose_caption("a", "orig", "synth", "synthetic", mode="original") == "orig"
    assert choose_caption("a", "orig", "synth", "original", mode="synthetic") == "synth"
    assert choose_caption("a", "orig", None, None, mode="synthetic") == "orig"
    assert choose_caption("a", None, "synth", None, mode="original") == "synth"
    assert all(choose_caption(i, "orig", None, None, 1.0, mode="redraw") == "orig" for i in IDS[:50])
    assert all(choose_caption(i, None, "synth", None, 0.0, mode="redraw") == "synth" for i in IDS[:50])


def test_bad_arguments_are_refused():
    with pytest.raises(ValueError, match="mode"):
        choose_caption("a", "o", "s", None, mode="mixed")
    with pytest.raises(ValueError, match="ratio"):
        choose_caption("a", "o", "s", None, ratio=1.5, mode="redraw")
    with pytest.raises(ValueError, match="caption_source"):
        choose_caption("a", "o", "s", "both")
    with pytest.raises(ValueError, match="p must"):
        cfg_drop("a", 0, 0, -0.1, 0)
    with pytest.raises(ValueError, match="encoder"):
        cfg_drop("a", 0, 0, 0.1, -1)


@pytest.mark.parametrize("p", [0.1, SD3_DROP])
def test_cfg_dropout_rate_within_binomial_tolerance_for_each_encoder(p):
    for encoder in range(3):
        ok, detail = _within(sum(cfg_drop(i, 0, 0, p, encoder) for i in IDS), N, p)
        assert ok, (encoder, detail)


def test_cfg_dropout_is_independent_across_encoders_and_epochs():
    p = SD3_DROP
    drops = [[cfg_drop(i, 3, 0, p, e) for i in IDS] for e in range(3)]
    for a, b in ((0, 1), (0, 2), (1, 2)):
        ok, detail = _within(sum(x and y for x, y in zip(drops[a], drops[b])), N, p * p)
        assert ok, (a, b, detail)
    ok, detail = _within(sum(all(t) for t in zip(*drops)), N, p ** 3)
    assert ok, detail
    ok, detail = _within(sum(not any(t) for t in zip(*drops)), N, (1 - p) ** 3)  # SD3: all three kept
    assert ok, detail
    next_epoch = [cfg_drop(i, 3, 1, p, 0) for i in IDS]
    ok, detail = _within(sum(x and y for x, y in zip(drops[0], next_epoch)), N, p * p)
    assert ok, detail
    caption_draw = [choose_caption(i, "o", "s", None, p, 3, 0, "redraw") == "s" for i in IDS]
    ok, detail = _within(sum(x and y for x, y in zip(drops[0], caption_draw)), N, p * p)
    assert ok, detail


def test_cfg_dropout_is_deterministic_and_bounded():
    first = [cfg_drop(i, 5, 2, 0.3, 1) for i in IDS[:500]]
    assert [cfg_drop(i, 5, 2, 0.3, 1) for i in IDS[:500]] == first
    assert [cfg_drop(i, 6, 2, 0.3, 1) for i in IDS[:500]] != first
    assert not any(cfg_drop(i, 0, 0, 0.0, 0) for i in IDS[:500])
    assert all(cfg_drop(i, 0, 0, 1.0, 0) for i in IDS[:500])
