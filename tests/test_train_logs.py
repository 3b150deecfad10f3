"""The training loop's logs and stops: TRL's per-step metrics, a progress bar that stays out
of redirected stderr, a one-line stop at the first non-finite value naming the knob, a
starting policy, the truth about a reference passed in, and checkpoints that stay
O(parameters)."""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys
import warnings

import numpy as np
import pytest

from minikto.data.feedback import sample_paired, sample_unpaired
from minikto.data.toy import default_task
from minikto.policy import SoftmaxPolicy
from minikto.training.config import KTOConfig
from minikto.training.optim import NonFiniteError
from minikto.training.train import train

pytestmark = pytest.mark.filterwarnings("ignore::minikto.training.config.WeightBalanceWarning")

TASK = default_task()


@pytest.fixture(scope="module")
def data():
    return sample_unpaired(TASK, 120, seed=1)


# ------------------------------------------------------------------------------------------
# Metrics


def test_each_step_logs_grad_norm_and_learning_rate_as_trl_does(data):
    grads = []
    result = train(TASK, data, KTOConfig(max_steps=5, batch_size=16, learning_rate=0.02),
                   callback=lambda step, r: grads.append((step, r.grads)))
    for row, (step, g) in zip(result.history, grads, strict=True):
        assert row["step"] == step and row["learning_rate"] == 0.02
        expected = math.sqrt(sum(float(np.sum(v * v)) for v in g.values()))
        assert row["grad_norm"] == pytest.approx(expected, rel=1e-12)


def test_dpo_logs_rewards_accuracies():
    pairs = sample_paired(TASK, 80, seed=3)
    result = train(TASK, pairs, KTOConfig(loss="dpo", max_steps=30, batch_size=16))
    accuracies = [h["rewards/accuracies"] for h in result.history]
    assert all(0.0 <= a <= 1.0 for a in accuracies)
    assert accuracies[0] == 0.0 and accuracies[-1] > 0.5  # rewards start at 0, then learn


# ------------------------------------------------------------------------------------------
# Non-finite values


@pytest.mark.parametrize(("knob", "value"), [
    ("beta", 1e308), ("desirable_weight", 1e308), ("desirable_weight", 1e200),
])
def test_huge_finite_knobs_stop_the_run_naming_the_knob(data, knob, value):
    # KTOConfig refuses such sizes (MAX_SCALE); this checks the loop's own guard behind it,
    # so the knob is forced past the config's validation.
    config = KTOConfig(max_steps=20, batch_size=16)
    object.__setattr__(config, knob, value)
    hint = re.escape(f"Lower {knob} (now {value:g}).")
    with pytest.raises(NonFiniteError, match=rf"^step \d+: the (loss|gradient norm) is .*{hint}"):
        train(TASK, data, config)


def test_the_command_line_reports_a_non_finite_stop_in_one_line(tmp_path, monkeypatch, capsys):
    from minikto.tools.cli import main

    monkeypatch.chdir(tmp_path)
    code = main(["train", "--out", str(tmp_path / "run"), "--beta", "1e308", "--max-steps", "5",
                 "--n", "100", "--batch-size", "16"])  # an uncaught exception fails the test
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    errors = [line for line in err.splitlines() if "error:" in line]
    assert len(errors) == 1 and "beta" in errors[0] and "1e+308" in errors[0]


# ------------------------------------------------------------------------------------------
# Progress


def test_a_long_run_with_stderr_redirected_writes_little_to_it(tmp_path):
    with open(tmp_path / "stderr.txt", "w") as err:
        out = subprocess.run(
            [sys.executable, "-m", "minikto", "train", "--out", str(tmp_path / "run"),
             "--max-steps", "2500", "--n", "200", "--batch-size", "8", "--eval-every", "0"],
            stdout=subprocess.DEVNULL, stderr=err, cwd=tmp_path, timeout=600,
            env={**os.environ, "PYTHONPATH": os.getcwd()})
    assert out.returncode == 0
    assert (tmp_path / "stderr.txt").stat().st_size < 2_000


def test_quiet_silences_a_progress_bar_that_was_asked_for(data, capsys):
    train(TASK, data, KTOConfig(max_steps=3, batch_size=16, progress=True), quiet=True)
    assert capsys.readouterr().err == ""
    train(TASK, data, KTOConfig(max_steps=3, batch_size=16, progress=True))
    assert "minikto kto" in capsys.readouterr().err


def test_experiments_report_progress_on_stderr(tmp_path, monkeypatch, capsys):
    from minikto.tools.cli import main

    monkeypatch.chdir(tmp_path)
    assert main(["experiment", "skip-sft", "--quick", "--out", str(tmp_path)]) == 0
    err = capsys.readouterr().err
    assert "skip-sft: seed 1/2" in err and "skip-sft: seed 2/2" in err


# ------------------------------------------------------------------------------------------
# Ctrl-C


def test_ctrl_c_says_the_run_was_interrupted_and_how_to_resume(tmp_path, monkeypatch, capsys):
    import minikto.training.train as module
    from minikto.tools.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    assert main(["train", "--out", str(tmp_path / "run"), "--max-steps", "2", "--quiet"]) == 0
    monkeypatch.setattr(module, "train", interrupted)
    code = main(["train", "--out", str(tmp_path / "run"), "--max-steps", "5"])
    err = capsys.readouterr().err
    assert code == 130 and "Traceback" not in err
    assert "minikto train: interrupted" in err
    assert f"--out {tmp_path / 'run'} --max-steps 5 --resume" in err


# ------------------------------------------------------------------------------------------
# Starting policy and reference


def test_train_starts_from_a_given_policy_and_leaves_it_unchanged(data):
    aligned = train(TASK, data, KTOConfig(max_steps=10, batch_size=16)).policy
    before = aligned.get_flat().copy()
    result = train(TASK, data, KTOConfig(max_steps=1, batch_size=16, learning_rate=1e-9),
                   policy=aligned)
    assert np.array_equal(aligned.get_flat(), before)
    assert np.allclose(result.policy.get_flat(), before, atol=1e-8)
    assert np.array_equal(result.reference.get_flat(), TASK.base_policy().get_flat())
    with pytest.raises(ValueError, match="policy: expected the reference's backend, dtype"):
        train(TASK, data, KTOConfig(max_steps=1), policy=aligned.to("numpy", "float32"))


def test_a_float32_dense_reference_is_recorded_as_what_it_is(data, tmp_path):
    reference = SoftmaxPolicy(TASK.vocab_size, TASK.num_prompts, features=4, dtype="float32",
                              eos_token=TASK.eos_token)
    train(TASK, data, KTOConfig(max_steps=2, batch_size=16), reference=reference,
          out_dir=tmp_path / "run")
    record = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (record["dtype"], record["features"]) == ("float32", 4)


# ------------------------------------------------------------------------------------------
# Checkpoint cost


def test_a_checkpoint_holds_the_parameters_not_the_history(data, tmp_path):
    sizes = []
    for steps in (5, 200):
        config = KTOConfig(max_steps=steps, batch_size=16, checkpoint_every=1, eval_every=0)
        train(TASK, data, config, out_dir=tmp_path / str(steps))
        sizes.append((tmp_path / str(steps) / "checkpoint.npz").stat().st_size)
    assert abs(sizes[1] - sizes[0]) < 100  # a few digits of the counts, not 195 rows


def test_the_weight_band_warning_is_one_clean_line(tmp_path, monkeypatch, capsys):
    from minikto.tools.cli import main
    from minikto.training.config import WeightBalanceWarning

    monkeypatch.chdir(tmp_path)
    data = tmp_path / "few.jsonl"
    assert main(["data", "--out", str(data), "--n", "200", "--desirable-fraction", "0.2"]) == 0
    with warnings.catch_warnings():  # shown as a user sees it, not ignored as in this module
        warnings.simplefilter("default", WeightBalanceWarning)
        code = main(["train", "--data", str(data), "--out", str(tmp_path / "run"),
                     "--max-steps", "2", "--batch-size", "16"])
    err = capsys.readouterr().err
    assert code == 0, err
    lines = [line for line in err.splitlines() if "Eq. 8" in line]
    assert len(lines) == 1 and lines[0].startswith("minikto: warning: desirable_weight")
    assert "warnings.warn" not in err and "WeightBalanceWarning" not in err


def test_ctrl_c_while_replacing_a_run_says_the_old_run_is_kept(tmp_path, monkeypatch, capsys):
    import minikto.training.train as module
    from minikto.tools.cli import main

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    assert main(["train", "--out", str(tmp_path / "run"), "--max-steps", "2", "--quiet"]) == 0
    monkeypatch.setattr(module, "train", interrupted)
    code = main(["train", "--out", str(tmp_path / "run"), "--overwrite"])
    err = capsys.readouterr().err
    assert code == 130 and "is kept as it was" in err and "--resume" not in err
