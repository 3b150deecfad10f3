"""Imbalance: drop most desirable examples and rebalance with Eq. 8 (paper, Eq. 8).

For each seed, 2000 responses are sampled from the base policy and labelled by the hidden
utility (thumbs-up when u > 0, about 30 % of them); then only a fraction f of the desirable
examples is kept (``sample_unpaired(..., desirable_fraction=f)``: the same responses, fewer
thumbs-up). KTO is trained twice on each dataset: with ``desirable_weight`` from Eq. 8 (the
smallest lambda_D putting ``lambda_D n_D / n_U`` in [1, 4/3],
:func:`minikto.training.config.balanced_desirable_weight`) and with lambda_D = 1. DPO on 1000
pairs of
the same seed (all the preference data, no imbalance) is the yardstick.
"""

from __future__ import annotations

import warnings
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from ..data.feedback import sample_paired, sample_unpaired
from ..data.toy import default_task
from ..exact import ExactEvaluator
from ..tools.plots import LEGEND_FONTSIZE, PALETTE
from ..training.config import KTOConfig, WeightBalanceWarning, balanced_desirable_weight
from ..training.train import train
from .common import (
    DEFAULT_SEEDS,
    ExperimentResult,
    aggregate,
    check_seeds,
    fmt,
    markdown_table,
    mean_std_cell,
    pick,
    progress,
    std_or_zero,
    train_row,
)

__all__ = ["run"]

NAME = "imbalance"
FRACTIONS = (1.0, 0.5, 0.2, 0.1)
QUICK_FRACTIONS = (1.0, 0.1)
EXAMPLES = 2000  # responses sampled before dropping desirable ones
PAIRS = 1000  # DPO's pairs (2000 responses)
STEPS, QUICK_STEPS = 600, 200


def run(seeds: int = DEFAULT_SEEDS, quick: bool = False) -> ExperimentResult:
    """Run the imbalance experiment; see the module docstring.

    Parameters
    ----------
    seeds : int
        Seeds 0 .. seeds-1; each draws its own data and batch order.
    quick : bool
        The reduced size of the tests: fractions 1 and 0.1 only, 200 steps.

    Returns
    -------
    ExperimentResult
    """
    seeds = check_seeds(seeds)
    task = default_task()
    fractions = QUICK_FRACTIONS if quick else FRACTIONS
    steps = QUICK_STEPS if quick else STEPS
    rows: list[dict[str, Any]] = []
    for seed in range(seeds):
        progress(f"seed {seed + 1}/{seeds}")
        for fraction in fractions:
            data = sample_unpaired(task, EXAMPLES, seed=seed, desirable_fraction=fraction)
            n_d, n_u = data.num_desirable, data.num_undesirable
            for weighting in ("eq8", "one"):
                weight = balanced_desirable_weight(n_d, n_u) if weighting == "eq8" else 1.0
                config = KTOConfig(
                    desirable_weight=weight, max_steps=steps, seed=seed, eval_every=0
                )
                with warnings.catch_warnings():
                    # lambda_D = 1 on imbalanced data is outside Eq. 8's band on purpose
                    warnings.simplefilter("ignore", WeightBalanceWarning)
                    result = train(task, data, config)
                rows.append(
                    {
                        "seed": seed,
                        "method": "kto",
                        "weighting": weighting,
                        "desirable_fraction": fraction,
                        "n_desirable": n_d,
                        "n_undesirable": n_u,
                        "desirable_weight": weight,
                        "eq8_ratio": weight * n_d / n_u,
                        **train_row(result),
                        "no_end_mass": _no_end_mass(task, result),
                    }
                )
        pairs = sample_paired(task, PAIRS, seed=seed)
        result = train(task, pairs, KTOConfig(loss="dpo", max_steps=steps, seed=seed, eval_every=0))
        rows.append(
            {
                "seed": seed,
                "method": "dpo",
                "weighting": "pairs",
                "desirable_fraction": 1.0,
                "n_desirable": len(pairs),
                "n_undesirable": len(pairs),
                "desirable_weight": None,
                "eq8_ratio": None,
                **train_row(result),
                "no_end_mass": _no_end_mass(task, result),
            }
        )

    table = aggregate(
        rows,
        by=("method", "weighting", "desirable_fraction"),
        metrics=("n_desirable", "desirable_weight", "eq8_ratio", "utility", "kl",
                 "desirable_mass", "no_end_mass", "utility_reference"),
    )
    labels = {"eq8": "KTO, lambda_D from Eq. 8", "one": "KTO, lambda_D = 1",
              "pairs": "DPO, all pairs"}
    table_md = markdown_table(
        table,
        [
            ("method", lambda r: labels[r["weighting"]]),
            ("desirable kept", lambda r: f"{r['desirable_fraction']:.0%}"),
            ("n_D (n_U)", lambda r: f"{r['n_desirable_mean']:.0f}"
             + ("" if r["method"] == "dpo" else f" ({_n_u(rows):.0f})")),
            ("lambda_D", mean_std_cell("desirable_weight", 2)),
            ("Eq. 8 ratio", mean_std_cell("eq8_ratio", 2)),
            ("exact utility", mean_std_cell("utility", 3, signed=True)),
            ("exact KL (nats)", mean_std_cell("kl", 2)),
            ("desirable mass", mean_std_cell("desirable_mass", 3)),
            ("mass on replies that never end", mean_std_cell("no_end_mass", 3)),
        ],
    )
    reference = float(np.mean([r["utility_reference"] for r in rows]))
    best = float(rows[0]["utility_best"])
    return ExperimentResult(
        name=NAME,
        title="Imbalance: 90% of the desirable examples dropped (Eq. 8)",
        claim=(
            "Dropping 90% of the desirable examples and raising lambda_D so that "
            "lambda_D n_D / (lambda_U n_U) lies in [1, 4/3] (Eq. 8) still aligns the model "
            "(the paper's KTO Llama-7B trained this way still beat DPO)."
        ),
        design=(
            f"{EXAMPLES} responses per seed from the base policy, thumbs-up when the hidden "
            "utility is > 0 (about 30% are); `sample_unpaired(..., desirable_fraction=f)` "
            "keeps a fraction f of the thumbs-up examples and every thumbs-down one. KTO "
            f"({steps} steps, batch 32, beta 0.1) with lambda_D from Eq. 8 "
            "(`minikto.training.config.balanced_desirable_weight`, ratio just above 1) against "
            f"lambda_D = 1; DPO on {PAIRS} pairs of the same seed (no data dropped) as the "
            f"yardstick. Reference utility {reference:+.3f}, best possible {best:+.3f}."
        ),
        rows=rows,
        table=table,
        table_md=table_md,
        figure=_figure(table, reference, best),
        verdict=_verdict(table, reference, fractions),
        seeds=seeds,
        quick=quick,
    )


def _no_end_mass(task: Any, result: Any) -> float:
    """Exact probability of a reply cut at T without its end token, averaged over prompts."""
    evaluator = ExactEvaluator(task, result.reference)
    never_ends = ~np.any(evaluator.space == task.eos_token, axis=1)
    return float(np.mean(evaluator.response_probs(result.policy)[:, never_ends].sum(axis=1)))


def _n_u(rows: list[dict[str, Any]]) -> float:
    return float(np.mean([r["n_undesirable"] for r in rows if r["method"] == "kto"]))


def _verdict(table: list[dict], reference: float, fractions: tuple[float, ...]) -> str:
    low = min(fractions)
    full_eq8 = pick(table, weighting="eq8", desirable_fraction=1.0)
    low_eq8 = pick(table, weighting="eq8", desirable_fraction=low)
    low_one = pick(table, weighting="one", desirable_fraction=low)
    dpo = pick(table, weighting="pairs", desirable_fraction=1.0)
    eq8_all_above = all(
        pick(table, weighting="eq8", desirable_fraction=f)["utility_max"] > reference
        and pick(table, weighting="eq8", desirable_fraction=f)["utility_min"] > reference
        for f in fractions
    )
    one_below = [f for f in fractions
                 if pick(table, weighting="one", desirable_fraction=f)["utility_mean"] < reference]
    parts = []
    if eq8_all_above:
        parts.append(
            f"Yes on the main claim: with lambda_D from Eq. 8 every run ends above the "
            f"reference's utility ({reference:+.3f}) at every fraction, and keeping only "
            f"{low:.0%} of the desirable examples moves the mean utility from "
            f"{fmt(full_eq8['utility_mean'], 3, signed=True)} to "
            f"{fmt(low_eq8['utility_mean'], 3, signed=True)}."
        )
    else:
        parts.append(
            "No: with lambda_D from Eq. 8 some runs end at or below the reference's "
            f"utility ({reference:+.3f})."
        )
    full_one = pick(table, weighting="one", desirable_fraction=1.0)
    if full_one["utility_mean"] >= full_eq8["utility_mean"]:
        parts.append(
            "Eq. 8 is not needed with all the data: at 100% (about 30% thumbs-up) "
            f"lambda_D = 1 does as well or better ({fmt(full_one['utility_mean'], 3, signed=True)}"
            f" against {fmt(full_eq8['utility_mean'], 3, signed=True)}), although its ratio "
            f"{fmt(full_one['eq8_ratio_mean'], 2)} lies outside the band."
        )
    if one_below:
        kept = " and ".join(f"{f:.0%}" for f in one_below)
        parts.append(
            "The weights matter once the data are scarce: with lambda_D = 1 the undesirable "
            f"examples dominate the loss, and at {kept} desirable kept the "
            "policy ends WORSE than the reference (mean utility "
            f"{fmt(low_one['utility_mean'], 3, signed=True)} at {low:.0%}, KL "
            f"{fmt(low_one['kl_mean'], 1)} nats). Pushing the thumbs-down responses down "
            "sends their mass to replies the data hardly contain: "
            f"on average {fmt(low_one['no_end_mass_mean'], 3)} of the probability sits on "
            "replies that never end (against "
            f"{fmt(low_eq8['no_end_mass_mean'], 3)} with lambda_D from Eq. 8 on the same "
            "data). With so few thumbs-up the loss is almost all 'push the thumbs-down "
            "responses down', an unlikelihood objective, and nothing says where the mass "
            "should go."
        )
    else:
        parts.append("With lambda_D = 1 the policy also stays above the reference here.")
    if low_eq8["utility_mean"] > dpo["utility_mean"]:
        parts.append(
            f"As in the paper, KTO with {low:.0%} of the desirable data "
            f"({fmt(low_eq8['utility_mean'], 3, signed=True)}) beats DPO on all the pairs "
            f"({fmt(dpo['utility_mean'], 3, signed=True)})."
        )
    else:
        parts.append(
            f"Unlike the paper, KTO with {low:.0%} of the desirable data "
            f"({fmt(low_eq8['utility_mean'], 3, signed=True)}) does NOT beat DPO on all "
            f"the pairs ({fmt(dpo['utility_mean'], 3, signed=True)}) in this toy; DPO is the "
            "stronger method here even without any data dropped from KTO (see `frontier`)."
        )
    return " ".join(parts)


def _figure(table: list[dict], reference: float, best: float) -> Any:
    fig, axes = plt.subplots(1, 2, figsize=(10, 5))
    kto = [r for r in table if r["method"] == "kto"]
    fractions = sorted({r["desirable_fraction"] for r in kto}, reverse=True)
    x = np.arange(len(fractions))
    dpo = pick(table, weighting="pairs", desirable_fraction=1.0)
    for ax, metric, ylabel in (
        (axes[0], "utility", "exact expected utility"),
        (axes[1], "kl", "exact KL(pi || pi_ref) [nats]"),
    ):
        for weighting, style, label in (
            ("eq8", dict(marker="o", ls="-"), "KTO, lambda_D from Eq. 8"),
            ("one", dict(marker="s", ls="--", mfc="white"), "KTO, lambda_D = 1"),
        ):
            rows = [pick(table, weighting=weighting, desirable_fraction=f) for f in fractions]
            ax.errorbar(
                x,
                [r[f"{metric}_mean"] for r in rows],
                yerr=[std_or_zero(r[f"{metric}_std"]) for r in rows],
                color=PALETTE["policy"],
                capsize=3,
                label=label,
                **style,
            )
        ax.axhline(dpo[f"{metric}_mean"], color=PALETTE["dpo"], lw=1.5, ls="-.",
                   label="DPO, all pairs (mean)")
        if metric == "utility":
            ax.axhline(reference, color=PALETTE["reference"], lw=1.5, label="reference")
            ax.axhline(best, color="black", lw=0.8, ls=":", label="best possible")
        ax.set_xticks(x, [f"{f:.0%}" for f in fractions])
        ax.set(xlabel="fraction of the desirable examples kept", ylabel=ylabel)
    axes[0].set_title("Final utility (mean ± std over seeds)")
    axes[1].set_title("Final KL to the reference")
    fig.suptitle("Imbalance: KTO with and without the Eq. 8 desirable weight")
    fig.tight_layout(rect=(0, 0.13, 1, 1))
    # one legend below both panels, covering no point
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", ncol=3,
               fontsize=LEGEND_FONTSIZE, frameon=False)
    return fig
