"""The training loop: batches, optimizer, exact evaluation, checkpoints, a run directory.

``train(task, data, config)`` does, in order:

1. the reference: the task's base policy (or, with ``sft_steps > 0``, a fresh policy
   fine-tuned on the data's responses by this same loop), frozen; the policy starts as a
   copy of it, or of the ``policy`` passed in;
2. the reference's log-probs of every example, computed once;
3. for ``loss="kto"``, the paper's Eq. 8 weight check (a warning with the ratio and band);
4. ``max_steps`` optimizer steps. The batches of an epoch are a permutation of the data
   drawn from ``(seed, epoch)`` alone and cut into ``max(1, N // batch_size)`` nearly equal
   batches (each holds at least ``batch_size`` examples, every example is used once per
   epoch), so the batch of any step is known without replaying the run. The run stops at
   the first loss, gradient or optimizer state that is not finite, naming the knob to lower;
5. exact evaluation every ``eval_every`` steps; metrics per step with TRL's names.

Metrics. Each step logs ``loss``, ``grad_norm`` (the L2 norm of the whole gradient before
the update, as TRL logs it; Prop. 4.1 of the paper predicts it small on examples the policy
already gets right or hopelessly wrong), ``learning_rate``, ``kl`` and ``kl/unclamped`` (the
reference point used, and the mismatched mean before the clamp), ``rewards/chosen``,
``rewards/rejected``, ``rewards/margins``, ``logps/chosen``, ``logps/rejected`` and, for DPO,
``rewards/accuracies``. Every row holds every key: where TRL leaves a key out of its log
(a batch without desirable examples has no ``rewards/chosen``; DPO and SFT have no ``kl``;
a z0 mode without the batch estimate has no ``kl/unclamped``), minikto writes ``null``.

The run folder (``out_dir``) receives ``config.json`` (the configuration, the data's
identity, the command line and the versions), ``metrics.jsonl`` (one line per step) and
``evals.jsonl`` (appended at each save), ``checkpoint.npz`` (atomic, O(parameters):
parameters, optimizer state, step, and how many rows of each log belong to it),
``summary.json``, and the marker, lock and manifest (the list of every file the run writes
there) described in :mod:`minikto.training.rundir` (which also says what ``overwrite`` may
replace: only the manifest's entries). ``checkpoint_every=0`` saves only at the
end on runs shorter than :data:`AUTO_CHECKPOINT_STEPS` steps, and every
:data:`AUTO_CHECKPOINT_EVERY` steps on longer ones. ``resume=True`` continues from the
checkpoint on exactly the trajectory of an uninterrupted run, after checking every entry of
the checkpoint and that the data are the same; it appends to the logs, never rewrites them.
Before anything is allocated, the memory the run needs is estimated
(:mod:`minikto.training.memory`) and a run no machine of this size holds is refused.

The pieces live beside this module: the loop shared with the SFT that makes a reference in
:mod:`minikto.training.loop`, the run's files (start, resume, save) in
:mod:`minikto.training.runstate` and :mod:`minikto.training.records`, and what a run folder
may hold and replace in :mod:`minikto.training.rundir`.
"""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .. import _checks
from ..backend import dtype_name
from ..data.atomic import atomic_write
from ..data.feedback import PairedDataset, UnpairedDataset
from ..data.toy import ToyTask
from ..exact import ExactEvaluator
from ..policy import SoftmaxPolicy
from .config import PAIRED_LOSSES, KTOConfig, check_weight_balance
from .loop import Batches, batch_indices, optimize
from .memory import check_memory
from .optim import make_optimizer
from .records import data_identity, run_record
from .rundir import RunExistsError, RunFolder, open_folder
from .runstate import AUTO_CHECKPOINT_EVERY, AUTO_CHECKPOINT_STEPS, RunState
from .step import StepResult

__all__ = [
    "AUTO_CHECKPOINT_EVERY",
    "AUTO_CHECKPOINT_STEPS",
    "RunExistsError",
    "TrainResult",
    "batch_indices",
    "train",
]

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


def train(
    task: Any,
    data: UnpairedDataset | PairedDataset,
    config: KTOConfig | None = None,
    *,
    out_dir: str | Path | None = None,
    overwrite: bool = False,
    resume: bool = False,
    reference: SoftmaxPolicy | None = None,
    policy: SoftmaxPolicy | None = None,
    data_source: Mapping[str, Any] | None = None,
    command: Sequence[str] | None = None,
    quiet: bool = False,
    callback: Callable[[int, StepResult], None] | None = None,
) -> TrainResult:
    """Train a policy on ``data`` from the task's reference; see the module docstring.

    Parameters
    ----------
    task : ToyTask
        The toy (vocabulary, base policy, hidden utility for exact evaluation).
    data : UnpairedDataset or PairedDataset
        Paired for the losses of ``PAIRED_LOSSES`` (``"dpo"``, TRL's DPO loss types,
        ``"simpo"``, ``"orpo"``); unpaired for the others.
    config : KTOConfig, optional
    out_dir : path, optional
        The run folder (created; see :mod:`minikto.training.rundir` for what is refused).
    overwrite : bool
        Replace an existing run folder written by minikto (only once the new run is complete).
    resume : bool
        Continue from ``out_dir/checkpoint.npz`` (its configuration must match, but for
        ``max_steps`` and the bookkeeping knobs, and so must the data).
    reference : SoftmaxPolicy, optional
        Use this reference instead of the task's base policy (a frozen copy is kept).
    policy : SoftmaxPolicy, optional
        Start from this policy instead of the reference (a copy is trained; the policy passed
        in is never changed). Same vocabulary, backend, dtype and parameter shapes.
    data_source : dict, optional
        Where the data came from (``{"path", "sha256"}`` of a file, or ``{"task", "n",
        "seed"}``), recorded in ``config.json`` with the arrays' own sha256.
    command : list of str, optional
        The command line that started the run (recorded).
    quiet : bool
        No progress bar.
    callback : callable, optional
        Called as ``callback(step, result)`` after each optimizer step (1-based ``step``,
        the :class:`~minikto.training.step.StepResult` of that step).

    Returns
    -------
    TrainResult
    """
    config = _check_inputs(task, data, config)
    if overwrite and resume:
        raise ValueError(
            "overwrite, resume: expected at most one: resume=True (--resume) continues the run "
            "in out_dir, overwrite=True (--overwrite) replaces it; got both"
        )
    if resume and out_dir is None:
        raise ValueError("out_dir: resume=True needs the run directory to resume from")
    check_memory(task, features=config.features, batch_size=config.batch_size)
    identity = data_identity(data, data_source)
    run_record(config.to_dict(), identity, command)  # a value JSON cannot hold fails here
    reference, policy = _starting_policies(task, data, config, reference, policy)
    config = _as_trained(config, reference)
    record = run_record(config.to_dict(), identity, command)
    folder = None if out_dir is None else _open(out_dir, overwrite=overwrite, resume=resume)
    try:
        result = _run(task, data, config, reference, policy, folder, record, quiet, callback)
        if folder is not None:
            result.run_dir = folder.finish()
    except BaseException:
        if folder is not None:
            folder.abandon()
        raise
    return result


# ------------------------------------------------------------------------------------------
# Checks and the starting point (everything here runs before any folder is touched)


def _check_inputs(task: Any, data: Any, config: Any) -> KTOConfig:
    config = KTOConfig() if config is None else config
    if not isinstance(config, KTOConfig):
        raise TypeError(f"config: expected a KTOConfig; got {type(config).__name__}")
    if not isinstance(task, ToyTask):
        raise TypeError(f"task: expected a ToyTask; got {type(task).__name__}")
    if config.loss in PAIRED_LOSSES and not isinstance(data, PairedDataset):
        raise TypeError(
            f"data: loss={config.loss!r} expects a PairedDataset; got an UnpairedDataset "
            "(minikto.data.feedback.sample_paired makes one)"
        )
    if config.loss not in PAIRED_LOSSES and not isinstance(data, UnpairedDataset):
        raise TypeError(
            f"data: loss={config.loss!r} expects an UnpairedDataset; got "
            f"{type(data).__name__} (minikto.data.feedback.unpair converts pairs)"
        )
    _checks.at_least_two_examples(len(data), "data", where=" per batch", detail=" in all")
    return config


def _starting_policies(
    task: Any, data: Any, config: KTOConfig, reference: Any, policy: Any
) -> tuple[SoftmaxPolicy, SoftmaxPolicy]:
    """The frozen reference and the trainable copy the run starts from."""
    if reference is None:
        reference = _make_reference(task, data, config)
    elif not isinstance(reference, SoftmaxPolicy):
        raise TypeError(f"reference: expected a SoftmaxPolicy; got {type(reference).__name__}")
    _checks.same_response_space(reference, "reference", task, "the task's")
    if policy is None:
        policy = reference
    elif not isinstance(policy, SoftmaxPolicy):
        raise TypeError(f"policy: expected a SoftmaxPolicy; got {type(policy).__name__}")
    elif _layout(policy) != _layout(reference):
        raise ValueError(
            f"policy: expected the reference's backend, dtype and parameters "
            f"{_layout(reference)}; got {_layout(policy)}"
        )
    return reference.copy(frozen=True), policy.copy(frozen=False)


def _as_trained(config: KTOConfig, reference: SoftmaxPolicy) -> KTOConfig:
    """The configuration with the model knobs of the reference actually used (a reference
    passed in decides the backend, dtype and features, whatever the config said)."""
    width = getattr(reference.features, "width", None)
    model = {"backend": reference.backend, "dtype": dtype_name(reference.dtype),
             "features": "onehot" if width is None else int(width)}
    if all(getattr(config, k) == v for k, v in model.items()):
        return config
    return dataclasses.replace(config, **model)


def _layout(policy: SoftmaxPolicy) -> tuple:
    shapes = {k: tuple(v.shape) for k, v in policy.params.items()}
    return policy.backend, str(policy.dtype), shapes


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
    if isinstance(data, PairedDataset):
        prompts = np.concatenate([data.prompts, data.prompts])
        responses = np.concatenate([data.chosen, data.rejected])
    else:
        prompts, responses = data.prompts, data.responses
    everything = UnpairedDataset(prompts, responses, np.ones(len(prompts), dtype=bool))
    sft = KTOConfig(loss="sft", learning_rate=config.learning_rate,
                    batch_size=config.batch_size, seed=config.seed + 1)
    batches = Batches(policy, everything, None, sft.seed, None)
    optimizer = make_optimizer("adam", config.learning_rate)
    optimize(policy, policy, batches, sft, optimizer, range(config.sft_steps))
    return policy


#: What a run writes into its folder (listed in the folder's manifest before it is written).
RUN_FILES = ("config.json", "metrics.jsonl", "evals.jsonl", "checkpoint.npz", "summary.json")


def _open(out_dir: Any, *, overwrite: bool, resume: bool) -> RunFolder:
    folder = open_folder(out_dir, kind="run", overwrite=overwrite, resume=resume)
    try:
        folder.claim(RUN_FILES)
    except BaseException:
        folder.abandon()
        raise
    if folder.restarted and resume:  # a stub: nothing to resume, so the run starts over
        print(f"minikto: {folder.path} holds no checkpoint (a run stopped before its first "
              "save); starting it over", file=sys.stderr)
    return folder


def _run(
    task: Any, data: Any, config: KTOConfig, reference: SoftmaxPolicy, policy: SoftmaxPolicy,
    folder: RunFolder | None, record: dict[str, Any], quiet: bool, callback: Any,
) -> TrainResult:
    """Everything after the checks: the logs, the resume, the loop, the summary."""
    started = time.perf_counter()
    batches = Batches(reference, data, task, config.seed, task.max_length)
    if config.loss == "kto":
        check_weight_balance(int(data.desirable.sum()), int((~data.desirable).sum()),
                             config.desirable_weight, config.undesirable_weight)
    optimizer = make_optimizer(config.optimizer, config.learning_rate)
    evaluator = ExactEvaluator(task, reference)
    run = RunState(folder, config, record, policy, optimizer)
    run.restore(evaluator)
    bar = _progress_bar(config, quiet, run.start)

    def after(done: int, result: StepResult, norm: float) -> None:
        run.history.append({"step": done, **result.metrics, "grad_norm": norm,
                            "learning_rate": config.learning_rate})
        if config.eval_every and done % config.eval_every == 0 and done != config.max_steps:
            run.evals.append({"step": done, **evaluator(policy)})
        if run.every and done % run.every == 0 and done != config.max_steps:
            run.save(done)
        if callback is not None:
            callback(done, result)
        if bar is not None:
            bar.update(1)
            bar.set_postfix(loss=f"{result.loss:.4f}", refresh=False)

    try:
        optimize(policy, reference, batches, config, optimizer,
                  range(run.start, config.max_steps), after)
    finally:
        if bar is not None:
            bar.close()
    if run.evals[-1]["step"] != config.max_steps:
        run.evals.append({"step": config.max_steps, **evaluator(policy)})
    summary = _summary(run.evals, evaluator, run.history, config,
                       time.perf_counter() - started, record)
    run.save(config.max_steps)
    if folder is not None:
        with atomic_write(folder.work / "summary.json", "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2, allow_nan=False)
    return TrainResult(policy=policy, reference=reference, config=config, history=run.history,
                       evals=run.evals, summary=summary)


def _progress_bar(config: KTOConfig, quiet: bool, start: int) -> Any:
    """A tqdm bar on stderr, or None: shown when asked (``progress``), or by default for runs
    of 2000 steps or more when stderr is a terminal; redrawn at most a few times a second."""
    terminal = sys.stderr.isatty()
    show = config.progress if config.progress is not None else (
        config.max_steps >= 2000 and terminal)
    if quiet or not show or start >= config.max_steps:
        return None
    from tqdm import tqdm

    return tqdm(desc=f"minikto {config.loss}", initial=start, total=config.max_steps,
                file=sys.stderr, mininterval=0.25 if terminal else 10.0, dynamic_ncols=terminal)


def _summary(
    evals: list[dict],
    evaluator: ExactEvaluator,
    history: list[dict],
    config: KTOConfig,
    seconds: float,
    record: dict[str, Any],
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
        "data": record["data"],
        "command": record["command"],
        "versions": record["versions"],
    }
