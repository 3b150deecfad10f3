"""``minikto check MODULE:FUNCTION``: exit codes, the report on one screen, usage errors."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import minikto
from minikto.tools.check_call import split_result
from minikto.tools.cli import main

USER_CODE = '''
import numpy as np


def kto(policy_logps, reference_logps, desirable, z0, *, beta, desirable_weight,
        undesirable_weight):
    z = np.where(desirable, 1.0, -1.0) * beta * (policy_logps - reference_logps - z0)
    weight = np.where(desirable, desirable_weight, undesirable_weight)
    return np.mean(weight * np.exp(-np.logaddexp(0.0, z)))


def kto_separate_means(policy_logps, reference_logps, desirable, z0, *, beta,
                       desirable_weight, undesirable_weight):
    z = np.where(desirable, 1.0, -1.0) * beta * (policy_logps - reference_logps - z0)
    losses = np.where(desirable, desirable_weight, undesirable_weight) * np.exp(
        -np.logaddexp(0.0, z))
    return sum(losses[m].mean() for m in (desirable, ~desirable) if m.any())


def summed(token_logps, mask):
    return np.where(mask, token_logps, 0.0).sum(axis=1)
'''


@pytest.fixture
def user_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_kto.py"
    path.write_text(USER_CODE)
    return path


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    root = str(Path(minikto.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "minikto", "check", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300)


def test_the_command_exits_0_on_a_correct_kto_and_1_on_a_wrong_one(user_file, tmp_path):
    good = _run(f"{user_file}:kto", "--sequence", "my_kto:summed", cwd=tmp_path)
    assert good.returncode == 0, good.stdout + good.stderr
    assert "PASSED" in good.stdout
    bad = _run("my_kto:kto_separate_means", "--seed", "3", cwd=tmp_path)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert "diagnosis: separate_means_sum:" in bad.stdout
    for out in (good.stdout, bad.stdout):
        lines = out.rstrip("\n").splitlines()
        assert len(lines) <= 40 and max(map(len, lines)) <= 100


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("my_kto", "FUNCTION: expected MODULE:FUNCTION"),
        ("no_such_module_xyz:kto", "FUNCTION: cannot import 'no_such_module_xyz'"),
        ("my_kto:missing", "FUNCTION: 'my_kto' has no function 'missing'"),
        ("missing_file.py:kto", "FUNCTION: expected an existing .py file"),
    ],
)
def test_usage_errors_exit_2_naming_the_argument(user_file, tmp_path, monkeypatch, capsys,
                                                spec, message):
    monkeypatch.chdir(tmp_path)
    assert main(["check", spec, "--num-random", "2"]) == 2
    assert message in capsys.readouterr().err


def test_a_bad_sequence_function_is_a_usage_error(user_file, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["check", "my_kto:kto", "--sequence", "my_kto", "--num-random", "2"]) == 2
    assert "--sequence: expected MODULE:FUNCTION" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------
# Bad arguments to check_kto, and the forms of a user's result


def test_check_kto_refuses_bad_arguments_naming_them():
    with pytest.raises(TypeError, match="fn: expected a callable"):
        minikto.check_kto(42)
    with pytest.raises(ValueError, match="z0: expected 'given' or 'estimated'; got 'exact'"):
        minikto.check_kto(minikto.kto_loss, z0="exact")
    with pytest.raises(ValueError, match="num_random: expected an int >= 0; got -1"):
        minikto.check_kto(minikto.kto_loss, num_random=-1)
    with pytest.raises(ValueError, match="seed: expected an int >= 0; got 1.5"):
        minikto.check_kto(minikto.kto_loss, seed=1.5)
    with pytest.raises(TypeError, match="sequence_fn: expected a callable or None"):
        minikto.check_kto(minikto.kto_loss, sequence_fn="sum")
    with pytest.raises(ValueError, match="framework: expected one of"):
        minikto.check_kto(minikto.kto_loss, framework="tensorflow")


def test_results_are_read_from_a_scalar_a_tuple_a_named_tuple_or_a_dict():
    loss, losses, rewards = np.float64(0.5), np.zeros(3), np.ones(3)
    assert split_result(loss, 3) == (loss, None, None)
    assert split_result((loss, losses, rewards), 3) == (loss, losses, rewards)
    assert split_result((loss,), 3) == (loss, None, None)
    assert split_result({"loss": loss, "rewards": rewards}, 3) == (loss, None, rewards)
    named = minikto.kto_loss(np.zeros(3), np.zeros(3), np.array([True, False, True]), 0.0)
    got = split_result(named, 3)
    assert got[0] is named.loss and got[1] is named.losses and got[2] is named.rewards


def test_results_of_the_wrong_shape_are_refused_naming_what_was_expected():
    with pytest.raises(TypeError, match="fn: expected a dict with a 'loss' key; got the keys"):
        split_result({"losses": np.zeros(3)}, 3)
    with pytest.raises(TypeError, match=r"fn: expected the loss \(a scalar\).*shape \(3,\)"):
        split_result((np.zeros(3), np.zeros(3)), 3)
    with pytest.raises(ValueError, match=r"fn: expected losses of shape \(3,\); got"):
        split_result((0.5, np.zeros(4)), 3)
    with pytest.raises(ValueError, match=r"fn: expected rewards of shape \(3,\)"):
        split_result({"loss": 0.5, "rewards": 1.0}, 3)


def test_a_sequence_function_of_the_wrong_shape_is_refused():
    with pytest.raises(ValueError, match=r"sequence_fn: expected sequence log-probs of shape"):
        minikto.check_kto(minikto.kto_loss, num_random=1,
                          sequence_fn=lambda t, m: np.sum(t))


def test_a_float32_loss_gets_a_hint():
    def in_float32(p, r, d, z0, **kwargs):
        return np.float32(minikto.kto_loss(p, r, d, z0, **kwargs).loss)

    report = minikto.check_kto(in_float32, num_random=20)
    assert not report.passed and report.diagnosis is None
    assert "float32 arithmetic somewhere?" in report.smallest_failing_case


def test_the_command_in_process_prints_the_report_and_returns_its_exit_code(
    user_file, capsys
):
    assert main(["check", f"{user_file}:kto", "--num-random", "20"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]  # (a long path is shortened to fit the line, from the left)
    assert first.startswith("minikto check: ") and first.endswith("my_kto.py:kto")
    assert "PASSED" in out
    assert main(["check", f"{user_file}:kto_separate_means", "--num-random", "20"]) == 1


# ------------------------------------------------------------------------------------------
# Exit codes, always: 0 correct, 1 wrong (a diagnosis), 2 the check could not run


CORRECT_BODY = '''
    z = np.where(desirable, 1.0, -1.0) * beta * (policy_logps - reference_logps - z0)
    weight = np.where(desirable, desirable_weight, undesirable_weight)
    return np.mean(weight * np.exp(-np.logaddexp(0.0, z)))
'''


def _user_file(folder: Path, name: str, body: str, header: str = "import numpy as np\n") -> Path:
    path = folder / f"{name}.py"
    path.write_text(header + "\n\ndef kto(policy_logps, reference_logps, desirable, z0, *, "
                    "beta, desirable_weight, undesirable_weight):" + body)
    return path


def _main(path: Path, capsys, *extra: str) -> tuple[int, str, str]:
    code = main(["check", f"{path}:kto", "--num-random", "5", *extra])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_user_file_imports_its_sibling_module(tmp_path, capsys):
    (tmp_path / "sibling_helpers_a1.py").write_text(
        "import numpy as np\n\ndef sigmoid(x):\n    return np.exp(-np.logaddexp(0.0, -x))\n")
    path = _user_file(tmp_path, "uses_sibling", '''
    z = np.where(desirable, 1.0, -1.0) * beta * (policy_logps - reference_logps - z0)
    weight = np.where(desirable, desirable_weight, undesirable_weight)
    return np.mean(weight * sigmoid(-z))
''', header="import numpy as np\nfrom sibling_helpers_a1 import sigmoid\n")
    code, out, err = _main(path, capsys)
    assert code == 0, out + err
    assert "PASSED" in out


@pytest.mark.parametrize(
    ("name", "source", "shown"),
    [("syntax_error", "def kto(:\n    pass\n", "SyntaxError: "),
     ("raises_at_import", "import numpy as np\nraise RuntimeError('no GPU here')\n",
      "RuntimeError: no GPU here"),
     ("exits_at_import", "import sys\nsys.exit(0)\n", "called sys.exit(0) while being imported"),
     ("missing_dependency", "import no_such_package_xyz\n", "ModuleNotFoundError")],
)
def test_an_import_that_fails_exits_2_with_the_error_in_a_few_lines(tmp_path, capsys, name,
                                                                    source, shown):
    path = tmp_path / f"{name}.py"
    path.write_text(source)
    code, out, err = _main(path, capsys)
    assert code == 2 and out == ""
    assert shown in err and "Traceback" not in err
    assert len(err.strip().splitlines()) <= 6


@pytest.mark.parametrize(
    ("name", "body", "shown"),
    [("runtime_error", "\n    raise RuntimeError('shape mismatch')\n",
      "RuntimeError: shape mismatch"),
     ("key_error", "\n    return {}['loss']\n", "KeyError: 'loss'"),
     ("recursion", "\n    return kto(policy_logps, reference_logps, desirable, z0, beta=beta, "
      "desirable_weight=desirable_weight, undesirable_weight=undesirable_weight)\n",
      "RecursionError"),
     ("numpy_error", "\n    return np.linalg.inv(np.ones((2, 3)))\n", "LinAlgError")],
)
def test_an_exception_on_every_case_exits_2_with_a_summary(tmp_path, capsys, name, body, shown):
    path = _user_file(tmp_path, name, body)
    code, out, err = _main(path, capsys)
    assert code == 2, out + err
    assert shown in err and "Traceback" not in err
    assert f"{name}.py, line " in err  # the user's own frame, with its line
    assert "site-packages" not in err and "_linalg.py" not in err  # not the libraries' frames
    assert len(err.strip().splitlines()) <= 6


def test_a_wrong_signature_exits_2_naming_the_expected_one_and_trls(tmp_path, capsys):
    path = tmp_path / "wrong_signature.py"
    path.write_text("def kto(policy_logps, reference_logps, desirable, beta):\n    return 0.0\n")
    code, out, err = _main(path, capsys)
    assert code == 2
    assert "expected fn(policy_logps, reference_logps, desirable, z0, *, beta" in err
    assert "KTOTrainer.kto_loss(self, policy_chosen_logps" in err


def test_sys_exit_in_the_function_is_a_named_mistake_exit_1(tmp_path, capsys):
    path = _user_file(tmp_path, "exits_per_call", "\n    import sys\n    sys.exit(0)\n")
    code, out, err = _main(path, capsys)
    assert code == 1, out + err
    assert "diagnosis: sys_exit: " in out and "Fix:" in out


@pytest.mark.parametrize(("name", "body", "mistake"),
                         [("returns_none", "\n    loss = 0.5\n", "returns_none"),
                          ("returns_complex", "\n    return np.mean((policy_logps + 0j) ** 0.5)\n",
                           "complex_loss")])
def test_a_none_or_complex_loss_is_a_named_mistake_exit_1(tmp_path, capsys, name, body, mistake):
    path = _user_file(tmp_path, name, body)
    code, out, err = _main(path, capsys)
    assert code == 1, out + err
    assert f"diagnosis: {mistake}: " in out and "Fix:" in out


def test_a_function_that_never_returns_is_stopped_and_exits_2(tmp_path, capsys, monkeypatch):
    from minikto.tools import check_call

    monkeypatch.setattr(check_call, "CALL_TIMEOUT_S", 0.5)
    # the loop swallows every Exception: the timeout must not be one. Its body calls a
    # function, as any real loss does: CPython 3.10 (3.10.13 here) never runs a signal handler
    # inside a loop whose body is only `try: pass`, so no SIGALRM can stop that one there.
    path = _user_file(tmp_path, "never_returns", "\n    while True:\n        try:\n"
                      "            sum(())\n        except Exception:\n            pass\n")
    code, out, err = _main(path, capsys)
    assert code == 2
    assert "did not return within 0.5 s and was stopped" in err


def test_an_import_that_never_ends_is_stopped_and_exits_2(tmp_path, capsys, monkeypatch):
    from minikto.tools import check_call

    monkeypatch.setattr(check_call, "CALL_TIMEOUT_S", 0.5)
    path = tmp_path / "loops_at_import.py"
    path.write_text("while True:\n    pass\n")
    code, out, err = _main(path, capsys)
    assert code == 2 and "importing" in err and "was stopped" in err


def test_check_kto_stops_a_slow_function_with_a_timeout_error():
    import time

    def slow(*args, **kwargs):
        time.sleep(5)

    with pytest.raises(TimeoutError, match="did not return within 0.2 s"):
        minikto.check_kto(slow, num_random=1, timeout=0.2)
