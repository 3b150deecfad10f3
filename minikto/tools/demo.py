"""The demo: KTO on the default toy, from thumbs-up / thumbs-down feedback to a better policy.

1. the default toy task (:func:`minikto.data.toy.default_task`) and its base policy, the reference;
2. 2000 unpaired examples sampled from the base policy, labelled by the hidden utility
   (thumbs-up when u(x, y) > 0);
3. ``desirable_weight`` chosen inside the paper's Eq. 8 band for the label imbalance;
4. KTO training (Adam, batch z0 estimate, beta = 0.1) with exact evaluation;
5. a before/after table of each prompt's most likely responses, the summary numbers, and
   three figures in the run directory.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..data.feedback import sample_unpaired
from ..data.toy import default_task
from ..exact import ExactEvaluator
from ..training.config import KTOConfig, balanced_desirable_weight
from ..training.rundir import add_to_manifest
from ..training.train import RunExistsError, TrainResult, train
from .plots import (
    PALETTE,
    plot_policy_before_after,
    plot_training_curves,
    plot_utility_vs_kl,
    save_figure,
)

__all__ = ["DEMO_CONFIG", "run_demo"]

#: The demo's configuration (the desirable weight is set from the data, see run_demo).
DEMO_CONFIG = KTOConfig(
    beta=0.1, learning_rate=0.05, batch_size=32, max_steps=600, z0="batch", eval_every=20, seed=0
)
DEMO_EXAMPLES = 2000
#: The figures the demo writes into the run's ``figures/`` folder.
DEMO_FIGURES = ("training_curves.png", "policy_before_after.png", "utility_vs_kl.png")


def run_demo(
    out_dir: str | Path,
    *,
    seed: int = 0,
    overwrite: bool = False,
    max_steps: int | None = None,
    quiet: bool = False,
    command: list[str] | None = None,
) -> TrainResult:
    """Run the demo into ``out_dir`` and print what happened; return the training result.

    ``overwrite`` replaces an earlier run folder of minikto's only (see
    :mod:`minikto.training.rundir`); ``command`` is recorded in the run's ``config.json``.
    """
    started = time.perf_counter()
    say = (lambda *a, **k: None) if quiet else print
    task = default_task()
    data = sample_unpaired(task, DEMO_EXAMPLES, seed=seed)
    n_d, n_u = int(data.desirable.sum()), int((~data.desirable).sum())
    weight = balanced_desirable_weight(n_d, n_u)
    fields = DEMO_CONFIG.to_dict() | {"seed": seed, "desirable_weight": weight}
    if max_steps is not None:
        fields["max_steps"] = max_steps
    config = KTOConfig(**fields)
    say(
        f"minikto demo: KTO on the toy task {task.name!r} (V={task.vocab_size} words, "
        f"{task.num_prompts} prompts, responses of at most {task.max_length} tokens)"
    )
    say(
        f"data: {len(data)} examples from the base policy, {n_d} thumbs-up / {n_u} "
        f"thumbs-down; desirable_weight = {weight} puts Eq. 8's ratio at "
        f"{weight * n_d / n_u:.2f}, inside [1, 4/3]"
    )
    say(
        f"training: {config.max_steps} Adam steps, batch {config.batch_size}, "
        f"beta {config.beta}, z0 {config.z0!r}"
    )

    try:
        result = train(task, data, config, out_dir=out_dir, overwrite=overwrite, quiet=quiet,
                       data_source={"task": task.name, "n": DEMO_EXAMPLES, "seed": seed},
                       command=command)
    except RunExistsError as err:
        if "already holds a run" not in str(err):
            raise
        raise RunExistsError(  # the demo has no --resume: say what it does have
            f"out: {out_dir} already holds a run; pass --overwrite to replace it or choose "
            "another --out"
        ) from None
    evaluator = ExactEvaluator(task, result.reference)
    before = evaluator.top_responses(result.reference, k=3)
    after = evaluator.top_responses(result.policy, k=3)
    say("")
    say(_table(task, before, after))
    s = result.summary
    say("")
    say(
        f"expected true utility: reference {s['expected_utility']['reference']:+.3f} -> "
        f"trained {s['expected_utility']['final']:+.3f} "
        f"(best possible {s['expected_utility']['best_possible']:+.3f})"
    )
    say(
        f"mass on desirable responses: {s['desirable_mass']['reference']:.3f} -> "
        f"{s['desirable_mass']['final']:.3f}"
    )
    say(f"exact KL(policy || reference): {s['kl_to_reference']:.3f} nats")

    run_dir = Path(result.run_dir)
    figures = run_dir / "figures"
    add_to_manifest(run_dir, [f"figures/{n}" for n in DEMO_FIGURES])
    figures.mkdir(exist_ok=True)
    save_figure(
        plot_training_curves(result.history, result.evals, title="KTO on the default toy"),
        figures / DEMO_FIGURES[0],
    )
    save_figure(
        plot_policy_before_after(task, evaluator, result.reference, result.policy),
        figures / DEMO_FIGURES[1],
    )
    save_figure(
        plot_utility_vs_kl(
            {"KTO": result.evals}, best=evaluator.best_utility, colors={"KTO": PALETTE["policy"]}
        ),
        figures / DEMO_FIGURES[2],
    )
    say(
        f"\nwrote {run_dir}/: summary.json, metrics.jsonl, evals.jsonl, config.json, "
        f"checkpoint.npz, figures/*.png  ({time.perf_counter() - started:.1f} s)"
    )
    return result


def _table(task: Any, before: list, after: list) -> str:
    """Before/after: each prompt's three most likely responses, probability and utility."""
    width = 34
    lines = [
        f"{'prompt':<34} | {'reference (before)':<{width}} | {'trained (after)':<{width}}",
        "-" * (34 + 2 * width + 6),
    ]
    for x, prompt in enumerate(task.prompts):
        for rank in range(len(before[x])):
            b_text, b_p, b_u = before[x][rank]
            a_text, a_p, a_u = after[x][rank]
            left = prompt if rank == 0 else ""
            b = f"{b_text:<16} p={b_p:.2f} u={b_u:+.1f}"
            a = f"{a_text:<16} p={a_p:.2f} u={a_u:+.1f}"
            lines.append(f"{left:<34} | {b:<{width}} | {a:<{width}}")
    return "\n".join(lines)
