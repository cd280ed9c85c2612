"""Vote aggregation and inter-annotator agreement: hand-computed and published examples, and
the maintained implementations (statsmodels' Fleiss' kappa, the krippendorff package) on
random tables."""
from __future__ import annotations

import json

import krippendorff
import numpy as np
import pytest
from statsmodels.stats.inter_rater import fleiss_kappa as statsmodels_fleiss_kappa

from annotate.aggregate import AggregateError, final_level, final_scores
from annotate.agreement import (AgreementError, confusion, consensus_agreement, drift, fleiss_kappa,
                                krippendorff_alpha_ordinal, summary)

NA = np.nan

# --- final_level ---------------------------------------------------------------------------


@pytest.mark.parametrize("policy", ["adjudicate", "median"])
def test_majority_of_three_decides_under_either_policy(policy):
    assert final_level([4, 2, 4], tie_policy=policy) == (4, False, 3)
    assert final_level([5, 5, 5], tie_policy=policy) == (5, False, 3)


def test_no_final_before_the_panel_is_complete_even_when_two_agree():
    assert final_level([], votes_per_item=3) == (None, False, 3)
    assert final_level([4, 4], votes_per_item=3) == (None, False, 3)


def test_plurality_of_a_larger_panel_decides():
    assert final_level([2, 3, 2, 5, 4], votes_per_item=5) == (2, False, 5)


def test_all_differ_median_policy_takes_the_median():
    assert final_level([5, 2, 4], tie_policy="median") == (4, False, 3)
    assert final_level([1, 3, 5], tie_policy="median") == (3, False, 3)


def test_even_panel_median_is_the_lower_median():
    assert final_level([5, 2, 4, 3], votes_per_item=4, tie_policy="median") == (3, False, 4)
    # a tie between the two most-voted levels is no plurality: the tie policy applies
    assert final_level([4, 2, 4, 2], votes_per_item=4, tie_policy="median") == (2, False, 4)


def test_all_differ_adjudicate_waits_for_a_fourth_vote_which_decides():
    assert final_level([5, 2, 4]) == (None, False, 4)
    assert final_level([5, 2, 4, 2]) == (2, True, 4)
    # the adjudicator may pick a level none of the panel chose
    assert final_level([5, 2, 4, 3]) == (3, True, 4)
    # a vote beyond the adjudicator's changes nothing
    assert final_level([5, 2, 4, 3, 5]) == (3, True, 4)


def test_tied_larger_panel_goes_to_adjudication():
    assert final_level([2, 2, 3, 3, 5], votes_per_item=5) == (None, False, 6)
    assert final_level([2, 2, 3, 3, 5, 3], votes_per_item=5) == (3, True, 6)


def test_unsafe_veto_decides_as_soon_as_a_one_is_cast():
    assert final_level([1], unsafe_veto=True) == (1, False, 1)
    assert final_level([4, 1], unsafe_veto=True) == (1, False, 2)
    assert final_level([4, 4, 4, 1], unsafe_veto=True) == (1, False, 4)
    assert final_level([5, 2, 1], unsafe_veto=True) == (1, False, 3)
    # without the veto a lone 1 is outvoted, and an all-differ panel still needs adjudication
    assert final_level([4, 1, 4]) == (4, False, 3)
    assert final_level([5, 2, 1]) == (None, False, 4)
    assert final_level([4, 4], unsafe_veto=True) == (None, False, 3)


@pytest.mark.parametrize("bad", [0, 6, -1, "3", 3.0, True, None])
def test_invalid_levels_are_refused(bad):
    with pytest.raises(AggregateError, match="1..5"):
        final_level([4, bad, 4])


def test_invalid_settings_are_refused():
    with pytest.raises(AggregateError, match="tie_policy"):
        final_level([4, 4, 4], tie_policy="mode")
    with pytest.raises(AggregateError, match="votes_per_item"):
        final_level([4], votes_per_item=0)
    assert issubclass(AggregateError, ValueError)


# --- final_scores ----------------------------------------------------------------------------

def _scores(c, r, h, s):
    return {"completeness": c, "correlation": r, "hallucination": h, "subjectivity": s}


def test_caption_scores_are_the_median_per_criterion():
    votes = [_scores(5, 1, 3, 2), _scores(4, 2, 3, 5), _scores(1, 2, 4, 4)]
    assert final_scores(votes) == _scores(4, 2, 3, 4)
    # four votes: the lower median, so always one of the scores given
    assert final_scores(votes + [_scores(5, 5, 5, 5)]) == _scores(4, 2, 3, 4)


def test_caption_scores_wait_for_enough_votes():
    assert final_scores([_scores(5, 5, 5, 5)] * 2) == _scores(None, None, None, None)
    assert final_scores([_scores(5, 5, 5, 5)] * 2, votes_per_item=2) == _scores(5, 5, 5, 5)


def test_caption_scores_are_validated():
    with pytest.raises(AggregateError, match="criteria"):
        final_scores([{"completeness": 3, "correlation": 3, "hallucination": 3}])
    with pytest.raises(AggregateError, match="hallucination"):
        final_scores([_scores(3, 3, 6, 3)])


# --- Fleiss' kappa ---------------------------------------------------------------------------

# Wikipedia, "Fleiss' kappa", worked example: 10 subjects, 14 raters, 5 categories, kappa 0.210
# (https://en.wikipedia.org/wiki/Fleiss%27_kappa#Worked_example).
WIKIPEDIA_TABLE = [[0, 0, 0, 0, 14], [0, 2, 6, 4, 2], [0, 0, 3, 5, 6], [0, 3, 9, 2, 0], [2, 2, 8, 1, 1],
                   [7, 7, 0, 0, 0], [3, 2, 6, 3, 0], [2, 5, 3, 2, 2], [6, 5, 2, 1, 0], [0, 2, 2, 3, 7]]

# Fleiss, J. L. (1971) "Measuring nominal scale agreement among many raters", Psychological
# Bulletin 76(5):378-382, Table 1: 30 patients, 6 psychiatrists each, 5 diagnoses; kappa 0.430.
# Per-patient diagnoses as transcribed in DKPro Statistics' AgreementTestExamples.createFleiss1972
# (whose tests assert P_o 0.5556, P_e 0.2201, kappa 0.430).
FLEISS_1971 = ["444444", "222555", "233335", "555555", "222444", "113333", "333355", "113334", "114444",
               "555555", "144444", "124444", "222333", "144444", "224445", "333335", "111455", "111112",
               "224444", "133555", "555555", "244444", "224555", "114444", "144445", "222224", "111155",
               "224444", "133333", "555555"]


def _counts(rows: list[str]) -> np.ndarray:
    return np.array([[row.count(str(c)) for c in range(1, 6)] for row in rows])


def test_fleiss_kappa_hand_computed():
    # n=3: P_i = 1, 0, 1/3 -> P = 4/9; p_j = 4/9, 3/9, 2/9 -> P_e = 29/81; kappa = 7/52
    assert fleiss_kappa(np.array([[3, 0, 0], [1, 1, 1], [0, 2, 1]])) == pytest.approx(7 / 52)
    assert fleiss_kappa(np.array([[2, 0], [0, 2]])) == pytest.approx(1.0)
    assert fleiss_kappa(np.array([[1, 1], [1, 1]])) == pytest.approx(-1.0)


def test_fleiss_kappa_textbook_examples():
    assert round(fleiss_kappa(np.array(WIKIPEDIA_TABLE)), 3) == 0.210
    table = _counts(FLEISS_1971)
    assert table.shape == (30, 5) and set(table.sum(axis=1)) == {6}
    assert round(fleiss_kappa(table), 3) == 0.430


@pytest.mark.parametrize("seed", range(8))
def test_fleiss_kappa_matches_statsmodels_on_random_tables(seed):
    rng = np.random.default_rng(seed)
    items, categories, raters = rng.integers(2, 60), rng.integers(2, 7), rng.integers(2, 12)
    skew = rng.dirichlet(np.ones(categories))
    table = np.stack([np.bincount(rng.choice(categories, raters, p=skew), minlength=categories)
                      for _ in range(items)])
    assert fleiss_kappa(table) == pytest.approx(statsmodels_fleiss_kappa(table, method="fleiss"), abs=1e-12)


def test_fleiss_kappa_undefined_and_malformed():
    assert np.isnan(fleiss_kappa(np.array([[3, 0], [3, 0]])))
    with pytest.raises(AgreementError, match="same number"):
        fleiss_kappa(np.array([[3, 0], [1, 1]]))
    with pytest.raises(AgreementError, match="same number"):
        fleiss_kappa(np.array([[1, 0], [0, 1]]))
    with pytest.raises(AgreementError, match="non-negative integer"):
        fleiss_kappa(np.array([[3, -1], [1, 1]]))
    with pytest.raises(AgreementError, match="table"):
        fleiss_kappa(np.array([3, 0]))


# --- Krippendorff's alpha (ordinal) ------------------------------------------------------------

# Krippendorff, K. (2011) "Computing Krippendorff's Alpha-Reliability", example C: 4 observers
# (rows) x 12 units, with missing values; nominal 0.743, ordinal 0.815, interval 0.849, ratio 0.797
# (https://repository.upenn.edu/asc_papers/43). Transcribed from the R irr package, whose
# kripp.alpha documentation carries it as 'the "C" data from Krippendorff' with those values.
KRIPPENDORFF_C = np.array([[1, 1, NA, 1], [2, 2, 3, 2], [3, 3, 3, 3], [3, 3, 3, 3], [2, 2, 2, 2], [1, 2, 3, 4],
                           [4, 4, 4, 4], [1, 1, 2, 1], [2, 2, 2, 2], [NA, 5, 5, 5], [NA, NA, 1, 1],
                           [NA, NA, 3, NA]]).T


def test_alpha_hand_computed():
    # units (1,1), (1,2), (2,2): o = [[2,1],[1,2]], n_c = 3, 3; delta(1,2) = (6 - 3)^2 = 9;
    # alpha = 1 - (n-1) * sum(o delta) / sum(n_c n_k delta) = 1 - 5 * 18 / 162 = 4/9
    assert krippendorff_alpha_ordinal(np.array([[1, 1, 2], [1, 2, 2]])) == pytest.approx(4 / 9)


def test_alpha_published_example():
    assert round(krippendorff.alpha(reliability_data=KRIPPENDORFF_C, level_of_measurement="nominal"), 3) == 0.743
    assert round(krippendorff_alpha_ordinal(KRIPPENDORFF_C), 3) == 0.815


def test_alpha_depends_only_on_the_order_of_values():
    spread = np.where(np.isnan(KRIPPENDORFF_C), NA, KRIPPENDORFF_C ** 2 * 10)
    assert krippendorff_alpha_ordinal(spread) == pytest.approx(krippendorff_alpha_ordinal(KRIPPENDORFF_C))


@pytest.mark.parametrize("seed", range(10))
def test_alpha_matches_the_krippendorff_package_with_missing_values(seed):
    rng = np.random.default_rng(seed)
    annotators, items = rng.integers(2, 8), rng.integers(3, 60)
    truth = rng.integers(1, 6, items)
    noise = rng.integers(-1, 2, (annotators, items)) * (rng.random((annotators, items)) < 0.4)
    data = np.clip(truth + noise, 1, 5).astype(float)
    if seed % 3 == 0:
        data[data == 2] = 1  # a value domain with a gap
    data[rng.random((annotators, items)) < 0.35] = np.nan
    data[:, 0] = np.nan
    data[0, 0] = 3  # one unpairable unit
    ours = krippendorff_alpha_ordinal(data)
    theirs = krippendorff.alpha(reliability_data=data, level_of_measurement="ordinal")
    assert ours == pytest.approx(theirs, abs=1e-12)


def test_alpha_undefined_and_malformed():
    assert np.isnan(krippendorff_alpha_ordinal(np.array([[3, 3, NA], [3, 3, 4]])))  # one pairable value
    assert np.isnan(krippendorff_alpha_ordinal(np.array([[1, NA], [NA, 2]])))  # nothing pairable
    with pytest.raises(AgreementError, match="annotators"):
        krippendorff_alpha_ordinal(np.array([1, 2, 3]))


# --- per-annotator measures and the summary ----------------------------------------------------

VOTES = [("a", "ann", 4), ("a", "bob", 4), ("a", "cat", 2),
         ("b", "ann", 5), ("b", "bob", 3), ("b", "cat", 5),
         ("c", "ann", 1), ("c", "bob", 2), ("c", "cat", 3), ("c", "dan", 2),  # adjudicated by dan
         ("d", "ann", 3), ("d", "bob", 3),  # still open
         ("e", "ann", None)]  # a caption-only vote
FINALS = {"a": 4, "b": 5, "c": 2, "d": None}


def test_consensus_agreement_and_confusion():
    assert consensus_agreement(VOTES, FINALS) == pytest.approx({"ann": 2 / 3, "bob": 2 / 3, "cat": 1 / 3, "dan": 1.0})
    matrices = confusion(VOTES, FINALS)
    assert sorted(matrices) == ["ann", "bob", "cat", "dan"]
    expected_cat = np.zeros((5, 5), dtype=int)
    expected_cat[3, 1] = expected_cat[4, 4] = expected_cat[1, 2] = 1  # rows: final, columns: cat's level
    assert np.array_equal(matrices["cat"], expected_cat)
    assert matrices["dan"].sum() == 1 and matrices["dan"][1, 1] == 1


def test_drift_flags_only_above_the_rate_with_enough_votes():
    assert drift(VOTES, FINALS, max_disagreement=0.4, min_votes=1) == ["cat"]
    assert drift(VOTES, FINALS, max_disagreement=0.4, min_votes=4) == []
    assert drift(VOTES, FINALS, max_disagreement=1 / 3, min_votes=3) == ["cat"]  # 1/3 is not above 1/3
    assert drift(VOTES, FINALS, max_disagreement=0.3, min_votes=3) == ["ann", "bob", "cat"]
    with pytest.raises(AgreementError, match="max_disagreement"):
        drift(VOTES, FINALS, max_disagreement=1.5)


def test_summary_is_plain_and_uses_the_first_panel_for_fleiss():
    report = summary(VOTES, FINALS, min_votes=3)
    assert json.loads(json.dumps(report)) == report
    assert (report["items"], report["votes"], report["final_items"]) == (4, 12, 3)
    # items a, b and c's first three votes; d (two votes) left out: P = 2/9, P_e = 17/81 -> 1/64
    assert (report["raters_per_item"], report["fleiss_items"]) == (3, 3)
    assert report["fleiss_kappa"] == pytest.approx(1 / 64, abs=1e-6)
    grid = np.array([[4, 5, 1, 3], [4, 3, 2, 3], [2, 5, 3, NA], [NA, NA, 2, NA]])
    expected_alpha = krippendorff.alpha(reliability_data=grid, level_of_measurement="ordinal")
    assert report["krippendorff_alpha_ordinal"] == pytest.approx(expected_alpha, abs=1e-6)
    assert report["annotators"]["ann"] == {"votes": 4, "votes_on_final": 3, "agreement": pytest.approx(2 / 3),
                                           "confusion": confusion(VOTES, FINALS)["ann"].tolist()}
    assert report["drift"] == ["cat"]


def test_summary_of_no_disagreement_reports_none_for_undefined_coefficients():
    report = summary([("a", "ann", 4), ("a", "bob", 4)], {"a": 4})
    assert report["fleiss_kappa"] is None and report["krippendorff_alpha_ordinal"] is None
    assert report["annotators"]["bob"]["agreement"] == 1.0
    assert summary([], {})["fleiss_items"] == 0


def test_votes_are_validated():
    with pytest.raises(AgreementError, match="two votes"):
        consensus_agreement([("a", "ann", 4), ("a", "ann", 5)], {"a": 4})
    with pytest.raises(AgreementError, match="1..5"):
        summary([("a", "ann", 7), ("a", "bob", 4)], {})
    with pytest.raises(AgreementError, match="final level"):
        confusion([("a", "ann", 4)], {"a": 0})
