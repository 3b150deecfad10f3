"""Resume: it appends and never rewrites history, never blocks on a file that is not a regular
file, knows the same data under another spelling of its path, and refuses parameters whose
logits no float can carry.

Each test fails on the code before: evaluations were filtered by the new ``eval_every``, a
FIFO named ``metrics.jsonl`` blocked ``--resume`` forever, ``./d.jsonl`` and ``d.jsonl`` were
other data, and a checkpoint with a bias of 1e308 resumed to a utility of -1520.6.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from minikto.data.feedback import sample_unpaired
from minikto.data.toy import default_task
from minikto.tools.cli import main
from minikto.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minikto.training.config import KTOConfig
from minikto.training.train import train

pytestmark = pytest.mark.filterwarnings("ignore::minikto.training.config.WeightBalanceWarning")

TASK = default_task()
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def data():
    return sample_unpaired(TASK, 120, seed=1)


def steps(path: Path) -> list[int]:
    return [json.loads(line)["step"] for line in path.read_text().splitlines()]


# ------------------------------------------------------------------------------------------
# 3. Resume appends; history is never rewritten


def test_resuming_with_another_eval_every_keeps_every_evaluation_logged(data, tmp_path):
    run = tmp_path / "run"
    train(TASK, data, KTOConfig(max_steps=40, batch_size=16, eval_every=5), out_dir=run)
    logged = json.loads(json.dumps(
        [json.loads(line) for line in (run / "evals.jsonl").read_text().splitlines()]))
    assert [e["step"] for e in logged] == list(range(0, 41, 5))
    result = train(TASK, data, KTOConfig(max_steps=60, batch_size=16, eval_every=0),
                   out_dir=run, resume=True)
    assert steps(run / "evals.jsonl") == [*range(0, 41, 5), 60]
    assert [e["step"] for e in result.evals] == [*range(0, 41, 5), 60]
    assert result.evals[:9] == logged  # the first 40 steps' evaluations, unchanged


# ------------------------------------------------------------------------------------------
# 11. A FIFO named like a run file


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs FIFOs")
@pytest.mark.parametrize("name", ["metrics.jsonl", "checkpoint.npz", "config.json"])
def test_a_fifo_in_place_of_a_run_file_is_refused_not_waited_on(data, tmp_path, name):
    run = tmp_path / "run"
    train(TASK, data, KTOConfig(max_steps=2, batch_size=16), out_dir=run)
    (run / name).unlink()
    os.mkfifo(run / name)
    out = subprocess.run(
        [sys.executable, "-m", "minikto", "train", "--out", str(run), "--n", "120",
         "--max-steps", "4", "--batch-size", "16", "--resume"],
        capture_output=True, text=True, timeout=120, cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(REPO)},
    )
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "FIFO" in out.stderr and name in out.stderr


# ------------------------------------------------------------------------------------------
# 14. The same data under another spelling of its path


def test_resume_knows_the_same_data_file_under_another_spelling(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["data", "--out", "d1.jsonl", "--n", "100"]) == 0
    base = ["train", "--out", "r", "--batch-size", "16", "--quiet"]
    assert main([*base, "--data", "d1.jsonl", "--max-steps", "2"]) == 0
    assert main([*base, "--data", "./d1.jsonl", "--max-steps", "4", "--resume"]) == 0, (
        capsys.readouterr().err)
    assert main([*base, "--data", str(tmp_path / "d1.jsonl"), "--max-steps", "5",
                 "--resume"]) == 0
    assert steps(Path("r") / "metrics.jsonl") == [1, 2, 3, 4, 5]
    Path("d2.jsonl").write_bytes(Path("d1.jsonl").read_bytes()[:-200].rsplit(b"\n", 1)[0]
                                 + b"\n")
    assert main([*base, "--data", "d2.jsonl", "--max-steps", "6", "--resume"]) == 2
    assert "trained on other data" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# 6. A checkpoint whose logits leave the float range


def test_a_checkpoint_with_a_bias_of_1e308_is_refused_naming_the_range(data, tmp_path):
    run = tmp_path / "run"
    config = KTOConfig(max_steps=2, batch_size=16)
    train(TASK, data, config, out_dir=run)
    state = load_checkpoint(run / "checkpoint.npz")
    params = {k: v.copy() for k, v in state["params"].items()}
    params["bias"][0] = 1e308
    save_checkpoint(run / "checkpoint.npz", step=state["step"], params=params,
                    optimizer_state=state["optimizer_state"], config=state["config"],
                    extra=state["extra"])
    with pytest.raises(CheckpointError, match=r"entry param: expected parameters whose "
                                              r"next-token logits spread at most"):
        train(TASK, data, KTOConfig(max_steps=4, batch_size=16), out_dir=run, resume=True)
    assert steps(run / "metrics.jsonl") == [1, 2]
