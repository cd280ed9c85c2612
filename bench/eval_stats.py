"""Scores and thresholds for labelled cases: ROC AUC, TPR / FPR rates, best cut, sweeps.

Contracts (``pos`` / ``neg``: scores of positive / negative cases; ``flag_above``: the rule
flags ``value > threshold``, else ``value < threshold``):
- ``rates(pos, neg, threshold, flag_above)`` -> (TPR, FPR).
- ``best_threshold(pos, neg, flag_above)`` -> (threshold, TPR, FPR) maximising TPR - FPR.
- ``sweep(pos, neg, thresholds, flag_above)`` -> "op t: TPR/FPR" cells joined by ", ".
- ``auc(pos, neg, higher_is_positive)`` -> ROC AUC.
- ``met_or_missed(ok)`` -> "met" or "**MISSED**" for target columns.
"""
from __future__ import annotations

import numpy as np
from sklearn.metrics import roc_auc_score


def rates(scores_pos: np.ndarray, scores_neg: np.ndarray, threshold: float, flag_above: bool) -> tuple[float, float]:
    """(TPR, FPR) of the rule that flags ``value > threshold`` (or ``< threshold``)."""
    if flag_above:
        return float(np.mean(scores_pos > threshold)), float(np.mean(scores_neg > threshold))
    return float(np.mean(scores_pos < threshold)), float(np.mean(scores_neg < threshold))


def _round2(x: float) -> float:
    return float(f"{x:.2g}") if x else 0.0


def best_threshold(pos: np.ndarray, neg: np.ndarray, flag_above: bool) -> tuple[float, float, float]:
    """(threshold, TPR, FPR) maximising TPR - FPR (Youden's J).

    Among the cuts that reach the maximum, the midpoint of the lowest and highest is taken and
    rounded to two significant digits (kept exact if rounding would lower J).
    """
    values = np.unique(np.concatenate([pos, neg]))
    cuts = (values[:-1] + values[1:]) / 2 if len(values) > 1 else values
    j = np.array([np.subtract(*rates(pos, neg, cut, flag_above)) for cut in cuts])
    best = cuts[j >= j.max() - 1e-12]

    def reaches_max(t: float) -> bool:
        return bool(np.subtract(*rates(pos, neg, t, flag_above)) >= j.max() - 1e-12)

    threshold = float((best.min() + best.max()) / 2)
    if not reaches_max(threshold):  # the best cuts are not contiguous: take the one nearest the middle
        threshold = float(best[np.argmin(np.abs(best - threshold))])
    if reaches_max(_round2(threshold)):
        threshold = _round2(threshold)
    tpr, fpr = rates(pos, neg, threshold, flag_above)
    return threshold, tpr, fpr


def sweep(pos: np.ndarray, neg: np.ndarray, thresholds: tuple[float, ...], flag_above: bool) -> str:
    op = ">" if flag_above else "<"
    cells = []
    for t in thresholds:
        tpr, fpr = rates(pos, neg, t, flag_above)
        cells.append(f"{op} {t:g}: {tpr:.2f}/{fpr:.2f}")
    return ", ".join(cells)


def auc(pos: np.ndarray, neg: np.ndarray, higher_is_positive: bool) -> float:
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    s = np.r_[pos, neg]
    return float(roc_auc_score(y, s if higher_is_positive else -s))


def met_or_missed(ok: bool) -> str:
    return "met" if ok else "**MISSED**"
