"""Nothing lost: a run interrupted at any point resumes onto exactly the uninterrupted
trajectory, on every backend; every run-directory file is replaced atomically; a checkpoint
that does not fit the run is refused before anything is written.

``tests/test_train.py`` already covers: resuming a run that ended normally (numpy and
array_api_strict, adam and sgd, z0 "batch-grad"), never overwriting a run unless told, a
failure while writing a checkpoint, truncated / foreign / incompatible checkpoints and the
format version. This file adds the rest: interruptions by an exception in the middle of a run
(after some checkpoint_every saves) for the z0 modes "exact" and "batch", loss "dpo",
float32 and SGD, two interruptions in a row, failures while writing metrics.jsonl and
summary.json, resuming a finished run, and checkpoints that do not fit.
"""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import minikto.data.atomic
import minikto.training.optim
import minikto.training.records
from minikto.data.feedback import sample_paired, sample_unpaired
from minikto.data.toy import bandit_task, default_task
from minikto.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minikto.training.config import KTOConfig
from minikto.training.train import train

pytestmark = pytest.mark.filterwarnings("ignore::minikto.training.config.WeightBalanceWarning")

TASK = default_task()
STEPS, EVERY, CRASH = 12, 3, 8  # checkpoints at steps 3 and 6; the 8th step raises
RUN_FILES = ("config.json", "metrics.jsonl", "evals.jsonl", "summary.json", "checkpoint.npz")


@pytest.fixture(scope="module")
def unpaired():
    return sample_unpaired(TASK, 200, seed=1)


@pytest.fixture(scope="module")
def paired():
    return sample_paired(TASK, 150, seed=2)


SCENARIOS = {
    "kto z0=exact": dict(z0="exact"),
    "kto z0=batch": dict(z0="batch"),
    "dpo": dict(loss="dpo"),
    "dpo, dense features, SFT reference": dict(loss="dpo", features=4, sft_steps=5),
    "kto float32": dict(dtype="float32", z0="batch-grad"),
    "apo_zero_unpaired sgd": dict(loss="apo_zero_unpaired", optimizer="sgd"),
}


def config(backend: str, max_steps: int = STEPS, **kw) -> KTOConfig:
    return KTOConfig(max_steps=max_steps, batch_size=16, learning_rate=0.05, eval_every=4,
                     checkpoint_every=EVERY, seed=3, backend=backend, **kw)


class PowerCut(Exception):
    """The interruption: raised from inside the optimizer, in the middle of a run."""


def cut_power_at(monkeypatch, call: int) -> None:
    """Make the ``call``-th optimizer step of the next run raise PowerCut (1-based)."""
    calls = []
    for cls in (minikto.training.optim.Adam, minikto.training.optim.SGD):
        original = cls.step

        def step(self, params, grads, _original=original):
            calls.append(1)
            if len(calls) == call:
                raise PowerCut(f"optimizer step {call}")
            return _original(self, params, grads)

        monkeypatch.setattr(cls, "step", step)


def without_seconds(summary: dict) -> dict:
    return {k: v for k, v in summary.items() if k != "seconds"}


def leftovers(run_dir) -> list[str]:
    return sorted(p.name for p in run_dir.iterdir() if p.name.endswith(".tmp"))


def jsonl(path) -> list[dict]:
    return [json.loads(row) for row in path.read_text(encoding="utf-8").splitlines()]


def assert_same_run(resumed, whole, resumed_dir, whole_dir) -> None:
    np.testing.assert_array_equal(resumed.policy.get_flat(), whole.policy.get_flat())
    assert resumed.history == whole.history and resumed.evals == whole.evals
    assert without_seconds(resumed.summary) == without_seconds(whole.summary)
    for name in ("metrics.jsonl", "evals.jsonl", "config.json"):
        assert (resumed_dir / name).read_bytes() == (whole_dir / name).read_bytes(), name
    assert without_seconds(json.loads((resumed_dir / "summary.json").read_text())) == (
        without_seconds(json.loads((whole_dir / "summary.json").read_text()))
    )
    a, b = load_checkpoint(resumed_dir / "checkpoint.npz"), load_checkpoint(
        whole_dir / "checkpoint.npz")
    assert a["step"] == b["step"] == STEPS
    for group in ("params", "optimizer_state"):
        assert a[group].keys() == b[group].keys()
        for k in a[group]:
            np.testing.assert_array_equal(a[group][k], b[group][k])
            assert a[group][k].dtype == b[group][k].dtype


# ------------------------------------------------------------------------------------------
# Interrupted runs


@pytest.mark.parametrize("scenario", list(SCENARIOS))
def test_a_run_interrupted_mid_way_resumes_onto_the_uninterrupted_trajectory(
    backend, scenario, unpaired, paired, tmp_path, monkeypatch
):
    kw = SCENARIOS[scenario]
    data = paired if kw.get("loss") == "dpo" else unpaired
    whole = train(TASK, data, config(backend, **kw), out_dir=tmp_path / "whole")

    cut_power_at(monkeypatch, kw.get("sft_steps", 0) + CRASH)  # the SFT stage steps too
    with pytest.raises(PowerCut):
        train(TASK, data, config(backend, **kw), out_dir=tmp_path / "cut")
    monkeypatch.undo()
    # what the crash left: the state of the last save (step 6), complete and consistent
    last_save = (CRASH - 1) // EVERY * EVERY
    run = tmp_path / "cut"
    assert load_checkpoint(run / "checkpoint.npz")["step"] == last_save
    assert jsonl(run / "metrics.jsonl") == whole.history[:last_save]
    assert not (run / "summary.json").exists() and leftovers(run) == []

    resumed = train(TASK, data, config(backend, **kw), out_dir=run, resume=True)
    assert_same_run(resumed, whole, run, tmp_path / "whole")


def test_two_interruptions_in_a_row_still_resume_onto_the_uninterrupted_trajectory(
    unpaired, tmp_path, monkeypatch
):
    whole = train(TASK, unpaired, config("numpy"), out_dir=tmp_path / "whole")
    run = tmp_path / "cut"
    for crash, resume in ((5, False), (5, True)):  # the second run crashes at step 3 + 5 = 8
        cut_power_at(monkeypatch, crash)
        with pytest.raises(PowerCut):
            train(TASK, unpaired, config("numpy"), out_dir=run, resume=resume)
        monkeypatch.undo()
    assert load_checkpoint(run / "checkpoint.npz")["step"] == 6
    resumed = train(TASK, unpaired, config("numpy"), out_dir=run, resume=True)
    assert_same_run(resumed, whole, run, tmp_path / "whole")


def test_resuming_with_other_bookkeeping_knobs_keeps_the_trajectory(
    unpaired, tmp_path, monkeypatch
):
    """progress and checkpoint_every may change between the saving and the resuming run."""
    whole = train(TASK, unpaired, config("numpy"), out_dir=tmp_path / "whole")
    run = tmp_path / "cut"
    cut_power_at(monkeypatch, CRASH)
    with pytest.raises(PowerCut):
        train(TASK, unpaired, config("numpy"), out_dir=run)
    monkeypatch.undo()
    knobs = KTOConfig(**{**config("numpy").to_dict(), "progress": True, "checkpoint_every": 5})
    resumed = train(TASK, unpaired, knobs, out_dir=run, resume=True)
    np.testing.assert_array_equal(resumed.policy.get_flat(), whole.policy.get_flat())
    assert resumed.history == whole.history and resumed.evals == whole.evals
    assert jsonl(run / "metrics.jsonl") == whole.history


def fail_on_replace(monkeypatch, name: str, occurrence: int) -> None:
    """Make the ``occurrence``-th atomic replacement of the file ``name`` fail (1-based)."""
    seen = []
    original = os.replace

    def replace(src, dst):
        if os.path.basename(dst) == name:
            seen.append(dst)
            if len(seen) == occurrence:
                raise OSError(f"disk full while replacing {name}")
        return original(src, dst)

    monkeypatch.setattr(minikto.data.atomic.os, "replace", replace)


def fail_on_append(monkeypatch, name: str, occurrence: int) -> None:
    """Make the ``occurrence``-th append to the log ``name`` write half its bytes, then fail
    (a full disk)."""
    seen = []

    class HalfFile:
        def __init__(self, handle):
            self.handle = handle

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.handle.close()

        def write(self, data):
            self.handle.write(data[: len(data) // 2])
            raise OSError(28, "No space left on device")

        def __getattr__(self, attr):
            return getattr(self.handle, attr)

    def fake_open(path, mode="r", *args, **kwargs):
        handle = open(path, mode, *args, **kwargs)
        if os.path.basename(path) == name and mode == "r+b" and not seen.count("cut"):
            seen.append(path)
            if len(seen) == occurrence:
                seen.append("cut")
                return HalfFile(handle)
        return handle

    monkeypatch.setattr(minikto.training.records, "open", fake_open, raising=False)


def test_a_failure_while_appending_metrics_keeps_the_files_consistent_and_the_run_resumes(
    unpaired, tmp_path, monkeypatch
):
    whole = train(TASK, unpaired, config("numpy"), out_dir=tmp_path / "whole")
    run = tmp_path / "cut"
    fail_on_append(monkeypatch, "metrics.jsonl", 2)  # the save at step 6
    with pytest.raises(OSError, match=r"could not write .*cut/metrics.jsonl: No space left"):
        train(TASK, unpaired, config("numpy"), out_dir=run)
    monkeypatch.undo()
    # the half-written rows were cut back: the logs and the checkpoint of step 3 agree
    assert jsonl(run / "metrics.jsonl") == whole.history[:3] and leftovers(run) == []
    assert load_checkpoint(run / "checkpoint.npz")["step"] == 3  # the logs are written first
    resumed = train(TASK, unpaired, config("numpy"), out_dir=run, resume=True)
    assert_same_run(resumed, whole, run, tmp_path / "whole")


def test_a_failure_while_writing_the_checkpoint_leaves_logs_the_old_checkpoint_ignores(
    unpaired, tmp_path, monkeypatch
):
    whole = train(TASK, unpaired, config("numpy"), out_dir=tmp_path / "whole")
    run = tmp_path / "cut"
    fail_on_replace(monkeypatch, "checkpoint.npz", 2)  # the save at step 6
    with pytest.raises(OSError, match="disk full while replacing checkpoint.npz"):
        train(TASK, unpaired, config("numpy"), out_dir=run)
    monkeypatch.undo()
    assert len(jsonl(run / "metrics.jsonl")) == 6  # ahead of the checkpoint of step 3
    assert load_checkpoint(run / "checkpoint.npz")["step"] == 3
    resumed = train(TASK, unpaired, config("numpy"), out_dir=run, resume=True)
    assert_same_run(resumed, whole, run, tmp_path / "whole")


def test_a_failure_while_writing_the_summary_keeps_every_other_file_and_resume_completes_it(
    unpaired, tmp_path, monkeypatch
):
    whole = train(TASK, unpaired, config("numpy"), out_dir=tmp_path / "whole")
    run = tmp_path / "cut"
    fail_on_replace(monkeypatch, "summary.json", 1)
    with pytest.raises(OSError, match="disk full while replacing summary.json"):
        train(TASK, unpaired, config("numpy"), out_dir=run)
    monkeypatch.undo()
    assert not (run / "summary.json").exists() and leftovers(run) == []
    assert load_checkpoint(run / "checkpoint.npz")["step"] == STEPS
    resumed = train(TASK, unpaired, config("numpy"), out_dir=run, resume=True)
    assert resumed.history == whole.history  # no step is taken twice
    assert_same_run(resumed, whole, run, tmp_path / "whole")


def test_resuming_a_finished_run_changes_nothing(unpaired, tmp_path):
    first = train(TASK, unpaired, config("numpy"), out_dir=tmp_path / "run")
    before = {name: (tmp_path / "run" / name).read_bytes() for name in RUN_FILES}
    again = train(TASK, unpaired, config("numpy"), out_dir=tmp_path / "run", resume=True)
    np.testing.assert_array_equal(again.policy.get_flat(), first.policy.get_flat())
    assert again.history == first.history and again.evals == first.evals
    for name in ("config.json", "metrics.jsonl", "evals.jsonl"):
        assert (tmp_path / "run" / name).read_bytes() == before[name], name


def test_every_run_directory_file_is_written_to_a_temporary_file_then_renamed(
    unpaired, tmp_path, monkeypatch
):
    """The logs are rewritten this way when a run starts, then only appended (the checkpoint
    records how much of them is valid); every other file is replaced at each save."""
    renames = []
    original = os.replace

    def replace(src, dst):
        renames.append((os.fspath(src), os.fspath(dst)))
        return original(src, dst)

    monkeypatch.setattr(minikto.data.atomic.os, "replace", replace)
    run = tmp_path / "run"
    train(TASK, unpaired, config("numpy"), out_dir=run)
    assert sorted(p.name for p in run.iterdir() if not p.name.startswith(".minikto")) == sorted(
        RUN_FILES)
    for name in RUN_FILES:
        sources = [src for src, dst in renames if os.path.basename(dst) == name]
        assert sources, f"{name} was not written through atomic_write"
        for src in sources:  # a hidden temporary beside the target, so the rename is atomic
            assert os.path.dirname(src) == str(run.resolve())
            assert os.path.basename(src).startswith(f".{name}.") and src.endswith(".tmp")
    saves = STEPS // EVERY
    assert len([1 for _, dst in renames if dst.endswith("checkpoint.npz")]) == saves
    assert len([1 for _, dst in renames if dst.endswith("metrics.jsonl")]) == 1


# ------------------------------------------------------------------------------------------
# Checkpoints that do not fit the run are refused before anything is written


def snapshot(run_dir) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(run_dir.iterdir())}


@pytest.fixture
def finished_run(unpaired, tmp_path):
    run = tmp_path / "run"
    train(TASK, unpaired, config("numpy", max_steps=6), out_dir=run)
    return run


def test_resume_refuses_fewer_max_steps_than_the_checkpoint_has_taken(unpaired, finished_run):
    before = snapshot(finished_run)
    with pytest.raises(ValueError, match="max_steps: expected at least the checkpoint's step 6"):
        train(TASK, unpaired, config("numpy", max_steps=4), out_dir=finished_run, resume=True)
    assert snapshot(finished_run) == before


def test_resume_refuses_the_checkpoint_of_another_task_naming_the_shapes(finished_run):
    task = bandit_task()  # same configuration, another vocabulary: other parameter shapes
    before = snapshot(finished_run)
    with pytest.raises(CheckpointError, match=r"expected parameters \{'prompt': \(5, 11\)"):
        train(task, sample_unpaired(task, 100, seed=0), config("numpy", max_steps=8),
              out_dir=finished_run, resume=True)
    assert snapshot(finished_run) == before


def test_resume_refuses_a_truncated_checkpoint_and_overwrites_nothing(unpaired, finished_run):
    path = finished_run / "checkpoint.npz"
    path.write_bytes(path.read_bytes()[:1000])
    before = snapshot(finished_run)
    with pytest.raises(CheckpointError, match="truncated or not one"):
        train(TASK, unpaired, config("numpy", max_steps=8), out_dir=finished_run, resume=True)
    assert snapshot(finished_run) == before


def test_resume_refuses_a_checkpoint_without_the_history_of_a_training_run(
    unpaired, finished_run
):
    state = load_checkpoint(finished_run / "checkpoint.npz")
    save_checkpoint(finished_run / "checkpoint.npz", step=state["step"], params=state["params"],
                    optimizer_state=state["optimizer_state"], config=state["config"])
    with pytest.raises(CheckpointError, match="expected the history and evaluations"):
        train(TASK, unpaired, config("numpy", max_steps=8), out_dir=finished_run, resume=True)
