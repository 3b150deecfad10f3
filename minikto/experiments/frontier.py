"""The alignment-tax picture: exact utility against exact KL across beta, KTO, DPO and SFT.

Every method trains on the same responses: per seed, ``sample_paired(task, 1000, seed=s)``
draws 1000 prompt instances with two responses each (2000 responses). Each method gets the
labels it is designed for, plus one control:

- ``dpo``: the pairs (chosen = higher hidden utility), a batch of 32 pairs;
- ``kto``: the 2000 responses labelled thumbs up/down by the hidden utility (u > 0),
  lambda_D from Eq. 8, a batch of 64 examples;
- ``kto-pairs``: ``unpair`` of the pairs (chosen desirable, rejected undesirable), the
  control that gives KTO exactly DPO's information, a batch of 64 examples;
- ``sft``: the thumbs-up responses of ``kto``'s data (SFT ignores beta; its KL is whatever
  600 steps of likelihood training reach), a batch of 64 examples.

beta runs over 0.01 .. 2 for KTO and DPO; every run takes 600 Adam steps at learning rate
0.05, so a point is "where 600 steps get", not a converged optimum.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from ..data.feedback import UnpairedDataset, sample_paired, unpair
from ..data.toy import default_task
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

NAME = "frontier"
BETAS = (0.01, 0.03, 0.1, 0.3, 1.0, 2.0)
QUICK_BETAS = (0.03, 1.0)
PAIRS = 1000
STEPS, QUICK_STEPS = 600, 200
EVAL_EVERY = 25
LABELS = {
    "kto": "KTO (thumbs up/down)",
    "kto-pairs": "KTO (unpaired pairs)",
    "dpo": "DPO (pairs)",
    "sft": "SFT (thumbs-up responses)",
}


def run(seeds: int = DEFAULT_SEEDS, quick: bool = False) -> ExperimentResult:
    """Run the frontier experiment; see the module docstring.

    Parameters
    ----------
    seeds : int
        Seeds 0 .. seeds-1.
    quick : bool
        The reduced size of the tests: beta in {0.03, 1}, 200 steps.

    Returns
    -------
    ExperimentResult
    """
    seeds = check_seeds(seeds)
    task = default_task()
    betas = QUICK_BETAS if quick else BETAS
    steps = QUICK_STEPS if quick else STEPS
    rows: list[dict[str, Any]] = []
    sft_paths: list[list[tuple[float, float]]] = []
    for seed in range(seeds):
        progress(f"seed {seed + 1}/{seeds}")
        pairs = sample_paired(task, PAIRS, seed=seed)
        both = unpair(pairs)
        thumbs = UnpairedDataset(
            both.prompts, both.responses, task.utility(both.prompts, both.responses) > 0
        )
        weight = balanced_desirable_weight(thumbs.num_desirable, thumbs.num_undesirable)
        for beta in betas:
            for method, data, config in (
                ("kto", thumbs, KTOConfig(desirable_weight=weight, batch_size=64)),
                ("kto-pairs", both, KTOConfig(batch_size=64)),
                ("dpo", pairs, KTOConfig(loss="dpo", batch_size=32)),
            ):
                fields = config.to_dict() | {"beta": beta, "seed": seed, "max_steps": steps,
                                             "eval_every": 0}
                result = train(task, data, KTOConfig(**fields))
                rows.append({"seed": seed, "method": method, "beta": beta,
                             **train_row(result)})
        config = KTOConfig(loss="sft", batch_size=64, seed=seed, max_steps=steps,
                           eval_every=EVAL_EVERY)
        result = train(task, thumbs, config)
        rows.append({"seed": seed, "method": "sft", "beta": None, **train_row(result)})
        sft_paths.append([(e["kl_to_reference"], e["expected_utility"]) for e in result.evals])

    table = aggregate(rows, by=("method", "beta"), metrics=("utility", "kl", "desirable_mass"))
    table.sort(key=lambda r: (list(LABELS).index(r["method"]), r["beta"] or 0.0))
    reference = float(rows[0]["utility_reference"])
    table_md = markdown_table(
        table,
        [
            ("method", lambda r: LABELS[r["method"]]),
            ("beta", lambda r: "n/a" if r["beta"] is None else f"{r['beta']:g}"),
            ("exact utility", mean_std_cell("utility", 3, signed=True)),
            ("exact KL (nats)", mean_std_cell("kl", 2)),
            ("utility gained per nat", lambda r: fmt(
                (r["utility_mean"] - reference) / r["kl_mean"], 2)),
            ("desirable mass", mean_std_cell("desirable_mass", 3)),
        ],
    )
    best = float(rows[0]["utility_best"])
    return ExperimentResult(
        name=NAME,
        title="Utility against KL across beta: KTO, DPO, SFT",
        claim=(
            "The paper's headline result is that KTO matches or exceeds preference-based "
            "methods such as DPO at every model scale it tried. The toy's version: at equal "
            "KL from the reference (the 'alignment tax'), which method reaches the higher "
            "true utility, and how beta trades one against the other."
        ),
        design=(
            f"Per seed, {PAIRS} prompt instances with two responses each; all methods train "
            "on these 2000 responses: DPO on the pairs, KTO on thumbs up/down of each "
            "response (u > 0, lambda_D from Eq. 8), KTO on `unpair` of the pairs (DPO's "
            "information, unpaired), SFT on the thumbs-up responses. beta in "
            f"{{{', '.join(f'{b:g}' for b in betas)}}}; {steps} Adam steps, learning rate "
            "0.05; each step sees 64 responses. 'Utility gained per nat' is (utility - "
            f"reference utility) / KL. Reference utility {reference:+.3f}, best possible "
            f"{best:+.3f}."
        ),
        rows=rows,
        table=table,
        table_md=table_md,
        figure=_figure(table, sft_paths, reference, best),
        verdict=_verdict(table, reference),
        seeds=seeds,
        quick=quick,
    )


def _points(table: list[dict], method: str) -> list[dict]:
    return sorted((r for r in table if r["method"] == method), key=lambda r: r["beta"] or 0.0)


def _dominated(point: dict, others: list[dict]) -> bool:
    """Some other point has at most the KL and at least the utility (means)."""
    return any(
        o["kl_mean"] <= point["kl_mean"] and o["utility_mean"] >= point["utility_mean"]
        for o in others
    )


def _verdict(table: list[dict], reference: float) -> str:
    kto, dpo = _points(table, "kto"), _points(table, "dpo")
    sft = _points(table, "sft")[0]
    best = {m: max(_points(table, m), key=lambda r: r["utility_mean"])
            for m in ("kto", "kto-pairs", "dpo")}
    kto_dominated = sum(_dominated(p, dpo) for p in kto)
    dpo_dominated = sum(_dominated(p, kto) for p in dpo)
    parts = [
        f"Only partly. beta does what it is for in both methods: the KL falls as beta "
        f"grows (KTO from {fmt(kto[0]['kl_mean'], 2)} to {fmt(kto[-1]['kl_mean'], 2)} nats, "
        f"DPO from {fmt(dpo[0]['kl_mean'], 2)} to {fmt(dpo[-1]['kl_mean'], 2)} nats between "
        f"beta = {kto[0]['beta']:g} and {kto[-1]['beta']:g})."
        if kto[0]["kl_mean"] > kto[-1]["kl_mean"] and dpo[0]["kl_mean"] > dpo[-1]["kl_mean"]
        else "beta does not order the KL monotonically in this toy within 600 steps."
    ]
    if best["dpo"]["utility_mean"] > best["kto"]["utility_mean"]:
        parts.append(
            f"But the toy disagrees with KTO matching DPO: DPO's best utility "
            f"({fmt(best['dpo']['utility_mean'], 3, signed=True)} at beta = "
            f"{best['dpo']['beta']:g}) is above KTO's best "
            f"({fmt(best['kto']['utility_mean'], 3, signed=True)} at beta = "
            f"{best['kto']['beta']:g}; {fmt(best['kto-pairs']['utility_mean'], 3, signed=True)} "
            "on the unpaired pairs), and it reaches it by spending more KL. Counting "
            "dominated points (another method's point with no more KL and no less utility): "
            f"DPO dominates {kto_dominated} of the {len(kto)} KTO points, KTO "
            f"{dpo_dominated} of the {len(dpo)} DPO points."
        )
    else:
        parts.append(
            f"KTO's best utility ({fmt(best['kto']['utility_mean'], 3, signed=True)}) matches "
            f"or beats DPO's ({fmt(best['dpo']['utility_mean'], 3, signed=True)}), as in the "
            "paper."
        )
    mid = [b for b in (0.1,) if any(p["beta"] == b for p in kto)]
    if mid:
        k = next(p for p in kto if p["beta"] == mid[0])
        d = next(p for p in dpo if p["beta"] == mid[0])
        gain_k = (k["utility_mean"] - reference) / k["kl_mean"]
        gain_d = (d["utility_mean"] - reference) / d["kl_mean"]
        parts.append(
            f"At the default beta = {mid[0]:g} KTO buys "
            + ("more" if gain_k > gain_d else "less")
            + f" utility per nat of KL ({fmt(gain_k, 2)} against {fmt(gain_d, 2)} for DPO) "
            f"but stops lower ({fmt(k['utility_mean'], 3, signed=True)} against "
            f"{fmt(d['utility_mean'], 3, signed=True)})."
            if k["utility_mean"] < d["utility_mean"]
            else f"At the default beta = {mid[0]:g} KTO reaches "
            f"{fmt(k['utility_mean'], 3, signed=True)}, DPO "
            f"{fmt(d['utility_mean'], 3, signed=True)}."
        )
    parts.append(
        f"SFT on the thumbs-up responses reaches {fmt(sft['utility_mean'], 3, signed=True)} at "
        f"{fmt(sft['kl_mean'], 2)} nats: "
        + ("below both preference methods' best, "
           if sft["utility_mean"] < min(best["kto"]["utility_mean"], best["dpo"]["utility_mean"])
           else "competitive with the preference methods, ")
        + "having seen only the good responses and no thumbs-down."
    )
    return " ".join(parts)


def _figure(
    table: list[dict], sft_paths: list[list[tuple[float, float]]], reference: float, best: float
) -> Any:
    fig, ax = plt.subplots(figsize=(9, 6))
    for method, color, style in (
        ("kto", PALETTE["policy"], dict(marker="o", ls="-")),
        ("kto-pairs", PALETTE["policy"], dict(marker="o", ls="--", mfc="white")),
        ("dpo", PALETTE["dpo"], dict(marker="s", ls="-.")),
    ):
        points = _points(table, method)
        ax.errorbar(
            [p["kl_mean"] for p in points],
            [p["utility_mean"] for p in points],
            xerr=[std_or_zero(p["kl_std"]) for p in points],
            yerr=[std_or_zero(p["utility_std"]) for p in points],
            color=color, capsize=2, label=LABELS[method], **style,
        )
        if method != "kto-pairs":
            for p in points:
                # beta labels: DPO's above its points, KTO's below, so the two do not meet
                ax.annotate(f"{p['beta']:g}", (p["kl_mean"], p["utility_mean"]), fontsize=9,
                            xytext=(4, 4 if method == "dpo" else -13),
                            textcoords="offset points", color=color)
    path = np.mean(np.asarray(sft_paths), axis=0)
    ax.plot(path[:, 0], path[:, 1], ".-", color=PALETTE["sft"], lw=1,
            label=LABELS["sft"] + " during training")
    sft = _points(table, "sft")[0]
    ax.errorbar([sft["kl_mean"]], [sft["utility_mean"]], xerr=[std_or_zero(sft["kl_std"])],
                yerr=[std_or_zero(sft["utility_std"])], color=PALETTE["sft"], marker="D",
                ms=8, capsize=2, label="SFT, final")
    ax.plot([0.0], [reference], "*", color=PALETTE["reference"], ms=15, label="reference",
            zorder=5)
    ax.axhline(best, color="black", lw=0.8, ls=":", label="best possible utility")
    ax.set(
        title="Exact utility against exact KL (labels: beta; mean ± std over seeds)",
        xlabel="exact KL(pi || pi_ref) [nats]",
        ylabel="exact expected utility",
    )
    ax.legend(loc="lower right", fontsize=LEGEND_FONTSIZE)
    fig.tight_layout()
    return fig
