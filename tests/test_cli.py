"""The minikto command: its commands through ``main`` in this process (what they print and
write), and the exit codes and stderr of the real command, run as a user runs it, through a
subprocess."""

import json
import subprocess
import sys
from types import SimpleNamespace

import pytest

from minikto.tools.cli import main
from minikto.training.family_objective import SELFCHECK_LOSSES


def minikto(*args, cwd=None):
    return subprocess.run(
        [sys.executable, "-m", "minikto", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=300,
    )


@pytest.fixture
def command(capsys):
    """``command(*args)``: ``minikto ARGS`` through ``main`` in this process; the exit code
    and what it printed, as ``returncode``, ``stdout`` and ``stderr``."""

    def run(*args):
        code = main(list(args))
        out = capsys.readouterr()
        return SimpleNamespace(returncode=code, stdout=out.out, stderr=out.err)

    return run


def test_gradcheck_prints_its_table_and_passes(command):
    out = command("gradcheck")
    assert out.returncode == 0, out.stderr
    assert f"{20 + len(SELFCHECK_LOSSES)} passed, 0 failed" in out.stdout
    for mode in ("batch ", "batch-grad", "exact", "zero", "0.3", *SELFCHECK_LOSSES):
        assert mode in out.stdout


def test_demo_writes_its_run_directory_and_a_before_after_table(tmp_path, command):
    out = command("demo", "--out", str(tmp_path / "demo"))
    assert out.returncode == 0, out.stderr
    assert "reference (before)" in out.stdout and "trained (after)" in out.stdout
    summary = json.loads((tmp_path / "demo" / "summary.json").read_text())
    for key in ("expected_utility", "kl_to_reference", "desirable_mass", "seconds"):
        assert key in summary
    assert set(summary["expected_utility"]) >= {"reference", "final"}
    # a second demo into the same directory is refused, and the first run is kept
    again = command("demo", "--out", str(tmp_path / "demo"))
    assert again.returncode == 2 and "already holds a run" in again.stderr
    assert json.loads((tmp_path / "demo" / "summary.json").read_text()) == summary


def test_data_then_train_on_the_file_then_resume(tmp_path, command):
    data = tmp_path / "toy.jsonl"
    out = command("data", "--out", str(data), "--n", "300")
    assert out.returncode == 0, out.stderr
    first = json.loads(data.read_text().splitlines()[0])
    assert set(first) == {"prompt", "completion", "label"} and isinstance(first["label"], bool)
    run = tmp_path / "run"
    out = command(
        "train",
        "--out",
        str(run),
        "--data",
        str(data),
        "--max-steps",
        "20",
        "--desirable-weight",
        "2.5",
        "--z0",
        "exact",
    )
    assert out.returncode == 0, out.stderr
    assert json.loads((run / "config.json").read_text())["z0"] == "exact"
    out = command(
        "train",
        "--out",
        str(run),
        "--data",
        str(data),
        "--max-steps",
        "40",
        "--desirable-weight",
        "2.5",
        "--z0",
        "exact",
        "--resume",
    )
    assert out.returncode == 0, out.stderr
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 40


@pytest.mark.parametrize(
    "args,message",
    [
        (("train", "--out", "r", "--beta", "-1"), "beta: expected a number > 0"),
        (("train", "--out", "r", "--data", "missing.jsonl"), "missing.jsonl"),
        (("train", "--out", "r", "--z0", "kl"), "z0: expected one of"),
    ],
)
def test_bad_arguments_exit_2_with_the_argument_named(tmp_path, args, message):
    out = minikto(*args, cwd=tmp_path)
    assert out.returncode == 2
    assert message in out.stderr
