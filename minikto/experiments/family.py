"""The whole family on one toy: every loss minikto trains, exact utility against exact KL.

Per seed, ``sample_paired(task, 1000, seed=s)`` draws 1000 prompt instances with two responses
each. The pairwise losses (TRL's 13 ``loss_type`` values, SimPO, ORPO) train on the pairs,
a batch of 32 pairs; the unpaired ones (KTO with lambda_D from Eq. 8, BCO) on the same 2000
responses labelled thumbs up/down by the hidden utility (u > 0), a batch of 64. Each loss runs
over a small beta grid, 300 Adam steps at learning rate 0.05, and is reported at the beta with
the best mean utility over the seeds. The beta is tuned on the very seeds it is reported on, so
each loss's number is its best case on this grid, the same advantage for all.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from ..data.feedback import UnpairedDataset, sample_paired, unpair
from ..data.toy import default_task
from ..halo import VERDICTS
from ..pairwise import PAIRWISE_LOSS_TYPES
from ..tools.plots import LEGEND_FONTSIZE, PALETTE
from ..training.config import KTOConfig, balanced_desirable_weight
from ..training.train import train
from .common import (
    DEFAULT_SEEDS,
    ExperimentResult,
    aggregate,
    check_seeds,
    fmt,
    markdown_table,
    mean_std_cell,
    progress,
    std_or_zero,
    train_row,
)

__all__ = ["run"]

NAME = "family"
LOSSES = (*PAIRWISE_LOSS_TYPES, "simpo", "orpo", "kto", "bco")
UNPAIRED = ("kto", "bco")
BETAS, QUICK_BETAS = (0.03, 0.1, 0.3, 1.0), (0.1,)
PAIRS = 1000
STEPS, QUICK_STEPS = 300, 60
MARGIN = ("sigmoid", "robust", "exo_pair", "ipo", "hinge", "simpo", "aot", "aot_pair")
PER_RESPONSE = ("apo_zero", "apo_down", "nca_pair", "sppo_hard", "bco_pair")


def run(seeds: int = DEFAULT_SEEDS, quick: bool = False) -> ExperimentResult:
    """Run the family experiment; see the module docstring.

    Parameters
    ----------
    seeds : int
        Seeds 0 .. seeds-1.
    quick : bool
        The reduced size of the tests: beta = 0.1 only, 60 steps.
    """
    seeds = check_seeds(seeds)
    task = default_task()
    betas, steps = (QUICK_BETAS, QUICK_STEPS) if quick else (BETAS, STEPS)
    rows: list[dict[str, Any]] = []
    for seed in range(seeds):
        progress(f"seed {seed + 1}/{seeds}")
        pairs = sample_paired(task, PAIRS, seed=seed)
        both = unpair(pairs)
        thumbs = UnpairedDataset(
            both.prompts, both.responses, task.utility(both.prompts, both.responses) > 0
        )
        weight = balanced_desirable_weight(thumbs.num_desirable, thumbs.num_undesirable)
        for loss in LOSSES:
            data = thumbs if loss in UNPAIRED else pairs
            for beta in betas:
                config = KTOConfig(
                    loss=loss,
                    beta=beta,
                    seed=seed,
                    max_steps=steps,
                    eval_every=0,
                    batch_size=64 if loss in UNPAIRED else 32,
                    desirable_weight=weight if loss == "kto" else 1.0,
                )
                result = train(task, data, config, quiet=True)
                rows.append(
                    {
                        "seed": seed,
                        "loss": loss,
                        "beta": beta,
                        "halo": VERDICTS[loss][0],
                        **train_row(result),
                    }
                )

    grid = aggregate(rows, by=("loss", "beta"), metrics=("utility", "kl", "desirable_mass"))
    table = [
        max((r for r in grid if r["loss"] == loss), key=lambda r: r["utility_mean"])
        for loss in LOSSES
    ]
    table.sort(key=lambda r: -r["utility_mean"])
    reference = float(rows[0]["utility_reference"])
    best = float(rows[0]["utility_best"])
    table_md = markdown_table(
        table,
        [
            ("loss", "loss"),
            ("HALO", lambda r: "yes" if VERDICTS[r["loss"]][0] else "no"),
            ("best beta", lambda r: f"{r['beta']:g}"),
            ("exact utility", mean_std_cell("utility", 3, signed=True)),
            ("exact KL (nats)", mean_std_cell("kl", 2)),
            (
                "utility gained per nat",
                lambda r: fmt((r["utility_mean"] - reference) / max(r["kl_mean"], 1e-12), 2),
            ),
            ("desirable mass", mean_std_cell("desirable_mass", 3)),
        ],
    )
    return ExperimentResult(
        name=NAME,
        title="The whole loss family on one toy",
        claim=(
            "The paper (§3.3, Fig. 2) finds that HALOs (DPO, offline PPO) match or beat "
            "non-HALOs (CSFT, SLiC) at the larger scales, and its headline that KTO matches "
            "DPO. Here: every loss of TRL 0.19's `DPOConfig.loss_type`, SimPO, ORPO, KTO and "
            "BCO on the same responses, each at its best beta, and whether the HALOs among "
            "them (docs/FAMILY.md) do better than the others."
        ),
        design=(
            f"Per seed, {PAIRS} prompt instances with two responses each; the pairwise losses "
            "train on the pairs (batch 32), KTO (lambda_D from Eq. 8) and BCO on the 2000 "
            "responses labelled by the hidden utility (u > 0, batch 64). beta in "
            f"{{{', '.join(f'{b:g}' for b in betas)}}}, each loss reported at the beta of its "
            "best mean utility (tuned on these seeds: every loss's best case); "
            f"{steps} Adam steps at learning rate 0.05; TRL's other defaults "
            "(label_smoothing 0, discopop_tau 0.05, simpo_gamma 0.5). Reference utility "
            f"{reference:+.3f}, best possible {best:+.3f}."
        ),
        rows=rows,
        table=table,
        table_md=table_md,
        figure=_figure(table, reference, best),
        verdict=_verdict(table, reference, grid, betas),
        seeds=seeds,
        quick=quick,
    )


def _verdict(table: list[dict], reference: float, grid: list[dict], betas: tuple) -> str:
    by = {r["loss"]: r for r in table}
    top, last = table[0], table[-1]
    halos = [r["utility_mean"] for r in table if VERDICTS[r["loss"]][0]]
    others = [r["utility_mean"] for r in table if not VERDICTS[r["loss"]][0]]
    rank = {r["loss"]: i + 1 for i, r in enumerate(table)}
    below = [r["loss"] for r in table if r["utility_mean"] < reference]
    parts = [
        f"Ranked by exact utility at its best beta, {top['loss']} leads "
        f"({fmt(top['utility_mean'], 3, signed=True)} at {fmt(top['kl_mean'], 2)} nats) and "
        f"{last['loss']} is last ({fmt(last['utility_mean'], 3, signed=True)}); DPO "
        f"(`sigmoid`) ranks {rank['sigmoid']} of {len(table)} "
        f"({fmt(by['sigmoid']['utility_mean'], 3, signed=True)}), KTO {rank['kto']} "
        f"({fmt(by['kto']['utility_mean'], 3, signed=True)})."
    ]
    med_h, med_o = float(np.median(halos)), float(np.median(others))
    parts.append(
        f"HALOs against non-HALOs: median best utility {fmt(med_h, 3, signed=True)} over the "
        f"{len(halos)} HALOs against {fmt(med_o, 3, signed=True)} over the {len(others)} others"
        + (", in the paper's direction" if med_h > med_o else ", against the paper's direction")
        + f"; but the split is not clean: the best non-HALO ({_best(table, False)}) beats the "
        f"worst HALO ({_worst(table, True)})."
        if max(others) > min(halos)
        else f"HALOs against non-HALOs: every HALO ({len(halos)}) beats every non-HALO "
        f"({len(others)}), in the paper's direction."
    )
    if below:
        parts.append(
            f"{', '.join(below)} end{'s' if len(below) == 1 else ''} below the reference policy "
            f"({fmt(reference, 3, signed=True)}) even at the best beta."
        )
    default = [r for r in grid if r["beta"] == 0.1 and r["utility_mean"] < reference]
    if default:
        parts.append(
            "At TRL's default beta = 0.1 "
            + ", ".join(
                f"{r['loss']} ends below the reference "
                f"({fmt(r['utility_mean'], 3, signed=True)}, best "
                f"{fmt(by[r['loss']]['utility_mean'], 3, signed=True)} at beta = "
                f"{by[r['loss']]['beta']:g})"
                for r in default
            )
            + (
                ": DiscoPOP's gradient at a zero margin points the wrong way at "
                "discopop_tau = 0.05 (docs/FAMILY.md), and a small beta leaves the margins in "
                "the local minimum just below zero."
                if any(r["loss"] == "discopop" for r in default)
                else "."
            )
        )
    edge = [r["loss"] for r in table if len(betas) > 1 and r["beta"] in (betas[0], betas[-1])]
    if edge:
        parts.append(
            f"{len(edge)} losses ({', '.join(edge)}) are best at an end of the beta grid, so "
            "their tuned numbers may still be below what a wider grid would find."
        )
    margin = [by[n]["kl_mean"] for n in MARGIN if n in by]
    single = [by[n]["kl_mean"] for n in PER_RESPONSE if n in by]
    parts.append(
        f"How far they move: the losses of the pair's margin ({', '.join(MARGIN)}) end at "
        f"{fmt(sum(margin) / len(margin), 2)} nats of KL on average, the losses of each response "
        f"against 0 or a running mean ({', '.join(PER_RESPONSE)}) at "
        f"{fmt(sum(single) / len(single), 2)}."
    )
    return " ".join(parts)


def _best(table: list[dict], halo: bool) -> str:
    r = max((r for r in table if VERDICTS[r["loss"]][0] == halo), key=lambda r: r["utility_mean"])
    return f"{r['loss']}, {fmt(r['utility_mean'], 3, signed=True)}"


def _worst(table: list[dict], halo: bool) -> str:
    r = min((r for r in table if VERDICTS[r["loss"]][0] == halo), key=lambda r: r["utility_mean"])
    return f"{r['loss']}, {fmt(r['utility_mean'], 3, signed=True)}"


#: One marker per loss in the enlarged panel, so its legend names each point without colour.
MARKERS = ("o", "s", "^", "v", "D", "P", "X", "*", "<", ">", "h", "p")


def _figure(table: list[dict], reference: float, best: float) -> Any:
    """All losses (left, labelled where they stand apart) and the crowded top of the plot
    enlarged (right, one marker per loss, named in its legend)."""
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(10, 5.4))
    window = sorted(r["utility_mean"] for r in table)[-min(10, len(table))] - 0.06
    crowded = [r for r in table if r["utility_mean"] >= window][: len(MARKERS)]
    color = {True: PALETTE["policy"], False: PALETTE["dpo"]}
    for halo, marker, label in ((True, "o", "HALO (docs/FAMILY.md)"), (False, "^", "not a HALO")):
        points = [r for r in table if VERDICTS[r["loss"]][0] == halo]
        ax1.errorbar(
            [p["kl_mean"] for p in points],
            [p["utility_mean"] for p in points],
            xerr=[std_or_zero(p["kl_std"]) for p in points],
            yerr=[std_or_zero(p["utility_std"]) for p in points],
            color=color[halo],
            marker=marker,
            ls="none",
            capsize=2,
            label=label,
        )
    for r in table:
        if r not in crowded:
            ax1.annotate(
                r["loss"],
                (r["kl_mean"], r["utility_mean"]),
                fontsize=9,
                xytext=(6, 4),
                textcoords="offset points",
            )
    ax1.plot(
        [0.0], [reference], "*", color=PALETTE["reference"], ms=15, label="reference", zorder=5
    )
    ax1.axhline(best, color="black", lw=0.8, ls=":", label="best possible utility")
    ax1.set(
        title="Each loss at its best beta",
        xlabel="exact KL(pi || pi_ref) [nats]",
        ylabel="exact expected utility",
    )
    ax1.legend(loc="upper left", fontsize=LEGEND_FONTSIZE)
    for r, marker in zip(crowded, MARKERS, strict=False):
        halo = VERDICTS[r["loss"]][0]
        ax2.errorbar(
            [r["kl_mean"]],
            [r["utility_mean"]],
            xerr=[std_or_zero(r["kl_std"])],
            yerr=[std_or_zero(r["utility_std"])],
            color=color[halo],
            marker=marker,
            ms=7,
            ls="none",
            capsize=2,
            label=f"{r['loss']} ({'HALO' if halo else 'not a HALO'})",
        )
    ax2.set(title="The top of the plot, enlarged", xlabel="exact KL(pi || pi_ref) [nats]")
    ax2.legend(loc="lower right", fontsize=LEGEND_FONTSIZE, ncol=2)
    low = min(r["utility_mean"] - std_or_zero(r["utility_std"]) for r in crowded)
    ax2.set_ylim(low - 0.3, max(r["utility_mean"] for r in crowded) + 0.05)  # room: legend
    fig.suptitle("The whole family (mean ± std over seeds)")
    fig.tight_layout()
    return fig
