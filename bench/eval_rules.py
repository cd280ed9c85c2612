"""The clarity and exposure section of the report, with its diagnostics.

Contract: ``rules_section(units, meter, cfg)`` returns markdown lines. Negatives are the
original units (JPEG q95, and lossless PNG for the clarity rows); positives are their blurred
(``BLUR_SIGMAS``), brightened (``OVER_SHIFTS``) and darkened (``UNDER_SHIFTS``) variants.
Each row scores the case by ROC AUC (target ``TARGET_AUC``), the default config's rule and the
best TPR - FPR cut; ``SystemExit`` if the config lacks the blurry / over- / under-exposed rule.
Diagnostic rows and lines are scores no default rule uses.
"""
from __future__ import annotations

import numpy as np
from PIL import ImageFilter

from curate.config import CurateConfig, Rule
from curate.reasons import Reason
from curate.sample import encode
from eval_cases import Meter, Unit, levels
from eval_stats import auc, best_threshold, met_or_missed, rates, sweep

BLUR_SIGMAS = (3, 4, 6, 8)
OVER_SHIFTS = (("x", 1.6), ("x", 2.0), ("x", 2.5), ("+", 80), ("+", 115), ("+", 150))
UNDER_SHIFTS = (("x", 0.15), ("x", 0.25), ("x", 0.4))
TARGET_AUC = 0.95
CLARITY_SWEEP = (20, 30, 40, 45, 50, 60, 80, 100)
OVER_SWEEP = (0.01, 0.02, 0.03, 0.05, 0.1, 0.15, 0.25)
UNDER_SWEEP = (0.02, 0.05, 0.1, 0.2, 0.35, 0.5)
P99_SWEEP = (60, 80, 90, 100, 105, 110, 115, 120)


def _rule(cfg: CurateConfig, reason: Reason) -> Rule:
    matches = [r for r in cfg.rules if r.reason == reason]
    if not matches:
        raise SystemExit(f"default config has no rule for {reason}")
    return matches[0]


def _threshold_row(name: str, pos: np.ndarray, neg: np.ndarray, rule: Rule | None, flag_above: bool) -> str:
    """One table row; ``rule=None`` marks a diagnostic score that no default rule uses."""
    score = auc(pos, neg, higher_is_positive=flag_above)
    rec, rtpr, rfpr = best_threshold(pos, neg, flag_above)
    op = ">" if flag_above else "<"
    if rule is None:
        default = "none (diagnostic) | - | -"
    else:
        value = rule.max if flag_above else rule.min
        tpr, fpr = rates(pos, neg, value, flag_above)
        default = f"{op} {value:g} | {tpr:.3f} | {fpr:.3f}"
    return (
        f"| {name} | {len(pos)} / {len(neg)} | {score:.3f} | {met_or_missed(score >= TARGET_AUC)} | {default} | "
        f"{op} {rec:.3g} | {rtpr:.3f} | {rfpr:.3f} |"
    )


def _tpr_by_variant(groups: dict[str, np.ndarray], value: float, flag_above: bool) -> str:
    return ", ".join(f"{k}: {float(np.mean(v > value if flag_above else v < value)):.2f}" for k, v in groups.items())


def rules_section(units: list[Unit], meter: Meter, cfg: CurateConfig) -> list[str]:
    cols = ("stat_clarity", "stat_overexposed", "stat_underexposed", "stat_brightness", "stat_luma_p99")
    jpeg = lambda img: encode(img, quality=95)  # noqa: E731
    png = lambda img: encode(img, "PNG")  # noqa: E731
    orig = meter([jpeg(u.image) for u in units], cols)
    orig_png = meter([png(u.image) for u in units], cols)
    blur = {s: [u.image.filter(ImageFilter.GaussianBlur(s)) for u in units] for s in BLUR_SIGMAS}
    blurred = {f"sigma {s}": meter([jpeg(i) for i in imgs], cols) for s, imgs in blur.items()}
    blurred_png = {f"sigma {s}": meter([png(i) for i in imgs], cols) for s, imgs in blur.items()}
    over = {f"{op}{a:g}": meter([jpeg(levels(u.image, op, a)) for u in units], cols) for op, a in OVER_SHIFTS}
    under = {f"{op}{a:g}": meter([jpeg(levels(u.image, op, a)) for u in units], cols) for op, a in UNDER_SHIFTS}

    def cat(groups: dict, col: str) -> np.ndarray:
        return np.concatenate([g[col] for g in groups.values()])

    blur_rule, over_rule, under_rule = (_rule(cfg, r) for r in (Reason.BLURRY, Reason.OVEREXPOSED, Reason.UNDEREXPOSED))
    clar_jpeg, clar_png = cat(blurred, "stat_clarity"), cat(blurred_png, "stat_clarity")
    over_pos = cat(over, "stat_overexposed")
    under_pos, crushed_pos = cat(under, "stat_luma_p99"), cat(under, "stat_underexposed")  # crushed: diagnostic only
    p99_orig = orig["stat_luma_p99"]
    darkest, brightest_under = int(np.argmin(p99_orig)), int(under_pos.max())
    margin = p99_orig[darkest] - under_rule.min
    missed = np.stack([g["stat_luma_p99"] >= under_rule.min for g in under.values()])  # (variant, unit)
    missed_values, missed_units = np.stack([g["stat_luma_p99"] for g in under.values()])[missed], missed.any(axis=0)
    missed_range = (
        f"span {missed_values.min()}-{missed_values.max()}, all from "
        f"{', '.join(k for k, m in zip(under, missed.any(axis=1)) if m)} of units whose original `stat_luma_p99` is "
        f"{p99_orig[missed_units].min()}-{p99_orig[missed_units].max()}" if missed.any() else "none: no variant missed"
    )
    lines = [
        "## Clarity and exposure rules",
        "",
        f"{len(units)} original units; blur sigma {', '.join(map(str, BLUR_SIGMAS))}; "
        f"over-exposure {', '.join(over)}; under-exposure {', '.join(under)}. "
        "TPR / FPR: share of variants / originals the rule rejects. Recommended: best TPR - FPR on these cases.",
        "",
        "| case | positives / negatives | ROC AUC | target >= 0.95 | default rule | TPR | FPR | recommended | TPR | FPR |",
        "|---|---:|---:|---|---|---:|---:|---|---:|---:|",
        _threshold_row("blur vs originals, `stat_clarity`, JPEG q95", clar_jpeg, orig["stat_clarity"], blur_rule, False),
        _threshold_row("blur vs originals, `stat_clarity`, PNG", clar_png, orig_png["stat_clarity"], blur_rule, False),
        _threshold_row("blur vs originals, `stat_clarity`, JPEG and PNG pooled", np.r_[clar_jpeg, clar_png],
                       np.r_[orig["stat_clarity"], orig_png["stat_clarity"]], blur_rule, False),
        _threshold_row("over-exposure vs originals, `stat_overexposed`", over_pos, orig["stat_overexposed"], over_rule, True),
        _threshold_row("under-exposure vs originals, `stat_luma_p99`", under_pos, p99_orig, under_rule, False),
        _threshold_row("under-exposure vs originals, `stat_underexposed` (diagnostic)", crushed_pos,
                       orig["stat_underexposed"], None, True),
        "",
        "TPR / FPR at other thresholds (JPEG):",
        "",
        f"- `stat_clarity`: {sweep(clar_jpeg, orig['stat_clarity'], CLARITY_SWEEP, False)}",
        f"- `stat_overexposed`: {sweep(over_pos, orig['stat_overexposed'], OVER_SWEEP, True)}",
        f"- `stat_luma_p99`: {sweep(under_pos, p99_orig, P99_SWEEP, False)}",
        f"- `stat_underexposed` (diagnostic): {sweep(crushed_pos, orig['stat_underexposed'], UNDER_SWEEP, True)}",
        "",
        "TPR per variant at the default rules (JPEG):",
        "",
        f"- blur: {_tpr_by_variant({k: g['stat_clarity'] for k, g in blurred.items()}, blur_rule.min, False)}",
        f"- over-exposure: {_tpr_by_variant({k: g['stat_overexposed'] for k, g in over.items()}, over_rule.max, True)}",
        f"- under-exposure: {_tpr_by_variant({k: g['stat_luma_p99'] for k, g in under.items()}, under_rule.min, False)}",
        "",
        f"Over-exposure variants the default rule misses, by unit (misses of {len(over)}; original mean grey): "
        + _worst_units(units, over, "stat_overexposed", over_rule.max, True, orig["stat_brightness"]) + ". "
        "`stat_overexposed` counts clipped pixels (grey >= 250): a brightened photo is caught only once enough of it "
        "clips, which a dark photo (low mean grey) brightened x1.6-2.5 rarely does.",
        "",
        f"Under-exposure variants the default rule misses, by unit (misses of {len(under)}; original `stat_luma_p99`): "
        + _worst_units(units, under, "stat_luma_p99", under_rule.min, False, p99_orig) + ". "
        "`stat_luma_p99` is the grey level below which 99 % of the reduced decode lies: darkening by a factor scales "
        "it by that factor (x0.4 caps it at 102), while every original keeps some highlights "
        f"(darkest: {units[darkest].name} at {p99_orig[darkest]:.0f}; brightest under-exposed variant: "
        f"{brightest_under}). The default `min` {under_rule.min:g} sits {margin:.0f} grey levels "
        f"(x{under_rule.min / p99_orig[darkest]:.2f}) below the darkest original rather than at the best cut, "
        "to leave room for legit low-key photos darker than any of these units. The cost here: the missed variants' "
        f"`stat_luma_p99` {missed_range}.",
        "",
        "`stat_underexposed` (diagnostic row, no longer a rule) counts crushed pixels (grey <= 5): x0.15-0.4 darkens "
        "mid-tones without crushing them (a pixel must start at <= 33 to reach 5 at x0.15), while photos with dark "
        "backgrounds (a black helmet, the retina's surround, deep space) already have many crushed pixels; no "
        "threshold separates the two.",
        "",
        "Originals the default rules reject (JPEG): "
        + (", ".join(_rejected_originals(units, orig, blur_rule, over_rule, under_rule)) or "none") + ".",
        "",
        *_diagnostics(units, cfg, orig, orig_png, over, under),
    ]
    return lines


def _worst_units(units: list[Unit], groups: dict, col: str, value: float, flag_above: bool, shown_value: np.ndarray) -> str:
    """The units with the most variants the rule misses, worst first (at most 12), each with ``shown_value``."""
    flagged = np.stack([g[col] > value if flag_above else g[col] < value for g in groups.values()])
    misses = (~flagged).sum(axis=0)
    order = sorted((i for i in range(len(units)) if misses[i]), key=lambda i: (-misses[i], units[i].name))
    shown = [f"{units[i].name} {misses[i]} ({shown_value[i]:.0f})" for i in order[:12]]
    more = len(order) - len(shown)
    return ", ".join(shown) + (f" and {more} more" if more > 0 else "") if shown else "none"


def _rejected_originals(units: list[Unit], orig: dict[str, np.ndarray], blur: Rule, over: Rule, under: Rule) -> list[str]:
    out = []
    for i, u in enumerate(units):
        why = []
        if orig["stat_clarity"][i] < blur.min:
            why.append(f"clarity {orig['stat_clarity'][i]:.0f}")
        if orig["stat_overexposed"][i] > over.max:
            why.append(f"overexposed {orig['stat_overexposed'][i]:.2f}")
        if orig["stat_luma_p99"][i] < under.min:
            why.append(f"luma p99 {orig['stat_luma_p99'][i]:.0f}")
        if why:
            out.append(f"{u.name} ({', '.join(why)})")
    return out


def _diagnostics(
    units: list[Unit], cfg: CurateConfig, orig: dict, orig_png: dict, over: dict[str, dict], under: dict[str, dict]
) -> list[str]:
    big = np.array([min(u.image.size) >= 2 * cfg.decode.stats_side for u in units])
    ratio = orig_png["stat_clarity"] / orig["stat_clarity"]
    bright_over = auc(np.concatenate([g["stat_brightness"] for g in over.values()]), orig["stat_brightness"], True)
    bright_under = auc(np.concatenate([g["stat_brightness"] for g in under.values()]), orig["stat_brightness"], False)
    p99_over_pos = np.concatenate([g["stat_luma_p99"] for g in over.values()])
    p99_over = auc(p99_over_pos, orig["stat_luma_p99"], True)
    p99_cut, p99_tpr, p99_fpr = best_threshold(p99_over_pos, orig["stat_luma_p99"], True)
    return [
        "Diagnostics (not rules of the default config):",
        "",
        f"- Same pixels as lossless PNG vs JPEG q95, `stat_clarity` ratio PNG/JPEG: median {np.median(ratio[~big]):.2f} "
        f"for units with short side < {2 * cfg.decode.stats_side} px, median {np.median(ratio[big]):.2f} "
        f"(range {ratio[big].min():.2f}-{ratio[big].max():.2f}) for units with short side >= {2 * cfg.decode.stats_side} px.",
        f"- `stat_brightness` (mean grey) as the score: ROC AUC {bright_over:.3f} for over-exposure, "
        f"{bright_under:.3f} for under-exposure.",
        f"- `stat_luma_p99` as the over-exposure score (higher = brighter): ROC AUC {p99_over:.3f}, best cut "
        f"> {p99_cut:.3g} with TPR {p99_tpr:.3f} / FPR {p99_fpr:.3f}; it saturates at 255 and "
        f"{int(np.sum(orig['stat_luma_p99'] >= 250))} of {len(units)} originals already have p99 >= 250, so the "
        "over-exposure rule stays on `stat_overexposed`.",
    ]
