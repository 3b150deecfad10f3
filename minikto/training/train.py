"""The training loop: batches, optimizer, exact evaluation, checkpoints, a run directory.

``train(task, data, config)`` does, in order:

1. the reference: the task's base policy (or, with ``sft_steps > 0``, a fresh policy
   fine-tuned on the data's responses), frozen; the policy starts as a copy of it;
2. the reference's log-probs of every example, computed once;
3. for ``loss="kto"``, the paper's Eq. 8 weight check (a warning with the ratio and band);
4. ``max_steps`` optimizer steps. The batches of an epoch are a permutation of the data
   drawn from ``(seed, epoch)`` alone and cut into ``max(1, N // batch_size)`` nearly equal
   batches (each holds at least ``batch_size`` examples, every example is used once per
   epoch), so the batch of any step is known without replaying the run;
5. exact evaluation every ``eval_every`` steps; metrics per step with TRL's names.

With ``out_dir`` the run directory receives ``config.json``, ``metrics.jsonl`` (one line per
step), ``evals.jsonl``, ``summary.json`` and ``checkpoint.npz`` (atomically written). An
existing non-empty directory is never overwritten unless ``overwrite=True``;
``resume=True`` continues from its checkpoint on exactly the trajectory of an uninterrupted
run (the checkpoint holds the parameters, the optimizer state, the step and the history).
"""

from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..data.atomic import atomic_write
from ..data.feedback import PairedDataset, UnpairedDataset
from ..data.toy import ToyTask
from ..exact import ExactEvaluator
from ..policy import SoftmaxPolicy
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from .config import KTOConfig, check_weight_balance
from .optim import make_optimizer
from .step import StepResult, paired_step, unpaired_step

__all__ = ["RunExistsError", "TrainResult", "batch_indices", "train"]


class RunExistsError(FileExistsError):
    """The run directory exists and holds files; pass overwrite=True or resume=True."""


@dataclass
class TrainResult:
    """What :func:`train` returns."""

    policy: SoftmaxPolicy  #: the trained policy
    reference: SoftmaxPolicy  #: the frozen reference
    config: KTOConfig
    history: list[dict[str, Any]] = field(default_factory=list)  #: one metrics dict per step
    evals: list[dict[str, Any]] = field(default_factory=list)  #: exact evaluations
    summary: dict[str, Any] = field(default_factory=dict)
    run_dir: Path | None = None


def batch_indices(num_examples: int, batch_size: int, seed: int, step: int) -> np.ndarray:
    """The example indices of batch number ``step`` (0-based), a pure function of its inputs.

    Epoch ``e`` shuffles the data with ``numpy.random.default_rng([seed, e])`` and cuts the
    permutation into ``max(1, N // batch_size)`` nearly equal batches.
    """
    if num_examples < 2:
        raise ValueError(f"data: expected at least 2 examples per batch; got {num_examples} in all")
    per_epoch = max(1, num_examples // batch_size)
    epoch, position = divmod(step, per_epoch)
    order = np.random.default_rng([seed, epoch]).permutation(num_examples)
    return np.array_split(order, per_epoch)[position]


def train(
    task: Any,
    data: UnpairedDataset | PairedDataset,
    config: KTOConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    reference: SoftmaxPolicy | None = None,
) -> TrainResult:
    """Train a policy on ``data`` from the task's reference; see the module docstring.

    Parameters
    ----------
    task : ToyTask
        The toy (vocabulary, base policy, hidden utility for exact evaluation).
    data : UnpairedDataset or PairedDataset
        Unpaired for ``"kto"``, ``"apo_zero_unpaired"``, ``"sft"``; paired for ``"dpo"``.
    config : KTOConfig, optional
    out_dir : path, optional
        The run directory (created).
    overwrite : bool
        Replace an existing non-empty run directory.
    resume : bool
        Continue from ``out_dir/checkpoint.npz`` (its configuration must match, but for
        ``max_steps`` and the bookkeeping knobs).
    reference : SoftmaxPolicy, optional
        Use this reference instead of the task's base policy.

    Returns
    -------
    TrainResult
    """
    config = KTOConfig() if config is None else config
    if not isinstance(config, KTOConfig):
        raise TypeError(f"config: expected a KTOConfig; got {type(config).__name__}")
    if not isinstance(task, ToyTask):
        raise TypeError(f"task: expected a ToyTask; got {type(task).__name__}")
    started = time.perf_counter()
    paired = isinstance(data, PairedDataset)
    if config.loss == "dpo" and not paired:
        raise TypeError(
            "data: loss='dpo' expects a PairedDataset; got an UnpairedDataset "
            "(minikto.data.feedback.sample_paired makes one)"
        )
    if config.loss != "dpo" and not isinstance(data, UnpairedDataset):
        raise TypeError(
            f"data: loss={config.loss!r} expects an UnpairedDataset; got "
            f"{type(data).__name__} (minikto.data.feedback.unpair converts pairs)"
        )
    run_dir = _prepare_run_dir(out_dir, overwrite=overwrite, resume=resume)

    # 1. reference and policy
    if reference is None:
        reference = _make_reference(task, data, config)
    elif not isinstance(reference, SoftmaxPolicy):
        raise TypeError(f"reference: expected a SoftmaxPolicy; got {type(reference).__name__}")
    for attr in ("vocab_size", "num_prompts", "eos_token"):
        if getattr(reference, attr) != getattr(task, attr):
            raise ValueError(
                f"reference: expected the task's {attr}, {getattr(task, attr)}; "
                f"got {getattr(reference, attr)}"
            )
    reference = reference.copy(frozen=True)
    policy = reference.copy(frozen=False)
    xp = policy.xp
    optimizer = make_optimizer(config.optimizer, config.learning_rate)

    # 2. the data on the backend, and the reference log-probs, once
    arrays = _to_backend(xp, data)
    if paired:
        ref_chosen = reference.sequence_logps(arrays["prompts"], arrays["chosen"])
        ref_rejected = reference.sequence_logps(arrays["prompts"], arrays["rejected"])
    else:
        ref_logps = reference.sequence_logps(arrays["prompts"], arrays["responses"])

    # 3. Eq. 8
    if config.loss == "kto":
        check_weight_balance(
            int(data.desirable.sum()),
            int((~data.desirable).sum()),
            config.desirable_weight,
            config.undesirable_weight,
        )

    evaluator = ExactEvaluator(task, reference)
    history: list[dict[str, Any]] = []
    evals: list[dict[str, Any]] = []
    start = 0
    if resume and run_dir is not None and (run_dir / "checkpoint.npz").exists():
        state = load_checkpoint(run_dir / "checkpoint.npz", config=config.to_dict())
        _check_resumable(state, policy, config, run_dir / "checkpoint.npz")
        start = state["step"]
        policy.params = {k: xp.asarray(v, dtype=policy.dtype) for k, v in state["params"].items()}
        optimizer.load_state_dict(state["optimizer_state"], xp, policy.dtype)
        history = state["extra"]["history"][:start]
        # keep the scheduled evaluations; the saving run's final one is not on the schedule
        evals = [
            e
            for e in state["extra"]["evals"]
            if e["step"] <= start
            and (e["step"] == 0 or (config.eval_every and e["step"] % config.eval_every == 0))
        ]
    elif resume:
        raise FileNotFoundError(
            f"out_dir: resume=True expects {run_dir}/checkpoint.npz; none found"
        )
    if run_dir is not None:
        with atomic_write(run_dir / "config.json", "w", encoding="utf-8") as f:
            json.dump(config.to_dict(), f, indent=2)
    if not evals:
        evals.append({"step": 0, **evaluator(policy)})

    def save(step: int) -> None:
        if run_dir is None:
            return
        save_checkpoint(
            run_dir / "checkpoint.npz",
            step=step,
            params=policy.params,
            optimizer_state=optimizer.state_dict(),
            config=config.to_dict(),
            extra={"history": history, "evals": evals},
        )
        _write_jsonl(run_dir / "metrics.jsonl", history)
        _write_jsonl(run_dir / "evals.jsonl", evals)

    progress = config.progress if config.progress is not None else config.max_steps >= 2000
    steps = range(start, config.max_steps)
    if progress:
        from tqdm.auto import tqdm

        steps = tqdm(steps, desc=f"minikto {config.loss}", initial=start, total=config.max_steps)

    # 4. the loop
    n = len(data)
    for step in steps:
        idx = batch_indices(n, config.batch_size, config.seed, step)
        ix = xp.asarray(idx)
        if paired:
            result: StepResult = paired_step(
                policy,
                xp.take(arrays["prompts"], ix, axis=0),
                xp.take(arrays["chosen"], ix, axis=0),
                xp.take(arrays["rejected"], ix, axis=0),
                xp.take(ref_chosen, ix, axis=0),
                xp.take(ref_rejected, ix, axis=0),
                config,
            )
        else:
            result = unpaired_step(
                policy,
                reference,
                xp.take(arrays["prompts"], ix, axis=0),
                xp.take(arrays["responses"], ix, axis=0),
                xp.take(arrays["desirable"], ix, axis=0),
                xp.take(ref_logps, ix, axis=0),
                config,
                max_length=task.max_length,
            )
        if not np.isfinite(result.loss):
            raise FloatingPointError(f"step {step}: the loss is {result.loss}; lower learning_rate")
        optimizer.step(policy.params, result.grads)
        history.append({"step": step + 1, **result.metrics})
        done = step + 1
        if config.eval_every and done % config.eval_every == 0 and done != config.max_steps:
            evals.append({"step": done, **evaluator(policy)})
        if config.checkpoint_every and done % config.checkpoint_every == 0:
            save(done)
        if progress:
            steps.set_postfix(loss=f"{result.loss:.4f}")

    # 5. final evaluation, summary, files
    if evals[-1]["step"] != config.max_steps:
        evals.append({"step": config.max_steps, **evaluator(policy)})
    summary = _summary(evals, evaluator, history, config, time.perf_counter() - started)
    save(config.max_steps)
    if run_dir is not None:
        with atomic_write(run_dir / "summary.json", "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    return TrainResult(
        policy=policy,
        reference=reference,
        config=config,
        history=history,
        evals=evals,
        summary=summary,
        run_dir=run_dir,
    )


# ------------------------------------------------------------------------------------------
# helpers


def _make_reference(task: Any, data: Any, config: KTOConfig) -> SoftmaxPolicy:
    """The base policy, or a fresh policy after ``sft_steps`` of SFT on the data's responses."""
    if config.sft_steps == 0:
        if config.features != "onehot":
            raise ValueError(
                f"features: the toy's base policy is tabular, so features={config.features!r} "
                "needs sft_steps > 0 to learn a reference from the data"
            )
        return task.base_policy(backend=config.backend, dtype=config.dtype)
    policy = SoftmaxPolicy(
        task.vocab_size,
        task.num_prompts,
        features=config.features,
        seed=config.seed,
        backend=config.backend,
        dtype=config.dtype,
        eos_token=task.eos_token,
    )
    xp = policy.xp
    if isinstance(data, PairedDataset):
        prompts = np.concatenate([data.prompts, data.prompts])
        responses = np.concatenate([data.chosen, data.rejected])
    else:
        prompts, responses = data.prompts, data.responses
    sft_config = KTOConfig(
        loss="sft",
        learning_rate=config.learning_rate,
        batch_size=config.batch_size,
        seed=config.seed,
    )
    optimizer = make_optimizer("adam", config.learning_rate)
    everything = xp.asarray(np.ones(len(prompts), dtype=bool))
    p_all, r_all = xp.asarray(prompts), xp.asarray(responses)
    for step in range(config.sft_steps):
        ix = xp.asarray(batch_indices(len(prompts), config.batch_size, config.seed + 1, step))
        p, r = xp.take(p_all, ix, axis=0), xp.take(r_all, ix, axis=0)
        zeros = xp.zeros(p.shape, dtype=policy.dtype)
        result = unpaired_step(
            policy, policy, p, r, xp.take(everything, ix, axis=0), zeros, sft_config
        )
        optimizer.step(policy.params, result.grads)
    return policy


def _check_resumable(state: dict[str, Any], policy: SoftmaxPolicy, config: KTOConfig,
                     path: Path) -> None:
    """Refuse a checkpoint that this run cannot continue from (CheckpointError)."""
    shapes = {k: tuple(v.shape) for k, v in policy.params.items()}
    saved = {k: tuple(v.shape) for k, v in state["params"].items()}
    if saved != shapes:
        raise CheckpointError(
            f"checkpoint {path}: expected parameters {shapes} for this task and model; "
            f"got {saved}"
        )
    extra = state["extra"]
    if not all(isinstance(extra.get(k), list) for k in ("history", "evals")):
        raise CheckpointError(
            f"checkpoint {path}: expected the history and evaluations a training run saves; "
            f"got the keys {sorted(extra)}"
        )
    if state["step"] > config.max_steps:
        raise ValueError(
            f"max_steps: expected at least the checkpoint's step {state['step']} to resume; "
            f"got {config.max_steps}"
        )


def _to_backend(xp: Any, data: Any) -> dict[str, Any]:
    if isinstance(data, PairedDataset):
        names = ("prompts", "chosen", "rejected")
    else:
        names = ("prompts", "responses", "desirable")
    return {name: xp.asarray(np.asarray(getattr(data, name))) for name in names}


def _prepare_run_dir(out_dir: str | Path | None, *, overwrite: bool, resume: bool) -> Path | None:
    if out_dir is None:
        if resume:
            raise ValueError("out_dir: resume=True needs the run directory to resume from")
        return None
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(f"out_dir: expected a directory path (str or Path); got {out_dir!r}")
    run_dir = Path(out_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise NotADirectoryError(f"out_dir: expected a directory; {run_dir} is a file")
    if run_dir.exists() and any(run_dir.iterdir()) and not resume:
        if not overwrite:
            raise RunExistsError(
                f"out_dir: {run_dir} already holds a run; pass overwrite=True (--overwrite) to "
                "replace it or resume=True (--resume) to continue it"
            )
        shutil.rmtree(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    return run_dir


def _write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    with atomic_write(path, "w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row) + "\n")


def _summary(
    evals: list[dict],
    evaluator: ExactEvaluator,
    history: list[dict],
    config: KTOConfig,
    seconds: float,
) -> dict[str, Any]:
    first, last = evals[0], evals[-1]
    return {
        "expected_utility": {
            "reference": first["expected_utility"],
            "final": last["expected_utility"],
            "best_possible": evaluator.best_utility,
        },
        "kl_to_reference": last["kl_to_reference"],
        "desirable_mass": {"reference": first["desirable_mass"], "final": last["desirable_mass"]},
        "final_loss": history[-1]["loss"] if history else None,
        "steps": config.max_steps,
        "loss": config.loss,
        "seconds": seconds,
    }
