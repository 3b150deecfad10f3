"""The minikto command's flags: help with meaning, default and choices; the train flags made from
KTOConfig's fields; Hugging Face / TRL spellings; config files; --version; warnings as one line;
bad values refused before any folder is made."""

import argparse
import dataclasses
import json
import os
import subprocess
import sys

import pytest

import minikto
from minikto.experiments import EXPERIMENTS
from minikto.tools.cli import build_parser, main
from minikto.training.config import TRL_ALIASES, KTOConfig


def minikto_cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "minikto", *args], capture_output=True,
                          text=True, cwd=cwd, timeout=120)


def run_main(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as stop:  # argparse's own exits (--help, --version, bad flags)
        code = stop.code
    out = capsys.readouterr()
    return code, out.out, out.err


def words(text):
    return " ".join(text.split())


def subparsers(parser):
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return action.choices


# ------------------------------------------------------------------------------------------
# --help


def test_every_flag_of_every_command_has_help_and_shows_its_default():
    for name, sub in subparsers(build_parser()).items():
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            assert action.help and action.help.strip(), (name, action.dest)
        text = words(sub.format_help())
        for action in sub._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if action.default is not None and action.default is not False and action.option_strings:
                assert f"(default: {action.default})" in text, (name, action.dest)


def test_train_help_is_generated_from_the_config_fields(capsys):
    code, out, _ = run_main(capsys, "train", "--help")
    assert code == 0
    text = words(out)
    for field in dataclasses.fields(KTOConfig):
        assert words(field.metadata["help"]) in text, field.name
        dashed = "--" + field.name.replace("_", "-")
        assert dashed in text, field.name
        if "_" in field.name:
            assert "--" + field.name in text
        if field.default is not None:
            assert f"(default: {field.default})" in text
        choices = field.metadata["choices"]
        if choices:
            assert "{" + ",".join(map(str, choices)) + "}" in text
    for alias in TRL_ALIASES:
        assert "--" + alias in text


def test_a_help_text_changed_in_the_dataclass_changes_the_flag(monkeypatch):
    (field,) = [f for f in dataclasses.fields(KTOConfig) if f.name == "beta"]
    monkeypatch.setattr(field, "metadata", {"help": "a brand new sentence", "choices": ()})
    train = subparsers(build_parser())["train"]
    assert "a brand new sentence (default: 0.1)" in words(train.format_help())


def test_experiment_names_come_from_the_registry(capsys, monkeypatch):
    code, out, _ = run_main(capsys, "experiment", "--help")
    assert code == 0 and "{all," + ",".join(EXPERIMENTS) + "}" in out
    monkeypatch.setitem(EXPERIMENTS, "a-new-claim", EXPERIMENTS["noise"])
    code, out, _ = run_main(capsys, "experiment", "--help")
    assert "a-new-claim" in out
    code, _, err = run_main(capsys, "experiment", "no-such-claim")
    assert code == 2 and "invalid choice: 'no-such-claim'" in err and "'a-new-claim'" in err


def test_version_names_minikto_numpy_and_python(capsys):
    code, out, err = run_main(capsys, "--version")
    assert code == 0, err
    assert out.startswith(f"minikto {minikto.__version__} (numpy ")
    assert "Python 3." in out


# ------------------------------------------------------------------------------------------
# Spellings: dashes, Hugging Face's underscores, TRL's names


def parse(*argv):
    return vars(build_parser().parse_args(list(argv)))


def test_hugging_face_spellings_parse_to_the_same_arguments():
    dashed = parse("train", "--out", "r", "--learning-rate", "0.2", "--batch-size", "8",
                   "--max-steps", "3", "--desirable-weight", "2", "--undesirable-weight", "1.5",
                   "--seed", "4", "--beta", "0.3", "--loss", "apo_zero_unpaired",
                   "--eval-every", "5", "--checkpoint-every", "6")
    hf = parse("train", "--output_dir", "r", "--learning_rate", "0.2",
               "--per_device_train_batch_size", "8", "--max_steps", "3", "--desirable_weight",
               "2", "--undesirable_weight", "1.5", "--seed", "4", "--beta", "0.3",
               "--loss_type", "apo_zero_unpaired", "--eval_steps", "5", "--save_steps", "6")
    assert dashed == hf
    assert (hf["out"], hf["batch_size"], hf["learning_rate"], hf["loss"]) == (
        "r", 8, 0.2, "apo_zero_unpaired")


def test_other_commands_take_underscores_and_output_dir_too():
    assert parse("demo", "--output_dir", "d", "--max_steps", "5")["out"] == "d"
    assert parse("data", "--out", "x", "--label_noise", "0.1", "--desirable_fraction", "0.5",
                 "--one_per_prompt")["one_per_prompt"] is True
    assert parse("experiment", "noise", "--output_dir", "o", "--write_docs")["write_docs"]


def test_num_train_epochs_is_not_a_flag_since_minikto_counts_steps(capsys):
    code, _, err = run_main(capsys, "train", "--out", "r", "--num_train_epochs", "3")
    assert code == 2 and "unrecognized arguments: --num_train_epochs" in err


def test_quiet_is_a_flag_of_train_demo_and_experiment():
    assert parse("train", "--out", "r", "--quiet")["quiet"] is True
    assert parse("train", "--out", "r")["quiet"] is False
    assert parse("demo", "--quiet")["quiet"] is True
    assert parse("experiment", "noise", "--quiet")["quiet"] is True


def test_progress_is_tri_state():
    assert parse("train", "--out", "r")["progress"] is None
    assert parse("train", "--out", "r", "--progress")["progress"] is True
    assert parse("train", "--out", "r", "--no-progress")["progress"] is False


# ------------------------------------------------------------------------------------------
# Bad values: refused with one line naming the knob, before any folder is made


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("argv", "message"),
    [(("--beta", "1e308"), "beta: expected a number of size at most 1e6"),
     (("--desirable-weight", "1e308"), "desirable_weight: expected a number of size at most 1e6"),
     (("--desirable_weight", "1e200"), "desirable_weight: expected a number of size at most"),
     (("--undesirable-weight", "1e300"), "undesirable_weight: expected a number of size at most"),
     (("--learning_rate", "1e300"), "learning_rate: expected a number of size at most 1e6"),
     (("--z0=-1e300",), "z0: expected a number of size at most 1e6"),
     (("--max-steps", "1" + "0" * 400), "max_steps: expected an int below 2**63"),
     (("--backend", "this"), "backend: expected 'numpy', 'array_api_strict' or 'cupy'; got "
                             "'this'"),
     (("--features", "mlp"), "features: expected 'onehot' or a positive int width; got 'mlp'")],
)
def test_a_bad_train_flag_exits_2_naming_it_and_makes_no_folder(in_tmp, capsys, argv, message):
    code, out, err = run_main(capsys, "train", "--out", "r", *argv)
    assert code == 2 and message in err.strip().splitlines()[-1], err  # after argparse's usage
    assert "Traceback" not in err
    assert "Beautiful is better than ugly" not in out + err  # `import this` never ran
    assert not (in_tmp / "r").exists()


def test_gradcheck_backend_is_restricted_to_the_known_libraries(capsys):
    code, out, err = run_main(capsys, "gradcheck", "--backend", "this")
    assert code == 2 and "backend: expected 'numpy', 'array_api_strict' or 'cupy'" in err
    assert "Beautiful is better than ugly" not in out + err


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [("c.json", '{"beta": 1' + "0" * 400 + "}", "beta: expected a number of size at most 1e6"),
     ("c.json", '{"desirable_weight": 1e308}', "desirable_weight: expected a number of size"),
     ("c.yaml", "beta: 1" + "0" * 400 + "\n", "beta: expected a number of size at most 1e6"),
     ("c.json", '{"backend": "this"}', "backend: expected a name: 'numpy'"),
     ("c.json", '{"betta": 0.2}', "did you mean 'beta' for 'betta'?"),
     ("c.yaml", "num_train_epochs: 3\n", "'num_train_epochs' is a TRL setting with no meaning"),
     ("c.yaml", "beta: 0.1\nbeta: 0.2\n", "c.yaml: invalid YAML at line 2: duplicate key")],
)
def test_a_bad_config_file_exits_2_naming_the_knob_and_makes_no_folder(in_tmp, capsys, name,
                                                                        content, message):
    (in_tmp / name).write_text(content)
    code, _, err = run_main(capsys, "train", "--out", "r", "--config", name)
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (in_tmp / "r").exists()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_as_config_exits_2_instead_of_hanging(tmp_path):
    os.mkfifo(tmp_path / "c.json")
    try:
        out = minikto_cli("train", "--out", "r", "--config", "c.json", cwd=tmp_path)
    except subprocess.TimeoutExpired:  # the old reader waited for a writer forever
        pytest.fail("a FIFO as --config hung")
    assert out.returncode == 2
    assert "c.json: expected a regular file; got c.json, which is a FIFO" in out.stderr


# ------------------------------------------------------------------------------------------
# Runs: a YAML config with TRL's names, HF flags, and the weight warning as one line


def test_a_run_from_a_yaml_config_with_trl_names_and_hf_flags(tmp_path, monkeypatch, capsys):
    (tmp_path / "kto.yaml").write_text("learning_rate: 2e-2\nper_device_train_batch_size: 16\n"
                                       "beta: 0.2\nloss_type: kto\nmax_steps: 50\n")
    monkeypatch.chdir(tmp_path)
    code, _, err = run_main(capsys, "train", "--config", "kto.yaml", "--output_dir", "run",
                            "--max_steps", "4", "--n", "200", "--quiet")
    assert code == 0, err
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["learning_rate"], config["batch_size"], config["beta"]) == (0.02, 16, 0.2)
    assert config["max_steps"] == 4  # the flag overrides the file


def test_the_weight_band_warning_is_one_clean_line(tmp_path):
    out = minikto_cli("train", "--out", "run", "--max-steps", "2", "--n", "200",
                      "--desirable-weight", "5", cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    lines = [line for line in out.stderr.splitlines() if "Eq. 8" in line]
    assert len(lines) == 1 and lines[0].startswith("minikto: warning: desirable_weight * n_D")
    assert "WeightBalanceWarning" not in out.stderr and "warnings.warn" not in out.stderr


def test_other_libraries_warnings_are_left_to_python(capsys, monkeypatch):
    from minikto.tools import cli

    passed_on = []
    monkeypatch.setattr(cli, "_PYTHON_SHOWWARNING", lambda *args: passed_on.append(args[:2]))
    cli._show_warning("from elsewhere", RuntimeWarning, "x.py", 3)
    cli._show_warning("from minikto", minikto.training.config.WeightBalanceWarning, "y.py", 4)
    assert passed_on == [("from elsewhere", RuntimeWarning)]
    assert capsys.readouterr().err == "minikto: warning: from minikto\n"


def test_z0_features_and_backend_flags_become_config_values():
    args = parse("train", "--out", "r", "--z0", "exact", "--features", "onehot", "--backend",
                 "array_api_strict")
    assert (args["z0"], args["features"], args["backend"]) == ("exact", "onehot",
                                                               "array_api_strict")
    args = parse("train", "--out", "r", "--z0", "-0.5", "--features", "8")
    assert (args["z0"], args["features"]) == (-0.5, 8)
