"""minikto's figures read for everyone: the palette survives colour-vision deficiencies and
legends stay readable when a figure is shown 880 px wide."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402

from minikto import ExactEvaluator, KTOConfig, default_task, sample_unpaired, train  # noqa: E402
from minikto.tools.plots import (  # noqa: E402
    PALETTE,
    legend_points_at_width,
    plot_policy_before_after,
    plot_training_curves,
    plot_utility_vs_kl,
)

# Simulated dichromacy in linear RGB (Vienot, Brettel and Mollon, 1999): protanopia and
# deuteranopia, the red-green deficiencies, and tritanopia (Brettel et al., 1997, one plane).
SIMULATE = {
    "protanopia": np.array([[0.11238, 0.88762, 0.0], [0.11238, 0.88762, 0.0],
                            [0.00401, -0.00401, 1.0]]),
    "deuteranopia": np.array([[0.29275, 0.70725, 0.0], [0.29275, 0.70725, 0.0],
                              [-0.02234, 0.02234, 1.0]]),
    "tritanopia": np.array([[1.0, 0.14461, -0.14461], [0.0, 0.85924, 0.14076],
                            [0.0, 0.85924, 0.14076]]),
}


def _linear(colour: str) -> np.ndarray:
    srgb = np.array(to_rgb(colour))
    return np.where(srgb <= 0.04045, srgb / 12.92, ((srgb + 0.055) / 1.055) ** 2.4)


@pytest.mark.parametrize("deficiency", list(SIMULATE))
def test_desirable_and_undesirable_stay_apart_under_colour_blindness(deficiency):
    seen = [SIMULATE[deficiency] @ _linear(PALETTE[k]) for k in ("desirable", "undesirable")]
    # red (#d62728) and green (#2ca02c) fall to about 0.07 apart under deuteranopia
    assert np.linalg.norm(seen[0] - seen[1]) > 0.25


def test_policy_and_dpo_colours_differ_under_red_green_deficiencies():
    for deficiency in ("protanopia", "deuteranopia"):
        seen = [SIMULATE[deficiency] @ _linear(PALETTE[k]) for k in ("policy", "dpo")]
        assert np.linalg.norm(seen[0] - seen[1]) > 0.1


@pytest.fixture(scope="module")
def run():
    task = default_task()
    data = sample_unpaired(task, 200, seed=0)
    config = KTOConfig(desirable_weight=2.5, max_steps=20, eval_every=10, progress=False)
    return task, train(task, data, config)


def test_every_figure_of_a_run_keeps_its_legends_at_9_points_or_more_at_880_px(run):
    task, result = run
    evaluator = ExactEvaluator(task, result.reference)
    figures = [
        plot_training_curves(result.history, result.evals, title="t"),
        plot_policy_before_after(task, evaluator, result.reference, result.policy),
        plot_utility_vs_kl({"KTO": result.evals}, best=evaluator.best_utility),
    ]
    for fig in figures:
        assert fig.get_figwidth() <= 10.0
        assert legend_points_at_width(fig) >= 9.0
        plt.close(fig)


def test_legend_points_at_width_scales_with_the_figure_and_ignores_legendless_figures():
    fig, ax = plt.subplots(figsize=(8.8, 3))
    assert legend_points_at_width(fig) == float("inf")
    ax.plot([0, 1], label="x")
    ax.legend(fontsize=12)
    # 8.8 inches shown 880 px wide on a 96 px/inch screen: a scale of 880 / 844.8
    assert legend_points_at_width(fig) == pytest.approx(12 * 880 / (96 * 8.8))
    plt.close(fig)
