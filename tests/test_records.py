"""The run record and the logs a checkpoint vouches for: each malformed piece is refused
with an error naming it."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

import minikto.training.rundir as rundir
from minikto.data.feedback import sample_unpaired
from minikto.data.toy import default_task
from minikto.training.checkpoint import CheckpointError, save_checkpoint
from minikto.training.config import KTOConfig
from minikto.training.records import read_rows
from minikto.training.train import train

pytestmark = pytest.mark.filterwarnings("ignore::minikto.training.config.WeightBalanceWarning")

TASK = default_task()
CONFIG = KTOConfig(max_steps=4, batch_size=16, eval_every=2)
MORE = KTOConfig(**{**CONFIG.to_dict(), "max_steps": 6})


@pytest.fixture(scope="module")
def data():
    return sample_unpaired(TASK, 100, seed=1)


@pytest.fixture
def run(data, tmp_path):
    folder = tmp_path / "run"
    train(TASK, data, CONFIG, out_dir=folder)
    return folder


@pytest.mark.parametrize(("kw", "error", "message"), [
    ({"data_source": ["a"]}, TypeError, "data_source: expected a dict with str keys"),
    ({"data_source": {"n": float("nan")}}, ValueError, "data_source: expected a JSON value"),
    ({"command": "minikto train"}, TypeError, "command: expected a list of str"),
    ({"policy": "base"}, TypeError, "policy: expected a SoftmaxPolicy; got str"),
])
def test_train_refuses_a_malformed_record_or_start_naming_the_argument(data, tmp_path, kw,
                                                                       error, message):
    with pytest.raises(error, match=message):
        train(TASK, data, CONFIG, out_dir=tmp_path / "run", **kw)
    assert not (tmp_path / "run").exists()


def same_length_edit(path, line: int, old: str, new: str) -> None:
    rows = path.read_text().splitlines(keepends=True)
    assert len(old) == len(new) and old in rows[line]
    rows[line] = rows[line].replace(old, new, 1)
    path.write_text("".join(rows))


@pytest.mark.parametrize(("file", "line", "old", "new", "message"), [
    ("metrics.jsonl", 1, '"step": 2', '"step": 9', "expected one metrics row per step 1..4"),
    ("metrics.jsonl", 0, '"step": 1', '"step": 1', None),
    ("evals.jsonl", 1, "desirable_mass", "desirable_masz", "expected expected_utility, "),
    ("evals.jsonl", 0, '{"step": 0', '["step", 0', "is not JSON"),
    ("evals.jsonl", 0, '"step": 0', '"step": -', "is not JSON"),
    ("metrics.jsonl", 0, '"step": 1', '"step": 1', None),
])
def test_logs_edited_behind_the_checkpoints_back_are_refused(data, run, file, line, old, new,
                                                             message):
    same_length_edit(run / file, line, old, new)
    if message is None:  # an edit that changes nothing is not an error
        train(TASK, data, MORE, out_dir=run, resume=True)
        return
    with pytest.raises(CheckpointError, match=message):
        train(TASK, data, MORE, out_dir=run, resume=True)


def test_a_missing_log_or_a_malformed_position_is_named(run, tmp_path):
    checkpoint = run / "checkpoint.npz"
    with pytest.raises(CheckpointError, match="the file is missing"):
        read_rows(tmp_path / "gone.jsonl", {"rows": 1, "bytes": 3}, checkpoint, "metrics")
    with pytest.raises(CheckpointError, match=r"entry extra.metrics.rows: expected an integer"):
        read_rows(run / "metrics.jsonl", {"rows": True, "bytes": 3}, checkpoint, "metrics")
    with pytest.raises(CheckpointError, match="expected the history and evaluations"):
        read_rows(run / "metrics.jsonl", [1], checkpoint, "metrics")
    (tmp_path / "bad.jsonl").write_text('{"step": true}\n')
    with pytest.raises(CheckpointError, match="expected an object with an integer step"):
        read_rows(tmp_path / "bad.jsonl", {"rows": 1, "bytes": 15}, checkpoint, "metrics")


@pytest.mark.parametrize(("kw", "error"), [
    ({"step": -1}, ValueError), ({"step": True}, ValueError), ({"config": [1]}, TypeError),
])
def test_save_checkpoint_refuses_a_bad_step_or_config(tmp_path, kw, error):
    args = {"step": 1, "params": {"w": np.ones(2)}, "optimizer_state": {"t": np.asarray(1)},
            "config": {}, **kw}
    with pytest.raises(error):
        save_checkpoint(tmp_path / "c.npz", **args)


def test_a_failed_swap_puts_the_old_run_back(data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(TASK, data, CONFIG, out_dir=run)
    before = (run / "metrics.jsonl").read_bytes()
    calls = []
    original = os.rename

    def rename(src, dst):
        calls.append(dst)
        if len(calls) == 2:  # the new run into place
            raise OSError(28, "No space left on device")
        return original(src, dst)

    monkeypatch.setattr(rundir.os, "rename", rename)
    with pytest.raises(OSError):
        train(TASK, data, MORE, out_dir=run, overwrite=True)
    monkeypatch.undo()
    assert (run / "metrics.jsonl").read_bytes() == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_stub_is_cleared_before_the_rerun_but_a_folder_with_figures_is_not_a_stub(
    data, tmp_path
):
    run = tmp_path / "run"
    folder = rundir.open_folder(run)
    folder.claim(["config.json", "metrics.jsonl", "evals.jsonl"])
    (run / "config.json").write_text("{}")
    (run / "metrics.jsonl").write_text("")
    (run / "evals.jsonl").write_text("{}\n")
    folder.abandon()
    train(TASK, data, CONFIG, out_dir=run)
    assert (run / "checkpoint.npz").exists()
    assert json.loads((run / "config.json").read_text())["data"]["examples"] == len(data)

    other = tmp_path / "other"
    folder = rundir.open_folder(other)
    folder.claim(["figures/old.png"])
    (other / "figures").mkdir()
    (other / "figures" / "old.png").write_bytes(b"x")
    folder.abandon()
    with pytest.raises(rundir.RunExistsError, match="already holds a run"):
        train(TASK, data, CONFIG, out_dir=other)
    assert (other / "figures" / "old.png").read_bytes() == b"x"


def test_an_experiment_folder_dry_run_creates_nothing(tmp_path):
    assert rundir.open_folder(tmp_path / "new", kind="experiment", dry_run=True) is None
    assert not (tmp_path / "new").exists()
