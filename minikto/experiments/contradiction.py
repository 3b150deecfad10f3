r"""Contradictory feedback (paper Thm. 4.3): KTO does not move; DPO may push both down.

The data. For each prompt x, two distinct responses y1 and y2 are drawn from a policy. The
KTO data hold each of (x, y1) and (x, y2) once desirable and once undesirable (20
examples); the DPO analogue holds each pair in both orders, (y1 > y2) and (y2 > y1) (10
pairs). The KTO data are exactly ``unpair`` of the DPO data, so both methods see the same
contradictory comparisons.

Why KTO cannot move. With lambda_D = lambda_U = 1 and z = beta (r - z0), an example and its
contradiction lose ``(1 - sigma(z)) + (1 - sigma(-z)) = 1``: the batch loss is exactly 1/2
for EVERY policy and every z0, so its gradient is zero everywhere (per example the two
gradients are ``-w`` and ``+w`` with the same ``w = beta sigma(z) sigma(-z) / B``).

What DPO does instead. The two orders of one pair lose ``-log sigma(h) - log sigma(-h)``
with ``h = beta (r1 - r2)``: at least ``2 log 2``, with equality iff ``r1 = r2``. Its optimum
set is every policy with equal log-ratios for y1 and y2, including policies that give both
almost no probability (the paper's worst case), and its gradient is zero only on that set.

Five training settings, each for KTO and DPO, 300 full-batch steps unless stated:

1. ``reference``: start at the reference (Adam), y1 and y2 drawn from the reference. There
   ``r1 = r2 = 0``, so DPO starts on its optimum set too; any motion is Adam dividing
   float64 rounding by ``sqrt(v) + 1e-8``.
2. ``reference-sgd``: the same with plain SGD, which does not amplify rounding.
3. ``aligned``: start from a KTO-aligned policy (the demo's recipe, 600 steps on 2000
   thumbs up/down; the reference is still the base policy), y1 and y2 drawn from the
   aligned policy (responses it gives). The contradictions arrive after alignment.
4. ``aligned-ref-pairs``: the same start, y1 and y2 drawn from the reference (responses the
   aligned policy has learned to tell apart, so ``r1`` and ``r2`` are far from equal).
5. ``minibatch``: as 1, in batches of 4 examples (KTO) or 2 pairs (DPO), so the two labels
   of a response are often in different batches.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from ..backend import to_numpy
from ..data.feedback import PairedDataset, sample_unpaired, unpair
from ..data.toy import default_task
from ..exact import ExactEvaluator
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
    pick,
    progress,
    std_or_zero,
)

__all__ = ["run"]

NAME = "contradiction"
STEPS, QUICK_STEPS = 300, 50
ALIGN_STEPS, QUICK_ALIGN_STEPS = 600, 200
#: setting -> (start, policy y1 and y2 are drawn from, optimizer, KTO batch, DPO batch);
#: a batch of None is the whole data set (full batch)
SETTINGS: dict[str, tuple[str, str, str, int | None, int | None]] = {
    "reference": ("reference", "reference", "adam", None, None),
    "reference-sgd": ("reference", "reference", "sgd", None, None),
    "aligned": ("aligned", "aligned", "adam", None, None),
    "aligned-ref-pairs": ("aligned", "reference", "adam", None, None),
    "minibatch": ("reference", "reference", "adam", 4, 2),
}
TICK = {
    "reference": "reference\nAdam",
    "reference-sgd": "reference\nSGD",
    "aligned": "aligned,\nown pairs",
    "aligned-ref-pairs": "aligned,\nref. pairs",
    "minibatch": "reference,\nminibatches",
}
DESCRIPTION = {
    "reference": "from the reference, full batch, Adam",
    "reference-sgd": "from the reference, full batch, SGD",
    "aligned": "from a KTO-aligned policy, y1, y2 drawn from it, full batch, Adam",
    "aligned-ref-pairs": "from a KTO-aligned policy, y1, y2 drawn from the reference, "
    "full batch, Adam",
    "minibatch": "from the reference, minibatches of 4 examples / 2 pairs, Adam",
}


def run(seeds: int = DEFAULT_SEEDS, quick: bool = False) -> ExperimentResult:
    """Run the contradiction experiment; see the module docstring.

    Parameters
    ----------
    seeds : int
        Seeds 0 .. seeds-1: each trains its own aligned policy and draws its own y1, y2.
    quick : bool
        The reduced size of the tests: 50 steps per setting, a 200-step aligned policy.

    Returns
    -------
    ExperimentResult
    """
    seeds = check_seeds(seeds)
    task = default_task()
    steps = QUICK_STEPS if quick else STEPS
    rows: list[dict[str, Any]] = []
    for seed in range(seeds):
        progress(f"seed {seed + 1}/{seeds}")
        # the aligned policy: the demo's recipe
        feedback = sample_unpaired(task, 2000, seed=seed)
        weight = balanced_desirable_weight(feedback.num_desirable, feedback.num_undesirable)
        config = KTOConfig(desirable_weight=weight, seed=seed, eval_every=0,
                           max_steps=QUICK_ALIGN_STEPS if quick else ALIGN_STEPS)
        aligned = train(task, feedback, config)
        reference = aligned.reference
        evaluator = ExactEvaluator(task, reference)
        policies = {"reference": reference, "aligned": aligned.policy}
        drawn = {name: _contradictory_pairs(task, evaluator, policy, seed)
                 for name, policy in policies.items()}
        for setting, (start_name, source, optimizer, kto_batch, dpo_batch) in SETTINGS.items():
            start = policies[start_name]
            pairs, y1, y2 = drawn[source]
            for method in ("kto", "dpo"):
                data = unpair(pairs) if method == "kto" else pairs
                batch = kto_batch if method == "kto" else dpo_batch
                policy, log = _train_from(
                    start, reference, data, method, optimizer, batch or len(data), steps, seed,
                    task,
                )
                rows.append({
                    "seed": seed, "setting": setting, "method": method, "start": start_name,
                    "pairs_from": source, "optimizer": optimizer,
                    "batch_size": batch or len(data), "examples": len(data), "steps": steps,
                    **_measure(evaluator, reference, start, policy, y1, y2, log),
                })

    table = aggregate(
        rows,
        by=("setting", "method"),
        metrics=("max_param_change", "max_grad", "loss_min", "loss_max", "loss_last",
                 "mass_y1_before", "mass_y2_before", "mass_y1_after", "mass_y2_after",
                 "gap_before", "gap_after", "mass_before", "mass_after", "utility_before",
                 "utility_after", "kl_before", "kl_after"),
    )
    table_md = markdown_table(
        table,
        [
            ("setting", lambda r: DESCRIPTION[r["setting"]]),
            ("method", lambda r: r["method"].upper()),
            ("max abs param change", lambda r: fmt(r["max_param_change_max"], 3)
             + " (max over seeds)"),
            ("max abs gradient", lambda r: fmt(r["max_grad_max"], 3)),
            ("loss over all steps", lambda r: f"{r['loss_min_min']:.6f}..{r['loss_max_max']:.6f}"),
            ("last loss", mean_std_cell("loss_last", 4)),
            ("mean abs(r1 - r2): before -> after", lambda r: f"{fmt(r['gap_before_mean'], 2)}"
             f" -> {fmt(r['gap_after_mean'], 2)}"),
            ("mass of y1 + y2: before", mean_std_cell("mass_before", 3)),
            ("after", mean_std_cell("mass_after", 3)),
            ("utility: before", mean_std_cell("utility_before", 3, signed=True)),
            ("after", mean_std_cell("utility_after", 3, signed=True)),
            ("KL after (nats)", mean_std_cell("kl_after", 2)),
        ],
    )
    return ExperimentResult(
        name=NAME,
        title="Contradictory feedback: KTO stays, DPO moves (Thm. 4.3)",
        claim=(
            "If the same (x, y1) and (x, y2) each appear once as desirable and once as "
            "undesirable, the KTO loss is identically 1/2 (lambda_D = lambda_U = 1), so its "
            "gradient is zero and the policy does not move; DPO's optimum set includes "
            "policies that push both responses' probability to zero."
        ),
        design=(
            "Per seed and prompt, y1 and y2 are two distinct responses drawn from a policy. "
            "KTO gets each (x, y) once desirable and once undesirable (20 examples); the DPO "
            "analogue gets each pair in both orders, (y1 > y2) and (y2 > y1) (10 pairs): the "
            "KTO data are `unpair` of the DPO data. DPO's two orders lose -log sigma(h) - "
            "log sigma(-h) >= 2 log 2 with equality iff r1 = r2, so DPO is indifferent among "
            "all policies with equal log-ratios for y1 and y2, whatever probability they "
            f"leave them. Five settings, {steps} steps each: from the reference with y1, y2 "
            "drawn from it (full batch with Adam, and with SGD); from a KTO-aligned policy "
            "(the demo's recipe; the reference is still the base policy, so the "
            "contradictions arrive after alignment) with y1, y2 drawn from the aligned "
            "policy, and with y1, y2 drawn from the reference; and from the reference in "
            "minibatches of 4 examples / 2 pairs. 'Mass of y1 + y2' is the exact "
            "pi(y1|x) + pi(y2|x), averaged over prompts; 'max abs gradient' the largest "
            "gradient entry over all steps."
        ),
        rows=rows,
        table=table,
        table_md=table_md,
        figure=_figure(table),
        verdict=_verdict(table),
        seeds=seeds,
        quick=quick,
    )


def _contradictory_pairs(
    task: Any, evaluator: ExactEvaluator, policy: Any, seed: int
) -> tuple[PairedDataset, np.ndarray, np.ndarray]:
    """Two distinct responses per prompt from ``policy``; both orders of each pair."""
    rng = np.random.default_rng([seed, 4, 3])
    probs = evaluator.response_probs(policy)
    first, second = [], []
    for x in range(task.num_prompts):
        p = probs[x] / probs[x].sum()
        a = rng.choice(p.shape[0], p=p)
        q = p.copy()
        q[a] = 0.0
        b = rng.choice(q.shape[0], p=q / q.sum())
        first.append(evaluator.space[a])
        second.append(evaluator.space[b])
    y1, y2 = np.stack(first), np.stack(second)
    prompts = np.arange(task.num_prompts)
    pairs = PairedDataset(
        np.concatenate([prompts, prompts]),
        np.concatenate([y1, y2]),
        np.concatenate([y2, y1]),
    )
    return pairs, y1, y2


def _masses(policy: Any, y1: np.ndarray, y2: np.ndarray) -> list[float]:
    """Mean over prompts of the exact pi(y1|x) and pi(y2|x)."""
    prompts = np.arange(y1.shape[0])
    return [
        float(np.mean(np.exp(to_numpy(policy.sequence_logps(prompts, y))))) for y in (y1, y2)
    ]


def _gap(policy: Any, reference: Any, y1: np.ndarray, y2: np.ndarray) -> float:
    """Mean over prompts of |r1 - r2|, the log-ratios' gap that DPO's loss sees."""
    prompts = np.arange(y1.shape[0])
    r1, r2 = (
        to_numpy(policy.sequence_logps(prompts, y)) - to_numpy(reference.sequence_logps(prompts, y))
        for y in (y1, y2)
    )
    return float(np.mean(np.abs(r1 - r2)))


def _measure(evaluator: Any, reference: Any, start: Any, policy: Any, y1: np.ndarray,
             y2: np.ndarray, log: dict[str, float]) -> dict[str, float]:
    """How far one run moved: parameters, the masses and log-ratio gap of y1 and y2, utility."""
    before, after = evaluator(start), evaluator(policy)
    mass_before, mass_after = _masses(start, y1, y2), _masses(policy, y1, y2)
    return {
        "max_param_change": float(np.max(np.abs(policy.get_flat() - start.get_flat()))),
        **log,
        "mass_y1_before": mass_before[0],
        "mass_y2_before": mass_before[1],
        "mass_y1_after": mass_after[0],
        "mass_y2_after": mass_after[1],
        "gap_before": _gap(start, reference, y1, y2),
        "gap_after": _gap(policy, reference, y1, y2),
        "mass_before": mass_before[0] + mass_before[1],
        "mass_after": mass_after[0] + mass_after[1],
        "utility_before": before["expected_utility"],
        "utility_after": after["expected_utility"],
        "kl_before": before["kl_to_reference"],
        "kl_after": after["kl_to_reference"],
    }


def _train_from(
    start: Any,
    reference: Any,
    data: Any,
    method: str,
    optimizer_name: str,
    batch_size: int,
    steps: int,
    seed: int,
    task: Any,
) -> tuple[Any, dict[str, float]]:
    """``steps`` optimizer steps of :func:`~minikto.training.train.train` from ``start``.

    Returns the trained copy and the loss range and the largest gradient entry seen.
    """
    config = KTOConfig(loss=method, batch_size=batch_size, optimizer=optimizer_name, seed=seed,
                       max_steps=steps, eval_every=0)
    max_grad = [0.0]

    def largest_gradient(step: int, result: Any) -> None:
        max_grad[0] = max(max_grad[0], *(float(np.max(np.abs(to_numpy(g))))
                                         for g in result.grads.values()))

    out = train(task, data, config, reference=reference, policy=start, quiet=True,
                callback=largest_gradient)
    losses = [h["loss"] for h in out.history]
    return out.policy, {
        "loss_first": losses[0],
        "loss_last": losses[-1],
        "loss_min": float(np.min(losses)),
        "loss_max": float(np.max(losses)),
        "max_grad": max_grad[0],
    }


def _verdict(table: list[dict]) -> str:
    full = ("reference", "reference-sgd", "aligned", "aligned-ref-pairs")
    kto = [pick(table, setting=s, method="kto") for s in full]
    kto_change = max(r["max_param_change_max"] for r in kto)
    kto_grad = max(r["max_grad_max"] for r in kto)
    kto_loss = max(max(abs(r["loss_min_min"] - 0.5), abs(r["loss_max_max"] - 0.5)) for r in kto)
    sgd_dpo = pick(table, setting="reference-sgd", method="dpo")
    adam_dpo = pick(table, setting="reference", method="dpo")
    own = pick(table, setting="aligned", method="dpo")
    ref_pairs = pick(table, setting="aligned-ref-pairs", method="dpo")
    mini_kto = pick(table, setting="minibatch", method="kto")
    parts = [
        f"Yes for KTO, exactly: in every full-batch setting its loss stays within "
        f"{fmt(kto_loss, 1)} of 1/2 at every step, its largest gradient entry is "
        f"{fmt(kto_grad, 1)} (float64 rounding of terms that cancel exactly) and no parameter "
        f"moves by more than {fmt(kto_change, 1)} (Adam divides that rounding by "
        "sqrt(v) + 1e-8; with SGD the change stays at rounding level), so the aligned "
        "policy keeps its utility to the last digit shown."
    ]

    def story(r: dict, what: str) -> str:
        return (
            f"{what} DPO moves parameters by up to {fmt(r['max_param_change_max'], 2)}, the "
            f"mass of y1 + y2 goes from {fmt(r['mass_before_mean'], 3)} to "
            f"{fmt(r['mass_after_mean'], 3)}, the utility from "
            f"{fmt(r['utility_before_mean'], 3, signed=True)} to "
            f"{fmt(r['utility_after_mean'], 3, signed=True)} (seeds "
            f"{fmt(r['utility_after_min'], 3, signed=True)} to "
            f"{fmt(r['utility_after_max'], 3, signed=True)}) and the KL from "
            f"{fmt(r['kl_before_mean'], 2)} to {fmt(r['kl_after_mean'], 2)} nats."
        )

    collapse = (
        ref_pairs["mass_after_mean"] < 0.5 * ref_pairs["mass_before_mean"]
        and ref_pairs["mass_y1_after_mean"] < ref_pairs["mass_y1_before_mean"]
        and ref_pairs["mass_y2_after_mean"] < ref_pairs["mass_y2_before_mean"]
    )
    parts.append(
        story(ref_pairs, "DPO moves instead. With contradictions about responses of the "
              "reference, which the aligned policy has learned to tell apart (mean |r1 - r2| "
              f"{fmt(ref_pairs['gap_before_mean'], 2)} nats at the start),")
        + (
            " That is the paper's worst case: the mass of y1 and of y2 both fall (y1 "
            f"{fmt(ref_pairs['mass_y1_before_mean'], 3)} to "
            f"{fmt(ref_pairs['mass_y1_after_mean'], 3)}, y2 "
            f"{fmt(ref_pairs['mass_y2_before_mean'], 3)} to "
            f"{fmt(ref_pairs['mass_y2_after_mean'], 3)}) while DPO's loss heads for its "
            f"minimum log 2 = 0.6931 per pair (last loss {fmt(ref_pairs['loss_last_mean'], 4)}): "
            "it satisfies both orders by dragging the two log-ratios down together, and the "
            "rest of the aligned policy goes with them."
            if collapse
            else " DPO equalises the two log-ratios without pushing both responses down: "
            "the toy does not show the paper's worst case here."
        )
    )
    parts.append(
        story(own, "With contradictions about two responses the aligned policy itself gives "
              f"(mean |r1 - r2| {fmt(own['gap_before_mean'], 2)} nats at the start),")
        + " Where DPO's mass goes depends on where the pair starts; the loss cannot tell."
    )
    parts.append(
        "Two caveats. From the reference, r1 = r2 = 0 already lies in DPO's optimum set, so "
        f"DPO's gradient is zero there too: with SGD DPO moves by at most "
        f"{fmt(sgd_dpo['max_param_change_max'], 1)}; with Adam it drifts by up to "
        f"{fmt(adam_dpo['max_param_change_max'], 2)} only because Adam amplifies rounding and "
        "then wanders along DPO's flat set of optima (exact KL "
        f"{fmt(adam_dpo['kl_after_mean'], 3)} nats). And KTO's cancellation needs both labels "
        "of a response in the same batch: in minibatches of 4 KTO moves too (parameters by "
        f"up to {fmt(mini_kto['max_param_change_max'], 2)}, KL "
        f"{fmt(mini_kto['kl_after_mean'], 2)} nats)."
    )
    return " ".join(parts)


def _figure(table: list[dict]) -> Any:
    fig = plt.figure(figsize=(10, 8.4))
    grid = fig.add_gridspec(2, 2)
    axes = [fig.add_subplot(grid[1, :]), fig.add_subplot(grid[0, 0]),
            fig.add_subplot(grid[0, 1])]
    settings = list(SETTINGS)
    x = np.arange(len(settings))
    width = 0.38
    floor = 1e-18  # a bar of exactly zero has no place on a log axis
    # colour and hatch: the methods read apart without colour vision too
    style = {"kto": dict(color=PALETTE["policy"], hatch="//", edgecolor="white"),
             "dpo": dict(color=PALETTE["dpo"], hatch="..", edgecolor="white")}

    ax = axes[0]
    for shift, method in ((-width / 2, "kto"), (width / 2, "dpo")):
        values = [max(pick(table, setting=s, method=method)["max_param_change_max"], floor)
                  for s in settings]
        ax.bar(x + shift, values, width, label=method.upper(), **style[method])
    ax.set_yscale("log")
    ax.set(title="Largest parameter change (max over seeds)", ylabel="max |theta - theta_start|")

    for ax, metric, title, ylabel in (
        (axes[1], "mass", "Probability of y1 + y2", "pi(y1|x) + pi(y2|x), mean over prompts"),
        (axes[2], "utility", "Exact expected utility", "exact expected utility"),
    ):
        before = [pick(table, setting=s, method="kto")[f"{metric}_before_mean"] for s in settings]
        ax.bar(x - width, before, width * 0.95, color=PALETTE["reference"], label="before")
        for shift, method in ((0.0, "kto"), (width, "dpo")):
            rows = [pick(table, setting=s, method=method) for s in settings]
            ax.bar(x + shift, [r[f"{metric}_after_mean"] for r in rows], width * 0.95,
                   yerr=[std_or_zero(r[f"{metric}_after_std"]) for r in rows], capsize=2,
                   label=f"{method.upper()} after", **style[method])
        ax.axhline(0, color="black", lw=0.6)
        ax.set(title=title, ylabel=ylabel)
    for ax in axes:
        ax.set_xticks(x, [TICK[s] for s in settings], fontsize=9)
        ax.legend(loc="best", fontsize=LEGEND_FONTSIZE)
    fig.suptitle("Contradictory feedback: each (x, y) once desirable and once undesirable")
    fig.tight_layout()
    return fig
