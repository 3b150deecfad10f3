"""The state of one run on disk: its history, its evaluations, and how they are started,
resumed and saved.

A save appends the new rows to ``metrics.jsonl`` and ``evals.jsonl`` first, then writes the
checkpoint, which records how many rows (and bytes) of each log belong to it; so if a save
fails half-way, the logs may run ahead of the checkpoint but never behind, and a resume
reads exactly the rows the checkpoint vouches for (each one checked) and rewrites the logs
to them: a resume appends, every row and evaluation already logged stays (even under
another ``eval_every``). A resume also checks every entry of the checkpoint against the run
(:func:`~minikto.training.checkpoint.check_training_state`) and refuses other data (by
their digests: the same file under another spelling of its path is the same data).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from ..backend import dtype_name, to_numpy
from ..data.atomic import atomic_write
from ..data.files import read_user_bytes
from ..exact import ExactEvaluator
from ..policy import SoftmaxPolicy
from .checkpoint import CheckpointError, check_training_state, load_checkpoint, save_checkpoint
from .config import KTOConfig
from .optim import state_on
from .records import JsonlLog, describe_difference, read_rows, same_data
from .rundir import RunFolder

__all__ = ["AUTO_CHECKPOINT_EVERY", "AUTO_CHECKPOINT_STEPS", "RunState", "check_logit_range",
           "check_logs"]

#: With ``checkpoint_every=0``, runs of at least this many steps still checkpoint ...
AUTO_CHECKPOINT_STEPS = 1000
#: ... every this many steps.
AUTO_CHECKPOINT_EVERY = 250


class RunState:
    """The history, the evaluations and the files of one run: start, resume, save."""

    def __init__(self, folder: RunFolder | None, config: KTOConfig, record: dict[str, Any],
                 policy: SoftmaxPolicy, optimizer: Any) -> None:
        self.folder, self.config, self.record = folder, config, record
        self.policy, self.optimizer = policy, optimizer
        self.history: list[dict[str, Any]] = []
        self.evals: list[dict[str, Any]] = []
        self.start = 0
        every = config.checkpoint_every
        if every == 0 and config.max_steps >= AUTO_CHECKPOINT_STEPS:
            every = AUTO_CHECKPOINT_EVERY
        self.every = every if folder is not None else 0
        work = folder.work if folder is not None else Path()
        self.metrics, self.evals_log = JsonlLog(work / "metrics.jsonl"), JsonlLog(
            work / "evals.jsonl")

    def restore(self, evaluator: ExactEvaluator) -> None:
        """Resume from the checkpoint if there is one, then (re)write config.json and logs."""
        folder = self.folder
        path = None if folder is None else folder.work / "checkpoint.npz"
        if path is not None and path.exists():
            self._resume(path, evaluator.task.max_length)
        if not self.evals:
            self.evals.append({"step": 0, **evaluator(self.policy)})
        if folder is None:
            return
        record = self.record
        if path.exists():  # keep the command that started the run
            try:
                saved = json.loads(read_user_bytes(folder.work / "config.json",
                                                   name="config.json").decode("utf-8"))
            except (OSError, ValueError):
                saved = {}
            if isinstance(saved, dict) and "command" in saved:
                record = {**record, "command": saved["command"]}
        with atomic_write(folder.work / "config.json", "w", encoding="utf-8") as f:
            json.dump(record, f, indent=2, allow_nan=False)
        self.metrics.rewrite(self.history)
        self.evals_log.rewrite(self.evals)

    def _resume(self, path: Path, length: int) -> None:
        config, policy = self.config, self.policy
        state = load_checkpoint(path, config=config.to_dict())
        layout = {k: (tuple(v.shape), dtype_name(v.dtype)) for k, v in policy.params.items()}
        check_training_state(state, path, params=layout, optimizer=config.optimizer)
        extra = state["extra"]
        if not all(isinstance(extra.get(k), dict) for k in ("metrics", "evals", "data")):
            raise CheckpointError(
                f"checkpoint {path}: expected the history and evaluations a training run "
                f"saves; got the keys {sorted(extra)}"
            )
        if not same_data(extra["data"], self.record["data"]):
            raise ValueError(
                f"data: the run in {self.folder.path} was trained on other data "
                f"({describe_difference(extra['data'], self.record['data'])}); resume it "
                "with the same data, or start a new run"
            )
        start = state["step"]
        if start > config.max_steps:
            raise ValueError(
                f"max_steps: expected at least the checkpoint's step {start} to resume; "
                f"got {config.max_steps}"
            )
        history = read_rows(self.folder.work / "metrics.jsonl", extra["metrics"], path, "metrics")
        evals = read_rows(self.folder.work / "evals.jsonl", extra["evals"], path, "evals")
        check_logs(history, evals, start, path)
        xp = policy.xp
        for k, v in state["params"].items():  # each entry keeps its checked shape and dtype
            policy.params[k] = xp.asarray(v, dtype=policy.dtype)
        check_logit_range(policy, length, path)
        self.optimizer.load_state_dict(state_on(state["optimizer_state"], xp, policy.dtype))
        # resume appends: every evaluation already logged stays, whatever eval_every is now
        self.start, self.history, self.evals = start, history, evals

    def save(self, step: int) -> None:
        """Append the logs, then write the checkpoint that vouches for them."""
        if self.folder is None:
            return
        self.metrics.append(self.history)
        self.evals_log.append(self.evals)
        save_checkpoint(
            self.folder.work / "checkpoint.npz",
            step=step,
            params=self.policy.params,
            optimizer_state=self.optimizer.state_dict(),
            config=self.config.to_dict(),
            extra={"data": self.record["data"], "metrics": self.metrics.position(),
                   "evals": self.evals_log.position()},
        )


def check_logs(history: list[dict], evals: list[dict], step: int, path: Path) -> None:
    """The logs a checkpoint vouches for must be the run's, step by step."""
    if [h["step"] for h in history] != list(range(1, step + 1)):
        raise CheckpointError(
            f"checkpoint {path}: entry extra.metrics: expected one metrics row per step "
            f"1..{step}; got steps {[h['step'] for h in history][:5]}..."
        )
    steps = [e["step"] for e in evals]
    if not steps or steps[0] != 0 or steps != sorted(set(steps)) or steps[-1] > step:
        raise CheckpointError(
            f"checkpoint {path}: entry extra.evals: expected evaluations from step 0 in "
            f"increasing order up to step {step}; got steps {steps}"
        )
    keys = ("expected_utility", "kl_to_reference", "desirable_mass")
    if any(not isinstance(e.get(k), (int, float)) for e in evals for k in keys):
        raise CheckpointError(
            f"checkpoint {path}: entry extra.evals: expected {', '.join(keys)} in every "
            "evaluation"
        )


def check_logit_range(policy: SoftmaxPolicy, length: int, path: Path) -> None:
    """Refuse parameters whose next-token logits spread so far that a response's
    log-probability (a sum of ``length`` token log-probabilities, each at least minus the
    spread) could leave the float range: the losses could not use them."""
    xp = policy.xp
    prompts = np.repeat(np.arange(policy.num_prompts), policy.vocab_size + 1)
    states = np.tile(np.arange(policy.vocab_size + 1), policy.num_prompts)
    logits = to_numpy(policy.next_token_logits(xp.asarray(prompts), xp.asarray(states)))
    limit = float(np.finfo(logits.dtype).max) / (4 * length)
    with np.errstate(over="ignore", invalid="ignore"):
        spread = float(np.max(np.max(logits, axis=1) - np.min(logits, axis=1)))
    if not np.isfinite(spread) or spread > limit:
        raise CheckpointError(
            f"checkpoint {path}: entry param: expected parameters whose next-token logits "
            f"spread at most {limit:.3g} (a response's log-probability sums {length} of "
            f"them and must stay finite); got logits spreading {spread:.3g}"
        )
