"""A run records the identity of its data; a resume on other data is refused, naming the
difference. config.json and summary.json say what the run is: data, command, versions."""

from __future__ import annotations

import hashlib
import json
import platform
from types import SimpleNamespace

import numpy as np
import pytest

import minikto
from minikto.data.feedback import sample_unpaired
from minikto.data.toy import default_task
from minikto.tools.cli import main
from minikto.training.config import KTOConfig
from minikto.training.train import train

pytestmark = pytest.mark.filterwarnings("ignore::minikto.training.config.WeightBalanceWarning")

TASK = default_task()
CONFIG = KTOConfig(max_steps=4, batch_size=16, eval_every=2)
MORE = KTOConfig(**{**CONFIG.to_dict(), "max_steps": 6})


@pytest.fixture
def run(tmp_path):
    folder = tmp_path / "run"
    train(TASK, sample_unpaired(TASK, 120, seed=1), CONFIG, out_dir=folder,
          data_source={"task": "default", "n": 120, "seed": 1}, command=["minikto", "x"])
    return folder


@pytest.mark.parametrize(("other", "named"), [
    (lambda: sample_unpaired(TASK, 100, seed=1), "examples: saved 120, now 100"),
    (lambda: sample_unpaired(TASK, 120, seed=2), "arrays_sha256: saved"),
])
def test_resume_on_other_data_is_refused_naming_the_difference(run, other, named):
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(ValueError, match=f"data: the run in .* was trained on other data "
                                         f"\\(.*{named}"):
        train(TASK, other(), MORE, out_dir=run, resume=True,
              data_source={"task": "default", "n": 120, "seed": 1})
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_resume_with_another_stated_source_is_refused(run):
    with pytest.raises(ValueError, match="seed: saved 1, now 7"):
        train(TASK, sample_unpaired(TASK, 120, seed=1), MORE, out_dir=run, resume=True,
              data_source={"task": "default", "n": 120, "seed": 7})


def test_the_same_data_resume(run):
    result = train(TASK, sample_unpaired(TASK, 120, seed=1), MORE, out_dir=run, resume=True,
                   data_source={"task": "default", "n": 120, "seed": 1})
    assert len(result.history) == 6


def test_config_and_summary_record_data_command_and_versions(run):
    for name in ("config.json", "summary.json"):
        record = json.loads((run / name).read_text())
        assert record["data"]["task"] == "default" and record["data"]["n"] == 120
        assert record["data"]["examples"] == 120 and len(record["data"]["arrays_sha256"]) == 64
        assert record["command"] == ["minikto", "x"]
        assert record["versions"] == {"minikto": minikto.__version__, "numpy": np.__version__,
                                      "python": platform.python_version()}


@pytest.fixture
def cli(tmp_path, monkeypatch, capsys):
    """``cli(*args)``: ``minikto ARGS`` through ``main`` in this process, from ``tmp_path``;
    the exit code and what it printed, as ``returncode``, ``stdout`` and ``stderr``."""
    monkeypatch.chdir(tmp_path)

    def run(*args):
        code = main(list(args))
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run


def test_the_command_line_records_the_files_sha256_and_refuses_a_changed_file(tmp_path, cli):
    data = tmp_path / "data.jsonl"
    assert cli("data", "--out", str(data), "--n", "150").returncode == 0
    args = ["train", "--data", str(data), "--out", str(tmp_path / "run"), "--max-steps", "3",
            "--batch-size", "16"]
    out = cli(*args)
    assert out.returncode == 0, out.stderr
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert record["data"]["sha256"] == hashlib.sha256(data.read_bytes()).hexdigest()
    assert record["data"]["path"] == str(data) and record["command"][1:] == args
    assert cli("data", "--out", str(data), "--n", "150", "--seed", "4",
               "--overwrite").returncode == 0
    again = cli(*args[:-4], "--max-steps", "5", "--batch-size", "16", "--resume")
    assert again.returncode == 2 and "trained on other data" in again.stderr
    assert "sha256: saved" in again.stderr and "Traceback" not in again.stderr


def test_generated_data_are_recorded_by_task_n_and_seed(tmp_path, cli):
    out = cli("train", "--out", str(tmp_path / "run"), "--max-steps", "2", "--n", "80",
              "--batch-size", "16")
    assert out.returncode == 0, out.stderr
    data = json.loads((tmp_path / "run" / "config.json").read_text())["data"]
    assert (data["task"], data["n"], data["seed"], data["examples"]) == ("default", 80, 0, 80)
    again = cli("train", "--out", str(tmp_path / "run"), "--max-steps", "3", "--n", "90",
                "--batch-size", "16", "--resume")
    assert again.returncode == 2 and "n: saved 80, now 90" in again.stderr
