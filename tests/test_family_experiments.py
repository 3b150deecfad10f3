"""The family and skip-sft experiments at their quick size: every loss present, exact numbers in
range, the cut mass a probability. Their results are the session's ``quick_experiments`` (run
once, in conftest.py), shared with tests/test_experiments.py, which checks the files of the
whole registry, and tests/test_figure_style.py, which checks that every experiment's figure
reads at 880 px without colour."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

from minikto import default_task  # noqa: E402
from minikto.exact import ExactEvaluator  # noqa: E402
from minikto.experiments.family import LOSSES  # noqa: E402
from minikto.experiments.skip_sft import cut_mass  # noqa: E402
from minikto.halo import VERDICTS  # noqa: E402


@pytest.fixture
def family(quick_experiments):
    """The family experiment at its quick size: ``EXPERIMENTS["family"](seeds=QUICK_SEEDS,
    quick=True)``, through ``run_experiment``."""
    return quick_experiments["family"][0]


@pytest.fixture
def skip_sft(quick_experiments):
    """The skip-sft experiment at its quick size (as ``family``)."""
    return quick_experiments["skip-sft"][0]


def test_family_reports_every_loss_once_with_its_halo_verdict(family):
    assert sorted(r["loss"] for r in family.table) == sorted(LOSSES)
    for row in family.rows:
        assert row["halo"] == VERDICTS[row["loss"]][0]
        assert -2.0 <= row["utility"] <= 2.0 and row["kl"] >= -1e-12
    utilities = [r["utility_mean"] for r in family.table]
    assert utilities == sorted(utilities, reverse=True)
    assert family.verdict.startswith("Ranked by exact utility")


def test_skip_sft_measures_every_pipeline_from_the_base_policy(skip_sft):
    methods = {(r["method"], r["sft"]) for r in skip_sft.rows}
    assert methods == {
        ("base", "none"),
        ("sft", "none"),
        ("kto", "none"),
        ("kto", "sft"),
        ("dpo", "none"),
        ("dpo", "sft"),
    }
    for row in skip_sft.rows:
        assert 0.0 <= row["cut_mass"] <= 1.0
        if row["method"] == "base":
            assert abs(row["kl"]) < 1e-12
    assert "SFT then DPO" in skip_sft.verdict


def test_cut_mass_is_the_probability_of_the_full_length_responses_without_the_end_token():
    task = default_task()
    base = task.base_policy()
    evaluator = ExactEvaluator(task, base)
    probs = evaluator.response_probs(base)
    ends = np.any(evaluator.space == task.eos_token, axis=1)
    # every response either contains the end token or is cut at T: the two masses sum to 1
    np.testing.assert_allclose(
        cut_mass(evaluator, base) + probs[:, ends].sum(axis=1).mean(), 1.0, rtol=1e-12
    )
