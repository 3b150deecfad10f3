"""Thm. 4.3 with unequal shares (``minikto experiment minority``), at its quick size.

The experiment trains DPO and KTO on the same feedback for a grid of shares p and reference
odds; these tests check that DPO lands on its closed-form optimum, that it therefore prefers
the minority response exactly below the boundary, that KTO prefers the majority, and that the
figure reads at page width.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from minikto.experiments import minority  # noqa: E402
from minikto.tools.plots import legend_points_at_width  # noqa: E402


@pytest.fixture
def result(quick_experiments):
    """The experiment at its quick size (run once, in conftest.py)."""
    return quick_experiments["minority"][0]


def test_dpo_optimum_is_the_closed_form_and_zero_on_the_boundary():
    beta = 0.5
    p = np.array([0.6, 0.75, 0.9])
    # on the boundary p^(1/beta) pi_ref(a) = (1-p)^(1/beta) pi_ref(b) the optimum log-odds is 0
    boundary = (np.log(1 - p) - np.log(p)) / beta
    np.testing.assert_allclose(minority.dpo_optimum_log_odds(p, boundary, beta), 0.0, atol=1e-12)
    # p = 1/2: DPO keeps the reference's odds
    assert minority.dpo_optimum_log_odds(0.5, -1.3, beta) == pytest.approx(-1.3)


def test_trained_dpo_reaches_its_closed_form_optimum(result):
    dpo = [r for r in result.rows if r["method"] == "dpo"]
    assert len(dpo) == 2 * len(minority.QUICK_SHARES) * len(minority.QUICK_LOG_ODDS)
    for row in dpo:
        assert abs(row["log_odds"] - row["dpo_optimum"]) < 1e-6, row


def test_dpo_prefers_the_minority_exactly_below_the_boundary(result):
    dpo = [r for r in result.rows if r["method"] == "dpo"]
    below = [r for r in dpo if r["p"] ** (1 / minority.BETA) * np.exp(r["reference_log_odds"])
             < (1 - r["p"]) ** (1 / minority.BETA)]
    assert below, "the quick grid must hold a point where DPO prefers the minority"
    assert len(below) < len(dpo), "and one where it prefers the majority"
    for row in dpo:
        expected = "minority" if row in below else "majority"
        assert row["picks"] == expected, row


def test_kto_on_the_same_feedback_unpaired_prefers_the_majority(result):
    kto = [r for r in result.rows if r["method"] == "kto"]
    assert kto and all(r["picks"] == "majority" for r in kto)
    # it moved: from the reference's odds against y_a to odds in favour of y_a
    assert all(r["log_odds"] > r["reference_log_odds"] + 1.0 for r in kto)


def test_verdict_reports_both_halves_and_the_figure_reads_at_page_width(result):
    assert "DPO's half: yes" in result.verdict
    assert "KTO's half: yes" in result.verdict
    assert legend_points_at_width(result.figure) >= 9.0


def test_verdict_says_no_when_a_half_fails_and_ties_are_called_ties():
    def row(method, picks, theory="minority", log_odds=-1.0):
        return {"method": method, "picks": picks, "theory_dpo_picks": theory,
                "gap_to_dpo_optimum": 0.5, "log_odds": log_odds}

    rows = [row("dpo", "majority"), row("kto", "minority")]
    verdict = minority._verdict(rows)
    assert "DPO's half: only partly" in verdict
    assert "KTO's half: no" in verdict
    assert "reproduces both halves" not in verdict
    assert minority._pick(0.0) == "tie" and minority._pick(-0.5) == "minority"
