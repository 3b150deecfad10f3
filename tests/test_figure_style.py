"""minikto's figures read for everyone: the palette survives colour-vision deficiencies and
legends stay readable when a figure is shown 880 px wide."""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.colors import to_rgb  # noqa: E402
from matplotlib.lines import Line2D  # noqa: E402
from matplotlib.offsetbox import DrawingArea  # noqa: E402

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


# ------------------------------------------------------------------------------------------
# Every figure the experiments and the demo draw, built at a small size


COLOUR_WORDS = ("red", "green", "blue", "orange", "purple", "grey", "gray", "black",
                "vermillion", "pink", "yellow")


def _texts_of_titles(fig) -> list[str]:
    titles = [ax.get_title(loc) for ax in fig.axes for loc in ("left", "center", "right")]
    if fig._suptitle is not None:
        titles.append(fig._suptitle.get_text())
    return [t for t in titles if t]


def _look_of_artist(artist) -> tuple:
    if isinstance(artist, Line2D):
        marker = artist.get_marker()
        marker = "none" if marker in (None, "", " ", "None", "none") else marker
        style = artist.get_linestyle()
        style = "none" if style in ("None", "none", "", " ") else style
        hollow = str(artist.get_markerfacecolor()).lower() in ("none", "white", "#ffffff")
        size = round(artist.get_markersize()) if marker != "none" else 0
        return ("line", marker, style, hollow and marker != "none", size)
    hatch = artist.get_hatch() if hasattr(artist, "get_hatch") else None
    return (type(artist).__name__, hatch or "", round(artist.get_alpha() or 1.0, 2))


def _entry_looks(legend) -> list[tuple]:
    """What tells each legend entry apart without colour: its markers, line styles, hatches,
    filling, size and transparency (each entry is drawn in a DrawingArea of its own)."""
    looks, todo = [], [legend]
    while todo:
        node = todo.pop(0)
        if isinstance(node, DrawingArea):
            looks.append(tuple(sorted(_look_of_artist(a) for a in node.get_children())))
        else:
            todo[:0] = node.get_children()
    return looks


def assert_readable(fig, name: str) -> None:
    """At most 10 inches wide, legends >= 9 pt at 880 px, no colour named in a title, and
    the entries of each legend told apart by more than their colour."""
    assert fig.get_figwidth() <= 10.0, name
    assert legend_points_at_width(fig) >= 9.0, name
    for title in _texts_of_titles(fig):
        words = title.lower().replace("(", " ").replace(")", " ").replace(",", " ").split()
        assert not set(words) & set(COLOUR_WORDS), (name, title)
    legends = [a.get_legend() for a in fig.axes if a.get_legend() is not None]
    for legend in legends + list(fig.legends):
        looks = _entry_looks(legend)
        assert len(looks) == len(legend.texts), name
        assert len(set(looks)) == len(looks), (name, [t.get_text() for t in legend.texts], looks)


@pytest.fixture
def experiment_figures(quick_experiments):
    """Each experiment at its quick size (run once, in conftest.py): name -> its Figure."""
    return {name: result.figure for name, (result, _) in quick_experiments.items()}


def test_every_experiment_has_a_figure_checked_here(experiment_figures):
    assert set(experiment_figures) == {"imbalance", "noise", "contradiction", "minority",
                                       "one-y-per-x", "reference-point", "frontier",
                                       "family", "skip-sft"}


@pytest.mark.parametrize("name", ["imbalance", "noise", "contradiction", "minority",
                                  "one-y-per-x", "reference-point", "frontier", "family",
                                  "skip-sft"])
def test_every_experiment_figure_reads_at_880_px_without_colour(experiment_figures, name):
    assert_readable(experiment_figures[name], name)


def test_the_demo_figures_read_at_880_px_without_colour(tmp_path):
    from minikto.tools.demo import run_demo

    opened = set(plt.get_fignums())
    shown = []
    real = plt.Figure.savefig

    def keep(fig, *args, **kwargs):
        shown.append(fig)
        return real(fig, *args, **kwargs)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(plt.Figure, "savefig", keep)
        run_demo(tmp_path / "demo", max_steps=20, quiet=True)
    assert len(shown) >= 3
    for n, fig in enumerate(shown):
        assert_readable(fig, f"demo figure {n}")
    assert set(plt.get_fignums()) == opened  # the demo closed what it drew


def test_a_legend_told_apart_by_colour_alone_is_refused():
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot([0, 1], color=PALETTE["desirable"], label="desirable")
    ax.plot([1, 0], color=PALETTE["undesirable"], label="undesirable")
    ax.legend(fontsize=12)
    with pytest.raises(AssertionError):
        assert_readable(fig, "colour only")
    ax.lines[1].set_linestyle("--")
    ax.legend(fontsize=12)
    assert_readable(fig, "colour and line style")
    ax.set_title("desirable (blue) and undesirable (orange)")
    with pytest.raises(AssertionError):
        assert_readable(fig, "colour in the title")
    plt.close(fig)
