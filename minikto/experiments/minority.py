r"""Thm. 4.3 as the paper states it: with unequal shares, DPO can prefer the minority response.

The setting. One prompt x and two responses y_a, y_b. The data hold N = 20 pairs: a
fraction p in (1/2, 1) says y_a > y_b (y_a is the majority's choice), the rest y_b > y_a.
DPO's loss on them is ``-p log sigma(beta D) - (1 - p) log sigma(-beta D)`` (per pair) with
``D = r_a - r_b`` and ``r = log pi / pi_ref``; its minimum is at ``sigma(beta D) = p``, so

    pi(y_a) / pi(y_b) = (pi_ref(y_a) / pi_ref(y_b)) * (p / (1 - p)) ** (1 / beta).

DPO therefore prefers the MINORITY response y_b whenever
``p ** (1/beta) pi_ref(y_a) < (1 - p) ** (1/beta) pi_ref(y_b)``: the reference's odds against
y_a outweigh the majority. KTO gets the same feedback unpaired (``unpair``: p N times y_a
desirable and y_b undesirable, (1 - p) N times the reverse) with lambda_D = lambda_U. The
examples of one response share one z, so the net push on r_a is ``(2p - 1) w >= 0`` and on
r_b ``-(2p - 1) w``, with ``w = beta sigma(z) sigma(-z) > 0`` (Prop. 4.1): KTO moves towards
the majority response y_a, whatever the reference thinks. At p = 1/2 both pushes vanish
(the degenerate case the ``contradiction`` experiment covers).

The toy. The one-token toy (``bandit_task``): a response is one word and the policy a
softmax over words per prompt, so any ratio pi(y_a) / pi(y_b) is reachable and DPO's
closed form is its exact optimum. For each seed, a prompt and two words are drawn; the
reference is the toy's base policy with the logit of y_a shifted so that
log pi_ref(y_a) / pi_ref(y_b) equals each value of a grid (the other words keep their
logits). For every p and reference log-odds, DPO and KTO train full batch with Adam for
300 steps at beta = 0.5 from that reference, and the trained log-odds
log pi(y_a) / pi(y_b) is compared with DPO's closed form.
"""

from __future__ import annotations

from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from ..backend import to_numpy
from ..data.feedback import PairedDataset, unpair
from ..data.toy import bandit_task
from ..tools.plots import LEGEND_FONTSIZE, PALETTE
from ..training.config import KTOConfig
from ..training.train import train
from .common import DEFAULT_SEEDS, ExperimentResult, aggregate, check_seeds, fmt, markdown_table

__all__ = ["dpo_optimum_log_odds", "run"]

NAME = "minority"
BETA = 0.5
PAIRS = 20  # pairs per run; every p of the grid is a multiple of 1/PAIRS
SHARES, QUICK_SHARES = (0.55, 0.6, 0.7, 0.8, 0.9), (0.6, 0.9)
#: log pi_ref(y_a) / pi_ref(y_b): y_a, the majority's choice, is the reference's long shot
LOG_ODDS, QUICK_LOG_ODDS = (-0.5, -1.0, -2.0, -3.0, -4.0, -5.0), (-0.5, -3.0)
STEPS, QUICK_STEPS = 300, 300
#: a trained log-odds within this of 0 counts as a tie, neither response preferred
TIE = 1e-3


def dpo_optimum_log_odds(p: Any, reference_log_odds: Any, beta: float) -> Any:
    """DPO's optimum: log pi(y_a)/pi(y_b) = log pi_ref(y_a)/pi_ref(y_b) + log(p/(1-p)) / beta.

    Negative where DPO prefers y_b, the minority's choice; the boundary (zero) is
    ``p ** (1/beta) pi_ref(y_a) = (1 - p) ** (1/beta) pi_ref(y_b)``.
    """
    p = np.asarray(p, dtype=np.float64)
    return np.asarray(reference_log_odds, dtype=np.float64) + np.log(p / (1.0 - p)) / beta


def run(seeds: int = DEFAULT_SEEDS, quick: bool = False) -> ExperimentResult:
    """Run the minority experiment; see the module docstring.

    Parameters
    ----------
    seeds : int
        Seeds 0 .. seeds-1: each draws its own prompt and pair of words.
    quick : bool
        The reduced size of the tests: 2 shares and 2 reference odds.

    Returns
    -------
    ExperimentResult
    """
    seeds = check_seeds(seeds)
    task = bandit_task()
    shares = QUICK_SHARES if quick else SHARES
    grid = QUICK_LOG_ODDS if quick else LOG_ODDS
    steps = QUICK_STEPS if quick else STEPS
    rows: list[dict[str, Any]] = []
    for seed in range(seeds):
        rng = np.random.default_rng([seed, 4, 3, 1])
        x = int(rng.integers(task.num_prompts))
        a, b = (int(w) for w in rng.choice(task.vocab_size, size=2, replace=False))
        for target in grid:
            reference = _reference_with_log_odds(task, x, a, b, target)
            for p in shares:
                pairs = _pairs(x, a, b, p)
                closed = float(dpo_optimum_log_odds(p, target, BETA))
                for method, data in (("dpo", pairs), ("kto", unpair(pairs))):
                    config = KTOConfig(loss=method, beta=BETA, batch_size=len(data),
                                       max_steps=steps, eval_every=0, seed=seed, progress=False)
                    result = train(task, data, config, reference=reference)
                    trained = _log_odds(result.policy, x, a, b)
                    rows.append({
                        "seed": seed, "prompt": task.prompts[x], "y_a": task.vocab[a],
                        "y_b": task.vocab[b], "p": p, "reference_log_odds": target,
                        "method": method, "steps": steps, "beta": BETA,
                        "dpo_optimum": closed, "log_odds": trained,
                        "gap_to_dpo_optimum": trained - closed,
                        "picks": _pick(trained),
                        "theory_dpo_picks": _pick(closed),
                    })
    table = _table(rows)
    return ExperimentResult(
        name=NAME,
        title="Unequal shares: DPO can prefer the minority, KTO the majority (Thm. 4.3)",
        claim=(
            "For one prompt with responses y_a, y_b and data holding y_a > y_b in a fraction "
            "p in (1/2, 1), DPO's optimum has pi(y_a)/pi(y_b) = (pi_ref(y_a)/pi_ref(y_b)) "
            "(p/(1-p))^(1/beta), so DPO prefers the minority response y_b whenever "
            "p^(1/beta) pi_ref(y_a) < (1-p)^(1/beta) pi_ref(y_b); KTO on the same feedback, "
            "unpaired, with lambda_D = lambda_U, moves to the majority response y_a. "
            "p = 1/2 is the degenerate limit (see the contradiction experiment)."
        ),
        design=(
            f"The one-token toy (a response is one word, so any ratio pi(y_a)/pi(y_b) is "
            f"reachable and DPO's closed form is its exact optimum). Per seed, a prompt and "
            f"two words y_a, y_b are drawn; the reference is the toy's base policy with the "
            f"logit of y_a shifted so that log pi_ref(y_a)/pi_ref(y_b) takes each value of "
            f"{list(grid)}. {PAIRS} pairs, a share p in {list(shares)} of them y_a > y_b; KTO "
            f"trains on `unpair` of the same pairs (lambda_D = lambda_U = 1). beta = {BETA:g}, "
            f"full batch, Adam, {steps} steps, from the reference. 'log-odds' is the trained "
            "log pi(y_a)/pi(y_b): positive means the majority's y_a is preferred, negative "
            "the minority's y_b."
        ),
        rows=rows,
        table=table,
        table_md=_table_md(table),
        figure=_figure(rows, shares, grid),
        verdict=_verdict(rows),
        seeds=seeds,
        quick=quick,
    )


def _reference_with_log_odds(task: Any, x: int, a: int, b: int, target: float) -> Any:
    """The base policy with logit[x, a] shifted so that log pi_ref(a)/pi_ref(b) = target."""
    reference = task.base_policy()
    shift = target - _log_odds(reference, x, a, b)
    logits = to_numpy(reference.params["prompt"]).copy()
    logits[x, a] += shift  # the normaliser cancels in a ratio: the log-odds move by `shift`
    reference.params["prompt"] = reference.xp.asarray(logits, dtype=reference.dtype)
    return reference.copy(frozen=True)


def _pairs(x: int, a: int, b: int, p: float) -> PairedDataset:
    """PAIRS pairs for prompt x: round(p * PAIRS) say a > b, the rest b > a."""
    majority = round(p * PAIRS)
    chosen = np.array([[a]] * majority + [[b]] * (PAIRS - majority))
    rejected = np.array([[b]] * majority + [[a]] * (PAIRS - majority))
    return PairedDataset(np.full(PAIRS, x), chosen, rejected)


def _log_odds(policy: Any, x: int, a: int, b: int) -> float:
    """log pi(a|x) - log pi(b|x), exactly."""
    logps = to_numpy(policy.sequence_logps(np.array([x, x]), np.array([[a], [b]])))
    return float(logps[0] - logps[1])


def _pick(log_odds: float) -> str:
    if abs(log_odds) <= TIE:
        return "tie"
    return "majority" if log_odds > 0 else "minority"


def _table(rows: list[dict]) -> list[dict]:
    """One row per (p, reference log-odds): each method's log-odds over seeds, its pick."""
    by_method = aggregate(rows, by=("p", "reference_log_odds", "method"),
                          metrics=("log_odds", "dpo_optimum", "gap_to_dpo_optimum"))
    table: dict[tuple, dict[str, Any]] = {}
    for agg in by_method:
        key = (agg["p"], agg["reference_log_odds"])
        row = table.setdefault(key, {"p": key[0], "reference_log_odds": key[1], "n": agg["n"]})
        method = agg["method"]
        for name, value in agg.items():
            if name not in ("p", "reference_log_odds", "method", "n"):
                row[f"{method}_{name}"] = value
        picks = {r["picks"] for r in rows if r["method"] == method and r["p"] == key[0]
                 and r["reference_log_odds"] == key[1]}
        row[f"{method}_picks"] = picks.pop() if len(picks) == 1 else "mixed"
    return list(table.values())


def _table_md(table: list[dict]) -> str:
    return markdown_table(table, [
        ("p", lambda r: f"{r['p']:g}"),
        ("log pi_ref(y_a)/pi_ref(y_b)", lambda r: f"{r['reference_log_odds']:+g}"),
        ("DPO optimum (closed form)", lambda r: fmt(r["dpo_dpo_optimum_mean"], 3, signed=True)),
        ("DPO trained", lambda r: fmt(r["dpo_log_odds_mean"], 3, signed=True)),
        ("max abs(DPO - optimum)", lambda r: fmt(max(abs(r["dpo_gap_to_dpo_optimum_min"]),
                                                     abs(r["dpo_gap_to_dpo_optimum_max"])), 1)),
        ("DPO prefers", lambda r: r["dpo_picks"]),
        ("KTO trained (min over seeds)", lambda r: fmt(r["kto_log_odds_min"], 2, signed=True)),
        ("KTO prefers", lambda r: r["kto_picks"]),
    ])


def _verdict(rows: list[dict]) -> str:
    dpo = [r for r in rows if r["method"] == "dpo"]
    kto = [r for r in rows if r["method"] == "kto"]
    gap = max(abs(r["gap_to_dpo_optimum"]) for r in dpo)
    predicted = [r for r in dpo if r["theory_dpo_picks"] == "minority"]
    agree = sum(r["picks"] == r["theory_dpo_picks"] for r in dpo)
    minority = sum(r["picks"] == "minority" for r in dpo)
    kto_majority = sum(r["picks"] == "majority" for r in kto)
    kto_low = min(r["log_odds"] for r in kto)
    both = sum(r["picks"] == "minority" for r in predicted)
    first = (
        f"DPO's half: yes. Trained DPO sits on its closed-form optimum in every run (largest "
        f"gap {fmt(gap, 1)} nats of log-odds), so it prefers the response the closed form "
        f"says in {agree} of {len(dpo)} runs; it prefers the minority's y_b in {minority} "
        f"runs, exactly the {len(predicted)} runs whose grid point lies below the boundary "
        "p^(1/beta) pi_ref(y_a) = (1-p)^(1/beta) pi_ref(y_b)."
        if agree == len(dpo) else
        f"DPO's half: only partly. Trained DPO is within {fmt(gap, 1)} nats of its closed "
        f"form, but prefers the response the closed form says in only {agree} of "
        f"{len(dpo)} runs."
    )
    second = (
        f"KTO's half: yes. On the same feedback unpaired, KTO prefers the majority's y_a in "
        f"{kto_majority} of {len(kto)} runs (smallest trained log-odds "
        f"{fmt(kto_low, 2, signed=True)}), including all {both} runs where DPO prefers the "
        "minority. KTO has no finite optimum here: it keeps raising y_a until the step "
        "budget ends, so its log-odds are a measure of direction, not a limit."
        if kto_majority == len(kto) else
        f"KTO's half: no. KTO prefers the majority in only {kto_majority} of {len(kto)} "
        f"runs (smallest trained log-odds {fmt(kto_low, 2, signed=True)})."
    )
    both_halves = agree == len(dpo) and kto_majority == len(kto)
    return ("The toy reproduces both halves of the theorem. " if both_halves else "") + (
        first + " " + second
    ) + (
        " The toy's softmax over words can realise any ratio of two responses; on a sequence "
        "model whose responses share parameters the same optimum may not be reachable."
    )


def _figure(rows: list[dict], shares: tuple, grid: tuple) -> Any:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.6), sharey=True)
    p_line = np.linspace(0.51, 0.95, 200)
    boundary = -np.log(p_line / (1 - p_line)) / BETA  # DPO's optimum log-odds = 0
    low = min(grid) - 0.5
    styles = {
        "majority": dict(marker="o", color=PALETTE["desirable"], label="prefers y_a (majority)"),
        "minority": dict(marker="^", color=PALETTE["undesirable"],
                         label="prefers y_b (minority)"),
        "tie": dict(marker="s", color=PALETTE["reference"], label="tie"),
        "mixed": dict(marker="x", color="black", label="seeds disagree"),
    }
    for ax, method in zip(axes, ("dpo", "kto"), strict=True):
        ax.fill_between(p_line, low, boundary, color=PALETTE["undesirable"], alpha=0.12, lw=0,
                        label="closed form: DPO prefers the minority")
        ax.plot(p_line, boundary, "k--", lw=1.5,
                label="p^(1/beta) pi_ref(y_a) = (1-p)^(1/beta) pi_ref(y_b)")
        shown = set()
        for p in shares:
            for target in grid:
                picks = {r["picks"] for r in rows if r["method"] == method and r["p"] == p
                         and r["reference_log_odds"] == target}
                pick = picks.pop() if len(picks) == 1 else "mixed"
                style = dict(styles[pick])
                if pick in shown:
                    style.pop("label")
                shown.add(pick)
                ax.plot([p], [target], ls="none", ms=9, **style)
        ax.set(title=f"{method.upper()} after training (beta = {BETA:g})",
               xlabel="p, the share of pairs saying y_a > y_b", xlim=(0.5, 0.95),
               ylim=(low, 0.2))
        ax.set_xticks(np.round(np.arange(0.5, 0.91, 0.1), 1))
    axes[0].set_ylabel("log pi_ref(y_a) / pi_ref(y_b)")
    handles: dict[str, Any] = {}
    for ax in axes:  # one legend for both panels, below them, covering no marker
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    fig.suptitle("Which response each method prefers, on the same feedback")
    fig.tight_layout(rect=(0, 0.14, 1, 1))
    fig.legend(handles.values(), handles.keys(), loc="lower center", ncol=2,
               fontsize=LEGEND_FONTSIZE, frameon=False)
    return fig
