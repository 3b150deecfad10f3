"""Hostile command lines: exit code 2 and one line naming what is wrong, never a traceback
(the catalogue of bad inputs: docs/HOSTILE_INPUT.md)."""

from __future__ import annotations

import json

import pytest

from minikto.tools.cli import main

pytestmark = pytest.mark.filterwarnings("ignore::minikto.training.config.WeightBalanceWarning")



UNPAIRED = {"prompt": "greet a friend", "completion": "hello friend .", "label": True}


def line(record: dict) -> bytes:
    return json.dumps(record).encode("utf-8")


def run_cli(capsys, *argv):
    try:
        code = main(list(argv))
    except SystemExit as stop:  # argparse's own errors
        code = stop.code
    return code, capsys.readouterr().err


CLI_CASES = [
    (("train", "--out", "r", "--beta", "abc"), "argument --beta: invalid float value"),
    (("train", "--out", "r", "--beta", "0"), "beta: expected a number > 0"),
    (("train", "--out", "r", "--z0", "nan"), "z0: expected a finite number"),
    (("train", "--out", "r", "--batch-size", "1"), "batch_size: expected an int >= 2"),
    (("train", "--out", "r", "--dtype", "float16"), "dtype: expected 'float32' or 'float64'"),
    (("train", "--out", "r", "--features", "0"), "features: expected 'onehot' or a positive"),
    (("train", "--out", "r", "--backend", "nope"), "backend: expected 'numpy'"),
    (("train", "--out", "r", "--n", "0"), "n: expected a positive int"),
    (("train", "--out", "r", "--n", "1"), "data: expected at least 2 examples"),
    (("train", "--out", "r", "--resume"), "resume=True expects"),
    (("train", "--out", "r", "--config", "missing.json"), "missing.json"),
    (("train", "--out", "r", "--config", "bad.json"), "config file bad.json: invalid UTF-8"),
    (("train", "--out", "r", "--data", "bad.jsonl"), "bad.jsonl, line 1: invalid JSON"),
    (("train", "--out", "r", "--loss", "dpo", "--data", "good.jsonl"),
     "good.jsonl, line 1: missing key 'chosen'"),
    (("data", "--out", "d.jsonl", "--n", "-5"), "n: expected a positive int"),
    (("data", "--out", "d.jsonl", "--label-noise", "2"), "label_noise: expected a finite"),
    (("data", "--out", "nowhere/d.jsonl"), "path: expected a file in an existing directory"),
    (("data", "--out", "good.jsonl"), "good.jsonl exists; pass --overwrite"),
    (("vectors",), "--out: expected the JSON file to write"),
    (("gradcheck", "--backend", "nope"), "backend: expected 'numpy'"),
    (("nonsense",), "invalid choice: 'nonsense'"),
]


@pytest.fixture
def cli_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.json").write_bytes(b'{"beta": "\xff"}')
    (tmp_path / "bad.jsonl").write_bytes(b"{oops}\n")
    (tmp_path / "good.jsonl").write_bytes(line(UNPAIRED) + b"\n")
    (tmp_path / "a_directory").mkdir()
    (tmp_path / "a_file").write_text("x")
    return tmp_path


@pytest.mark.parametrize(("argv", "message"), CLI_CASES)
def test_a_bad_command_line_exits_2_with_one_line_naming_the_problem(cli_dir, capsys, argv,
                                                                     message):
    code, err = run_cli(capsys, *argv)
    assert code == 2 and message in err, err
    assert "Traceback" not in err


CLI_DEFECTS = [  # found here, fixed in cli.py (OSError caught) and vectors.py (file named)
    (("train", "--out", "r", "--config", "a_directory"), "a_directory"),
    (("train", "--out", "r", "--data", "a_directory"), "a_directory"),
    (("train", "--out", "a_file", "--max-steps", "1"), "out_dir: expected a directory"),
    (("demo", "--out", "a_file"), "out_dir: expected a directory"),
    (("data", "--out", "a_directory", "--overwrite"), "path: expected a file name"),
    (("train", "--out", "r", "--features", "mlp"), "features"),  # int('mlp') names nothing
    (("vectors", "--check", "a_file"), "a_file"),  # vectors.py: bare JSON error, no file name
]


@pytest.mark.parametrize(("argv", "message"), CLI_DEFECTS)
def test_a_bad_path_or_feature_flag_exits_2_naming_it(cli_dir, capsys, argv, message):
    code, err = run_cli(capsys, *argv)
    assert code == 2 and message in err, err
