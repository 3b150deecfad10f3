"""Figures of a training run, with one palette for every minikto picture.

Each function takes plain data (a :class:`~minikto.training.train.TrainResult` or lists of dicts),
draws on a new figure and returns it; the caller saves or shows it. Nothing here computes
anything a figure shows: the numbers come from :mod:`minikto.exact` and the run history.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np

__all__ = [
    "LEGEND_FONTSIZE",
    "PALETTE",
    "legend_points_at_width",
    "plot_policy_before_after",
    "plot_training_curves",
    "plot_utility_vs_kl",
    "save_figure",
]

#: One colour per role, used by the CLI, the experiments and the notebooks. The colours are
#: Okabe and Ito's colour-blind-safe set: desirable and undesirable are blue and orange, which
#: stay apart under every common colour-vision deficiency (red and green do not); figures
#: also give the two a different marker or line style, so they read in greyscale too.
PALETTE = {
    "reference": "#999999",  # grey: the frozen reference / before training
    "policy": "#009E73",  # bluish green: the trained policy / KTO
    "desirable": "#0072B2",  # blue: thumbs-up, chosen, gains (marker "o", solid line)
    "undesirable": "#E69F00",  # orange: thumbs-down, rejected, losses (marker "^", dashed)
    "kl": "#CC79A7",  # reddish purple: the reference point z0 / KL
    "dpo": "#D55E00",  # vermillion: DPO
    "sft": "#000000",  # black: SFT
    "other": "#56B4E9",  # sky blue: anything else
}

#: Legend text size (points) of minikto's figures: at most two panels per row and figures
#: at most 10 inches wide, so a legend still reads at >= 9 pt when shown 880 px wide.
LEGEND_FONTSIZE = 10


def legend_points_at_width(fig: Any, width_px: float = 880.0) -> float:
    """The smallest legend font size, in points, when ``fig`` is shown ``width_px`` wide.

    A figure ``W`` inches wide shown at ``width_px`` pixels on a 96 px/inch screen is scaled
    by ``width_px / (96 W)``; a font of ``f`` points then reads as ``f * width_px / (96 W)``.
    Returns ``inf`` for a figure without legends.
    """
    legends = [a.get_legend() for a in fig.axes if a.get_legend() is not None]
    legends += list(fig.legends)
    sizes = [t.get_fontsize() for leg in legends for t in leg.get_texts()]
    if not sizes:
        return float("inf")
    return min(sizes) * width_px / (96.0 * fig.get_figwidth())


def save_figure(fig: Any, path: Any, *, dpi: int = 120) -> None:
    """Save ``fig`` as a PNG (tight layout) and close it.

    The PNG is written atomically (:func:`minikto.data.atomic.atomic_write`): a full disk or
    a crash leaves the previous figure, never a truncated one.
    """
    from ..data.atomic import atomic_write

    try:
        with atomic_write(path, "wb") as handle:
            fig.savefig(handle, format="png", dpi=dpi, bbox_inches="tight")
    finally:
        plt.close(fig)


def _series(history: list[dict], key: str) -> tuple[np.ndarray, np.ndarray]:
    rows = [(h["step"], h[key]) for h in history if h.get(key) is not None]
    if not rows:
        return np.zeros(0), np.zeros(0)
    steps, values = zip(*rows, strict=True)
    return np.asarray(steps), np.asarray(values, dtype=float)


def _smooth(values: np.ndarray, window: int) -> np.ndarray:
    if values.size < window or window < 2:
        return values
    kernel = np.ones(window) / window
    head = np.cumsum(values[: window - 1]) / np.arange(1, window)
    return np.concatenate([head, np.convolve(values, kernel, mode="valid")])


def plot_training_curves(history: list[dict], evals: list[dict], *, title: str = "") -> Any:
    """Four panels: loss; the reference point z0; rewards (TRL's names); exact utility."""
    fig, axes = plt.subplots(2, 2, figsize=(10, 7.5))
    window = max(1, len(history) // 30)

    ax = axes[0, 0]
    steps, loss = _series(history, "loss")
    ax.plot(steps, loss, color=PALETTE["policy"], alpha=0.25, lw=0.8)
    ax.plot(
        steps,
        _smooth(loss, window),
        color=PALETTE["policy"],
        lw=2,
        label=f"loss (moving mean of {window})",
    )
    ax.set(title="Training loss", xlabel="step", ylabel="loss")
    ax.legend(loc="best", fontsize=LEGEND_FONTSIZE)

    ax = axes[0, 1]
    steps, kl = _series(history, "kl")
    if steps.size:
        ax.plot(steps, _smooth(kl, window), color=PALETTE["kl"], lw=2, label="z0 used (kl)")
    steps_raw, raw = _series(history, "kl/unclamped")
    if steps_raw.size:
        ax.plot(
            steps_raw,
            _smooth(raw, window),
            color=PALETTE["kl"],
            lw=1,
            ls="--",
            label="mean log-ratio before the clamp",
        )
    ev_steps = [e["step"] for e in evals]
    ax.plot(
        ev_steps,
        [e["kl_to_reference"] for e in evals],
        "o-",
        color=PALETTE["reference"],
        ms=3,
        label="exact KL(pi || pi_ref)",
    )
    ax.axhline(0, color="black", lw=0.6)
    ax.set(title="Reference point z0 and the exact KL", xlabel="step", ylabel="nats")
    ax.legend(loc="best", fontsize=LEGEND_FONTSIZE)

    ax = axes[1, 0]
    for key, color, style in (
        ("rewards/chosen", PALETTE["desirable"], "-"),
        ("rewards/rejected", PALETTE["undesirable"], "--"),
        ("rewards/margins", PALETTE["policy"], ":"),
    ):
        steps, values = _series(history, key)
        if steps.size:
            ax.plot(steps, _smooth(values, window), color=color, ls=style, lw=2, label=key)
    ax.axhline(0, color="black", lw=0.6)
    ax.set(title="Implied rewards beta * log(pi / pi_ref)", xlabel="step", ylabel="reward")
    ax.legend(loc="best", fontsize=LEGEND_FONTSIZE)

    ax = axes[1, 1]
    ax.plot(
        ev_steps,
        [e["expected_utility"] for e in evals],
        "o-",
        color=PALETTE["policy"],
        ms=3,
        label="expected true utility",
    )
    ax.plot(
        ev_steps,
        [e["desirable_mass"] for e in evals],
        "s--",
        color=PALETTE["desirable"],
        ms=3,
        label="mass on desirable responses",
    )
    ax.set(title="Exact evaluation (the hidden ground truth)", xlabel="step", ylabel="value")
    ax.legend(loc="best", fontsize=LEGEND_FONTSIZE)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def plot_policy_before_after(
    task: Any, evaluator: Any, reference: Any, policy: Any, *, k: int = 5
) -> Any:
    """For each prompt, the most likely responses before and after, with their utility."""
    p_ref = evaluator.response_probs(reference)
    p_new = evaluator.response_probs(policy)
    n_prompts = task.num_prompts
    cols = min(2, n_prompts)  # two panels a row keep the text readable at page width
    rows = int(np.ceil(n_prompts / cols))
    fig, axes = plt.subplots(rows, cols, figsize=(4.9 * cols, 3.2 * rows), squeeze=False)
    for x in range(n_prompts):
        ax = axes[x // cols, x % cols]
        top = list(
            dict.fromkeys(
                list(np.argsort(-p_new[x], kind="stable")[:k])
                + list(np.argsort(-p_ref[x], kind="stable")[:k])
            )
        )[: k + 2]
        top = sorted(top, key=lambda i: -p_new[x, i])
        labels = [
            f"{task.decode(evaluator.space[i])}  (u={evaluator.utility[x, i]:+.1f})" for i in top
        ]
        pos = np.arange(len(top))
        ax.barh(
            pos - 0.2,
            p_ref[x, top],
            height=0.4,
            color=PALETTE["reference"],
            label="reference (before)",
        )
        ax.barh(
            pos + 0.2,
            p_new[x, top],
            height=0.4,
            color=PALETTE["policy"],
            hatch="//",  # before and after read apart without colour too
            edgecolor="white",
            label="trained (after)",
        )
        ax.set_yticks(pos, labels, fontsize=9)
        ax.invert_yaxis()
        ax.set(title=f'"{task.prompts[x]}"', xlabel="probability", xlim=(0, 1))
        ax.title.set_fontsize(10)
        if x == 0:
            ax.legend(loc="lower right", fontsize=LEGEND_FONTSIZE)
    for j in range(n_prompts, rows * cols):
        axes[j // cols, j % cols].axis("off")
    fig.suptitle("Most likely responses per prompt, before and after training")
    fig.tight_layout()
    return fig


def plot_utility_vs_kl(
    runs: dict[str, list[dict]], *, best: float | None = None, colors: dict[str, str] | None = None
) -> Any:
    """Exact expected utility against exact KL to the reference along each run."""
    fig, ax = plt.subplots(figsize=(7, 4.8))
    palette = list(PALETTE.values())
    for n, (name, evals) in enumerate(runs.items()):
        color = (colors or {}).get(name, palette[(n + 1) % len(palette)])
        kl = [e["kl_to_reference"] for e in evals]
        u = [e["expected_utility"] for e in evals]
        ax.plot(kl, u, "o-", color=color, ms=3, label=name)
        ax.annotate(
            f"step {evals[-1]['step']}",
            (kl[-1], u[-1]),
            fontsize=7,
            xytext=(4, -10),
            textcoords="offset points",
        )
    first = next(iter(runs.values()))[0]
    ax.plot(
        [first["kl_to_reference"]],
        [first["expected_utility"]],
        "*",
        color=PALETTE["reference"],
        ms=14,
        label="reference",
        zorder=5,
    )
    if best is not None:
        ax.axhline(best, color="black", lw=0.8, ls=":", label="best possible utility")
    ax.set(
        title="True utility against KL to the reference",
        xlabel="exact KL(pi || pi_ref) [nats]",
        ylabel="exact expected utility",
    )
    ax.legend(loc="lower right", fontsize=LEGEND_FONTSIZE)
    fig.tight_layout()
    return fig
