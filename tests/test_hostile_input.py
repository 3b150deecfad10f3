"""Hostile input: every bad input the public API and the file readers can receive ends in the
documented error (type and message), never in another exception, a traceback or a silent NaN.

``docs/HOSTILE_INPUT.md`` is the catalogue: one row per input, the error it gets and the test
that proves it (this file, ``tests/test_errors.py``, ``tests/test_jsonl.py``,
``tests/test_losses.py``, ``tests/test_feedback.py``, ``tests/test_toy.py``,
``tests/test_train.py``).

Some tests here first ran as ``xfail(strict=True)``: each pinned a defect these tests found
(in the policy's checks and the command line); the defects are fixed and the markers gone.
"""

from __future__ import annotations

import dataclasses
import json
import re
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minikto import ExactEvaluator, SoftmaxPolicy
from minikto.backend import get_namespace
from minikto.data.atomic import atomic_write
from minikto.data.feedback import UnpairedDataset, sample_paired, sample_unpaired, unpair
from minikto.data.jsonl import (
    DatasetFormatError,
    read_paired,
    read_unpaired,
    write_paired,
    write_unpaired,
)
from minikto.data.toy import bandit_task, default_task
from minikto.exact import exact_kl, response_space
from minikto.gradcheck import gradcheck
from minikto.kto import kto_loss, mismatched_indices
from minikto.objective import FlatObjective, kto_objective
from minikto.tools.cli import main
from minikto.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minikto.training.config import KTOConfig, balanced_desirable_weight
from minikto.training.optim import SGD, Adam, make_optimizer
from minikto.training.train import train

pytestmark = pytest.mark.filterwarnings("ignore::minikto.training.config.WeightBalanceWarning")

TASK = default_task()


def fuzz(n: int) -> settings:
    """``n`` examples under the "ci" profile (see conftest); tmp_path is shared by them."""
    return settings(max_examples=examples(n),
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


# ------------------------------------------------------------------------------------------
# JSON Lines: every damaged record is reported at its line, as a DatasetFormatError

UNPAIRED = {"prompt": "greet a friend", "completion": "hello friend .", "label": True}
PAIRED = {"prompt": "greet a friend", "chosen": "hello friend .", "rejected": "whatever ."}
READERS = {"unpaired": (read_unpaired, UNPAIRED), "paired": (read_paired, PAIRED)}


def line(record: dict) -> bytes:
    return json.dumps(record).encode("utf-8")


def write(tmp_path, content: bytes):
    path = tmp_path / "data.jsonl"
    path.write_bytes(content)
    return path


def around(bad: bytes, before: int, after: int, record: dict) -> bytes:
    """``before`` good lines, the bad line, ``after`` good lines."""
    good = line(record) + b"\n"
    return good * before + bad + b"\n" + good * after


def read_fails_at(tmp_path, kind: str, content: bytes, number: int) -> DatasetFormatError:
    reader, _ = READERS[kind]
    path = write(tmp_path, content)
    with pytest.raises(DatasetFormatError) as info:
        reader(path, TASK)
    error = info.value
    assert error.line == number, str(error)
    assert error.path == str(path) and str(error).startswith(f"{path}, line {number}: ")
    return error


@fuzz(60)
@given(kind=st.sampled_from(list(READERS)), data=st.data(), before=st.integers(0, 3),
       after=st.integers(0, 2))
def test_a_record_cut_at_any_byte_is_reported_at_its_line(tmp_path, kind, data, before, after):
    record = line(READERS[kind][1])
    cut = record[: data.draw(st.integers(1, len(record) - 1))]
    content = around(cut, before, after, READERS[kind][1])
    if after == 0:
        content = content[:-1]  # the file itself ends inside the record, without a newline
    error = read_fails_at(tmp_path, kind, content, before + 1)
    assert error.problem.startswith(("truncated JSON", "invalid JSON"))
    if after == 0 and error.problem.startswith("truncated"):
        assert "cut short" in error.problem


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=4), inner,
                                                                  max_size=3),
    max_leaves=6,
)
TEXTS = st.sampled_from(TASK.prompts) | st.lists(st.sampled_from(TASK.vocab), max_size=4).map(
    " ".join
)


def accepted(key: str, value) -> bool:
    """What the format accepts for ``key`` (module docstring of minikto.data.jsonl)."""
    if key == "label":
        return isinstance(value, bool)
    if not isinstance(value, str):
        return False
    if key == "prompt":
        return value in TASK.prompts
    try:
        TASK.encode_response(value)
    except ValueError:
        return False
    return True


@fuzz(100)
@given(kind=st.sampled_from(list(READERS)), data=st.data(), value=JSON_VALUES | TEXTS,
       before=st.integers(0, 3))
def test_any_json_value_in_place_of_a_field_is_accepted_only_if_valid_else_reported_at_its_line(
    tmp_path, kind, data, value, before
):
    reader, record = READERS[kind]
    key = data.draw(st.sampled_from(list(record)))
    bad = line({**record, key: value})
    if accepted(key, value):
        dataset = reader(write(tmp_path, around(bad, before, 1, record)), TASK)
        assert len(dataset) == before + 2
    else:
        error = read_fails_at(tmp_path, kind, around(bad, before, 1, record), before + 1)
        assert error.problem.startswith(f"{key}: "), error.problem


@fuzz(40)
@given(kind=st.sampled_from(list(READERS)), data=st.data(), before=st.integers(0, 3))
def test_a_record_missing_any_of_its_keys_is_reported_at_its_line(tmp_path, kind, data, before):
    record = READERS[kind][1]
    drop = data.draw(st.sets(st.sampled_from(list(record)), min_size=1))
    bad = line({k: v for k, v in record.items() if k not in drop})
    error = read_fails_at(tmp_path, kind, around(bad, before, 2, record), before + 1)
    first_missing = next(k for k in record if k in drop)
    assert error.problem.startswith(f"missing key {first_missing!r}")


@fuzz(60)
@given(kind=st.sampled_from(list(READERS)), data=st.data(), byte=st.integers(0x80, 0xFF),
       before=st.integers(0, 3))
def test_a_byte_that_is_not_utf8_is_reported_at_its_line_and_position(
    tmp_path, kind, data, byte, before
):
    record = line(READERS[kind][1])
    at = data.draw(st.integers(0, len(record)))
    bad = record[:at] + bytes([byte]) + record[at:]  # the records are ASCII: never valid
    error = read_fails_at(tmp_path, kind, around(bad, before, 1, READERS[kind][1]), before + 1)
    assert error.problem.startswith(f"invalid UTF-8 (byte {at + 1} of the line is 0x{byte:02x})")


@fuzz(100)
@given(kind=st.sampled_from(list(READERS)), junk=st.binary(max_size=300),
       before=st.integers(0, 3))
def test_random_bytes_after_good_lines_give_a_dataset_or_an_error_at_or_after_their_line(
    tmp_path, kind, junk, before
):
    reader, record = READERS[kind]
    path = write(tmp_path, (line(record) + b"\n") * before + junk)
    try:
        reader(path, TASK)
    except DatasetFormatError as error:
        if error.line is None:  # only a file without any record has no line
            assert before == 0
        else:
            assert before + 1 <= error.line <= before + 1 + junk.count(b"\n")


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [("completion", "hello " * 200_000 + ".", "completion: expected at most T = 3"),
     ("completion", "yummy" * 200_000, "completion: expected words of the vocabulary"),
     ("completion", "hello ." + " " * 1_000_000 + "friend", "completion: expected nothing after"),
     ("prompt", "greet " * 200_000, "prompt: expected one of"),
     ("label", "true" * 200_000, "label: expected a JSON boolean")],
    ids=["too many words", "an unknown word", "a word after the end", "an unknown prompt",
         "a label string"],
)
def test_a_megabyte_line_gets_a_short_error_message_at_its_line(tmp_path, field, value, problem):
    bad = line({**UNPAIRED, field: value})
    error = read_fails_at(tmp_path, "unpaired", around(bad, 2, 1, UNPAIRED), 3)
    assert error.problem.startswith(problem) and len(str(error)) < 600


def test_a_megabyte_extra_field_is_ignored_like_any_extra_key(tmp_path):
    path = write(tmp_path, line({**UNPAIRED, "notes": "x" * 5_000_000}) + b"\n")
    assert read_unpaired(path, TASK).desirable.tolist() == [True]


def test_the_line_number_is_exact_after_ten_thousand_records(tmp_path):
    content = around(b'{"prompt": "greet a friend"}', 10_000, 0, UNPAIRED)
    assert read_fails_at(tmp_path, "unpaired", content, 10_001).problem.startswith("missing key")


@pytest.mark.parametrize(
    ("content", "number", "problem"),
    [(b"\x00" * 10, 1, "invalid JSON"),
     (line(UNPAIRED) + b"\r" + line(UNPAIRED), 1, "invalid JSON"),  # a lone \r ends no line
     (b"\r\n" + line(PAIRED), 2, "missing key 'completion'"),  # a paired file, read unpaired
     (b'{"prompt": NaN, "completion": "hello .", "label": true}', 1, "prompt: expected a JSON "
      "string; got number nan"),
     (b'{"prompt": "greet a friend", "completion": "hello .", "label": 1e999}', 1,
      "label: expected a JSON boolean true or false; got number inf")],
)
def test_odd_bytes_and_json_extensions_are_reported_at_their_line(tmp_path, content, number,
                                                                   problem):
    error = read_fails_at(tmp_path, "unpaired", content, number)
    assert error.problem.startswith(problem)


def test_a_path_that_cannot_be_read_raises_the_usual_os_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        read_unpaired(tmp_path / "missing.jsonl", TASK)
    with pytest.raises(IsADirectoryError):
        read_unpaired(tmp_path, TASK)
    with pytest.raises(TypeError, match="task: expected a ToyTask; got dict"):
        read_unpaired(write(tmp_path, line(UNPAIRED)), {"vocab": []})


# ------------------------------------------------------------------------------------------
# Checkpoint files


@pytest.fixture
def checkpoint(tmp_path):
    path = tmp_path / "checkpoint.npz"
    save_checkpoint(path, step=3, params={"bias": np.arange(4.0), "w": np.ones((2, 3))},
                    optimizer_state={"t": np.asarray(3)}, config={"beta": 0.1},
                    extra={"history": [{"loss": 0.5}], "evals": []})
    return path


@fuzz(100)
@given(data=st.data())
def test_a_damaged_checkpoint_is_refused_or_loads_exactly_what_was_saved(checkpoint, data):
    """Cut anywhere, bytes overwritten or inserted: a CheckpointError, or (for bytes the zip
    format does not read, such as a timestamp) exactly the saved content; nothing else."""
    good = checkpoint.read_bytes()
    saved = load_checkpoint(checkpoint)
    damage = data.draw(st.sampled_from(["cut", "overwrite", "insert"]))
    at = data.draw(st.integers(0, len(good) - 1))
    if damage == "cut":
        bad = good[:at]
    elif damage == "overwrite":
        new = data.draw(st.binary(min_size=1, max_size=4))
        bad = good[:at] + new + good[at + len(new):]
    else:
        bad = good[:at] + data.draw(st.binary(min_size=1, max_size=16)) + good[at:]
    damaged = checkpoint.with_name("damaged.npz")
    damaged.write_bytes(bad)
    try:
        loaded = load_checkpoint(damaged, config={"beta": 0.1})
    except CheckpointError:
        return
    assert loaded["step"] == saved["step"] and loaded["extra"] == saved["extra"]
    for group in ("params", "optimizer_state"):
        assert loaded[group].keys() == saved[group].keys()
        for k, v in saved[group].items():
            assert loaded[group][k].dtype == v.dtype and np.array_equal(loaded[group][k], v)


def npz(path, **arrays):
    np.savez(path, **arrays)
    return path


def meta(obj) -> np.ndarray:
    return np.frombuffer(json.dumps(obj).encode("utf-8"), dtype=np.uint8)


GOOD_META = {"format": "minikto-checkpoint", "version": 1, "step": 1}


def craft(kind: str, path):
    """A file that is not a usable checkpoint, of the given kind."""
    if kind == "empty file":
        path.write_bytes(b"")
    elif kind == "a .npy array":
        with open(path, "wb") as f:
            np.save(f, np.ones(3))
    elif kind == "a pickle":
        path.write_bytes(b"\x80\x04K\x01.")
    elif kind == "a zip member that is not .npy":
        with zipfile.ZipFile(path, "w") as z:
            z.writestr("meta.npy", b"garbage")
    elif kind == "an object array":
        npz(path, meta=meta(GOOD_META), **{"param.x": np.array([{}], dtype=object)})
    elif kind == "metadata not UTF-8":
        npz(path, meta=np.array([255, 254], dtype=np.uint8))
    elif kind == "metadata not JSON":
        npz(path, meta=np.frombuffer(b"{step: 1", dtype=np.uint8))
    elif kind == "metadata not an object":
        npz(path, meta=meta([1, 2]))
    elif kind.startswith("step "):
        npz(path, meta=meta({**GOOD_META, "step": json.loads(kind[5:])}))
    elif kind == "config not an object":
        npz(path, meta=meta({**GOOD_META, "config": [1]}))
    elif kind == "no meta":
        npz(path, weights=np.ones(3))
    return path


@pytest.mark.parametrize(
    ("kind", "message"),
    [("empty file", "truncated or not one"),
     ("a .npy array", "truncated or not one"),
     ("a pickle", "truncated or not one"),
     ("a zip member that is not .npy", r"expected \.npy entries; got \['meta'\]"),
     ("an object array", "truncated or not one"),
     ("metadata not UTF-8", "its metadata is corrupt"),
     ("metadata not JSON", "its metadata is corrupt"),
     ("metadata not an object", "expected format 'minikto-checkpoint'"),
     ("no meta", "no 'meta' entry"),
     ("step null", "expected a step count >= 0; got None"),
     ("step -3", "expected a step count >= 0; got -3"),
     ('step "3"', "expected a step count >= 0; got '3'"),
     ("step 2.5", "expected a step count >= 0; got 2.5"),
     ("config not an object", "expected 'config' to be a JSON object; got list")],
)
def test_a_file_that_is_not_a_usable_checkpoint_is_refused_naming_it(tmp_path, kind, message):
    path = craft(kind, tmp_path / "checkpoint.npz")
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(path, config={"beta": 0.1})
    assert str(info.value).startswith(f"checkpoint {path}: ")


def test_a_checkpoint_path_that_is_missing_or_a_directory(tmp_path):
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.npz")
    with pytest.raises(CheckpointError, match="truncated or not one"):
        load_checkpoint(tmp_path)


# ------------------------------------------------------------------------------------------
# Config files and KTOConfig fields


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [(b"", ValueError, "invalid JSON at line 1: Expecting value"),
     (b'{"beta": 0.1,\n "seed": }', ValueError, "invalid JSON at line 2"),
     (b'{"beta": "\xff"}', ValueError, "invalid UTF-8 at byte 11"),
     (b'{"beta": 0.1, "beta": 0.2}', ValueError, "invalid JSON: duplicate key 'beta'"),
     (b"[" * 100_000, ValueError, "invalid JSON: maximum recursion depth"),
     (b'{"max_steps": 1' + b"0" * 5000 + b"}", ValueError, "invalid JSON: Exceeds the limit"),
     (b"[0.1]", ValueError, "expected a JSON object; got list"),
     (b'{"betta": 0.1}', ValueError, r"config: unknown keys \['betta'\]"),
     (b'{"beta": "0.1"}', TypeError, "beta: expected a real number; got str '0.1'"),
     (b'{"beta": null}', TypeError, "beta: expected a real number"),
     (b'{"beta": NaN}', ValueError, "beta: expected a finite number; got nan"),
     (b'{"features": "8"}', ValueError, "features: expected 'onehot' or a positive int"),
     (b'{"batch_size": 2.0}', ValueError, "batch_size: expected an int >= 2; got 2.0")],
)
def test_a_bad_config_file_is_refused_naming_the_file_or_the_field(tmp_path, content, error,
                                                                    message):
    path = tmp_path / "config.json"
    path.write_bytes(content)
    with pytest.raises(error, match=message) as info:
        KTOConfig.from_json(path)
    if "invalid" in message or "JSON object" in message:
        assert str(info.value).startswith(f"config file {path}: ")


def test_a_config_file_with_a_byte_order_mark_is_read_and_a_directory_is_an_os_error(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b'\xef\xbb\xbf{"beta": 0.25}')
    assert KTOConfig.from_json(path).beta == 0.25
    with pytest.raises(IsADirectoryError):
        KTOConfig.from_json(tmp_path)
    with pytest.raises(FileNotFoundError):
        KTOConfig.from_json(tmp_path / "missing.json")


@pytest.mark.parametrize(
    ("field", "value", "error", "message"),
    [("beta", 0.0, ValueError, "beta: expected a number > 0"),
     ("beta", True, TypeError, "beta: expected a real number"),
     ("desirable_weight", -1.0, ValueError, "desirable_weight: expected a number >= 0"),
     ("undesirable_weight", float("inf"), ValueError, "undesirable_weight: expected a finite"),
     ("z0", "kl", ValueError, "z0: expected one of"),
     ("z0", float("nan"), ValueError, "z0: expected a finite number"),
     ("z0", [1], TypeError, "z0: expected a real number"),
     ("loss", "ipo", ValueError, "loss: expected one of"),
     ("learning_rate", 0.0, ValueError, "learning_rate: expected a number > 0"),
     ("optimizer", "rmsprop", ValueError, "optimizer: expected 'adam' or 'sgd'"),
     ("batch_size", 1, ValueError, "batch_size: expected an int >= 2"),
     ("batch_size", 32.0, ValueError, "batch_size: expected an int >= 2"),
     ("max_steps", -1, ValueError, "max_steps: expected an int >= 0"),
     ("seed", -1, ValueError, "seed: expected an int >= 0"),
     ("seed", True, ValueError, "seed: expected an int >= 0"),
     ("features", "mlp", ValueError, "features: expected 'onehot' or a positive int"),
     ("features", 0, ValueError, "features: expected 'onehot' or a positive int"),
     ("features", True, ValueError, "features: expected 'onehot' or a positive int"),
     ("backend", 3, ValueError, "backend: expected a name"),
     ("backend", "", ValueError, "backend: expected a name"),
     ("dtype", "float16", ValueError, "dtype: expected 'float32' or 'float64'"),
     ("sft_steps", -1, ValueError, "sft_steps: expected an int >= 0"),
     ("eval_every", 0.5, ValueError, "eval_every: expected an int >= 0"),
     ("checkpoint_every", -5, ValueError, "checkpoint_every: expected an int >= 0"),
     ("progress", "yes", ValueError, "progress: expected True, False or None")],
)
def test_every_config_field_refuses_a_bad_value_naming_the_field(field, value, error, message):
    with pytest.raises(error, match=message):
        KTOConfig(**{field: value})


def test_config_from_dict_refuses_what_is_not_a_dict():
    with pytest.raises(TypeError, match="config: expected a dict of KTOConfig fields; got list"):
        KTOConfig.from_dict([("beta", 0.1)])


# ------------------------------------------------------------------------------------------
# Command-line arguments: exit code 2 and one line naming what is wrong, never a traceback


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


# ------------------------------------------------------------------------------------------
# The policy: constructor, sample(), the backward pass


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [(dict(vocab_size=True), TypeError, "vocab_size: expected a positive int; got True"),
     (dict(vocab_size=2.5), TypeError, "vocab_size: expected a positive int"),
     (dict(vocab_size="5"), TypeError, "vocab_size: expected a positive int"),
     (dict(num_prompts=0), ValueError, "num_prompts: expected a positive int; got 0"),
     (dict(num_prompts=-2), ValueError, "num_prompts: expected a positive int"),
     (dict(features=0), ValueError, "features: expected a positive int; got 0"),
     (dict(features=True), ValueError, "features: expected 'onehot' or a positive int"),
     (dict(features=2.5), ValueError, "features: expected 'onehot' or a positive int"),
     (dict(eos_token=-1), ValueError, r"eos_token: expected an id in \[0, 5\)"),
     (dict(eos_token=True), TypeError, "eos_token: expected an int or None"),
     (dict(eos_token=1.0), TypeError, "eos_token: expected an int or None"),
     (dict(dtype="int32"), ValueError, "dtype: expected 'float32' or 'float64'"),
     (dict(dtype=None), ValueError, "dtype: expected 'float32' or 'float64'"),
     (dict(backend="nope"), ValueError, "backend: expected 'numpy', 'cupy'")],
)
def test_the_policy_constructor_refuses_bad_arguments_naming_them(kwargs, error, message):
    with pytest.raises(error, match=message):
        SoftmaxPolicy(**{"vocab_size": 5, "num_prompts": 2, **kwargs})


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [(dict(backend=3), "backend: expected"),  # AttributeError: 'int' has no '__name__'
     (dict(seed=-1), "seed: expected"),  # NumPy's "expected non-negative integer"
     (dict(seed="a"), "seed: expected"),
     (dict(init_std=float("nan")), "init_std: expected")],  # accepted: NaN parameters
)
def test_the_policy_constructor_names_a_bad_backend_seed_or_init_std(kwargs, message):
    with pytest.raises((TypeError, ValueError), match=message):
        SoftmaxPolicy(5, 2, **kwargs)


def test_policy_queries_refuse_shapes_that_do_not_fit_and_accept_any_integer_width():
    policy = SoftmaxPolicy(5, 2, eos_token=0)
    with pytest.raises(ValueError, match=r"states: expected shape \(2,\) like prompts; got \(1,\)"):
        policy.next_token_logits(np.array([0, 1]), np.array([0]))
    prompts, responses = np.array([0, 1]), np.array([[1, 0], [2, 0]])
    wide = policy.sequence_logps(prompts, responses)
    narrow = policy.sequence_logps(prompts.astype(np.int32), responses.astype(np.int16))
    np.testing.assert_array_equal(narrow, wide)


def test_responses_without_a_single_position_are_refused_naming_them():
    # policy.py takes the min of the ids before its T >= 1 check: NumPy's "zero-size array"
    policy = SoftmaxPolicy(5, 2, eos_token=0)
    with pytest.raises(ValueError, match=r"responses: expected at least one position \(T >= 1\)"):
        policy.sequence_logps(np.array([0, 1]), np.zeros((2, 0), dtype=np.int64))


def test_nan_parameters_are_refused_downstream_by_the_loss_never_silently_used():
    policy = SoftmaxPolicy(5, 2, eos_token=0)
    policy.set_flat(np.full(policy.num_parameters, np.nan))
    batch = (np.array([0, 1]), np.array([[1, 0], [2, 0]]), np.array([True, False]))
    with pytest.raises(ValueError, match="policy_logps: expected finite values; got 2 NaN"):
        kto_objective(policy, SoftmaxPolicy(5, 2, eos_token=0), *batch, z0="zero")


@pytest.mark.parametrize(
    ("prompts", "length", "error", "message"),
    [([0, 2], 3, ValueError, r"prompts: expected ids in \[0, 2\); got 2"),
     ([-1], 3, ValueError, r"prompts: expected ids in \[0, 2\); got -1"),
     ([0.0], 3, TypeError, "prompts: expected integer ids"),
     ([[0]], 3, ValueError, "prompts: expected a 1-d array"),
     ([], 3, ValueError, "prompts: expected a non-empty batch"),
     ("01", 3, TypeError, "prompts: expected an integer array; got str"),
     ([0], 0, ValueError, "length: expected a positive int; got 0"),
     ([0], 1.5, TypeError, "length: expected a positive int"),
     ([0], True, TypeError, "length: expected a positive int")],
)
def test_sample_refuses_bad_prompts_and_lengths_naming_them(prompts, length, error, message):
    policy = SoftmaxPolicy(5, 2, eos_token=0)
    with pytest.raises(error, match=message):
        policy.sample(prompts if isinstance(prompts, str) else np.asarray(prompts), length)


@pytest.mark.parametrize("seed", [-1, "x"])
def test_sample_names_a_bad_seed(seed):
    with pytest.raises((TypeError, ValueError), match="seed: expected"):
        SoftmaxPolicy(5, 2).sample(np.array([0]), 2, seed=seed)


def test_the_backward_pass_refuses_an_upstream_gradient_or_cache_that_does_not_fit():
    policy = SoftmaxPolicy(5, 2, eos_token=0)
    prompts, responses = np.array([0, 1]), np.array([[1, 0], [2, 0]])
    with pytest.raises(ValueError, match=r"grad_logps: expected shape \(2,\)"):
        policy.sequence_logps_backward(prompts, responses, np.ones(3))
    with pytest.raises(ValueError, match=r"grad_logps: expected shape \(2,\)"):
        policy.sequence_logps_backward(prompts, responses, [1.0, 2.0])
    _, other = policy.sequence_logps(np.array([0]), np.array([[3, 0]]), return_cache=True)
    with pytest.raises(ValueError, match="cache: expected the cache of this batch"):
        policy.sequence_logps_backward(prompts, responses, np.ones(2), cache=other)
    with pytest.raises(ValueError, match=r"theta: expected shape \(\d+,\)"):
        policy.set_flat(np.zeros(3))


@pytest.mark.parametrize("kind", ["another backend", "NaN"])
def test_the_backward_pass_refuses_an_upstream_gradient_of_another_backend_or_nan(kind):
    policy = SoftmaxPolicy(5, 2, eos_token=0)
    prompts, responses = np.array([0, 1]), np.array([[1, 0], [2, 0]])
    grad = (get_namespace("array_api_strict").asarray([1.0, 2.0]) if kind == "another backend"
            else np.array([np.nan, 1.0]))
    with pytest.raises((TypeError, ValueError), match="grad_logps: expected"):
        policy.sequence_logps_backward(prompts, responses, grad)


def test_get_namespace_refuses_what_is_not_an_array_library_naming_it():
    with pytest.raises(TypeError, match="backend: expected a name such as 'numpy'.*; got int"):
        get_namespace(3)
    with pytest.raises(ValueError, match="backend: 'json' is not an array API library"):
        get_namespace("json")
    with pytest.raises(ValueError, match="backend: expected 'numpy', 'cupy', 'array_api_strict' "
                                         "or an importable array library; got 'no_such_lib'"):
        get_namespace("no_such_lib")
    assert get_namespace(np) is get_namespace("numpy")  # a module is accepted by its name


def test_token_arrays_of_another_backend_are_refused_naming_the_argument():
    policy = SoftmaxPolicy(5, 2, eos_token=0)
    strict = get_namespace("array_api_strict")
    with pytest.raises(TypeError, match="prompts: expected an array of the policy's backend"):
        policy.sequence_logps(strict.asarray([0, 1]), np.array([[1, 0], [2, 0]]))
    with pytest.raises(TypeError, match="responses: expected an array of the policy's backend"):
        policy.sequence_logps(np.array([0, 1]), strict.asarray([[1, 0], [2, 0]]))
    with pytest.raises(TypeError, match="one array library"):
        kto_loss(np.zeros(2), np.zeros(2), np.array([True, False]), strict.asarray(0.5))


# ------------------------------------------------------------------------------------------
# gradcheck's arguments


def square(x):
    return float(x @ x), 2 * x


@pytest.mark.parametrize(
    ("fun", "x", "kwargs", "error", "message"),
    [(3, np.ones(3), {}, TypeError, "fun: expected a callable"),
     (lambda x: float(x @ x), np.ones(3), {}, TypeError, "fun: expected fun.x. to return a pair"),
     (lambda x: (0.0, np.ones(2)), np.ones(3), {}, ValueError,
      r"fun: expected a gradient of shape \(3,\); got \(2,\)"),
     (square, np.ones((3, 1)), {}, ValueError, "x: expected a non-empty 1-d vector"),
     (square, np.ones(0), {}, ValueError, "x: expected a non-empty 1-d vector"),
     (square, "abc", {}, TypeError, "x: expected a vector of real numbers; got str"),
     (square, np.ones(3), dict(mode="half"), ValueError, "mode: expected 'full' or"),
     (square, np.ones(3), dict(eps=0.0), ValueError, "eps: expected a step > 0"),
     (square, np.ones(3), dict(eps=float("nan")), ValueError, "eps: expected a step > 0"),
     (square, np.ones(3), dict(rtol=-1.0), ValueError, "rtol: expected a number >= 0"),
     (square, np.ones(3), dict(rtol=float("nan")), ValueError, "rtol: expected a finite"),
     (square, np.ones(3), dict(atol="0"), TypeError, "atol: expected a real number"),
     (square, np.ones(3), dict(mode="directions", n_directions=0), ValueError,
      "n_directions: expected an int >= 1; got 0"),
     (square, np.ones(3), dict(mode="directions", n_directions=2.5), ValueError,
      "n_directions: expected an int >= 1"),
     (square, np.ones(3), dict(blocks={"w": slice(5, 9)}), ValueError,
      r"blocks: expected slices that select coordinates of x \(size 3\); got 'w'"),
     (square, np.ones(3), dict(blocks={"w": [0, 1]}), ValueError, "blocks: expected slices")],
)
def test_gradcheck_refuses_bad_arguments_naming_them(fun, x, kwargs, error, message):
    with pytest.raises(error, match=message):
        gradcheck(fun, x, **kwargs)


def test_gradcheck_reports_a_nan_gradient_or_value_as_a_failure_not_an_exception():
    for fun in (lambda x: (float(x @ x), np.full(3, np.nan)), lambda x: (float("nan"), 2 * x)):
        report = gradcheck(fun, np.ones(3), blocks={"a": slice(0, 2), "b": slice(2, 3)})
        assert not report.passed and not bool(report)
        rows = report.table().splitlines()
        assert len(rows) == 3 and all(row.endswith("NO") for row in rows[1:])


# ------------------------------------------------------------------------------------------
# The objective's arguments and the exact quantities


@pytest.fixture
def pair():
    policy = SoftmaxPolicy(5, 2, eos_token=0, seed=1)
    batch = (np.array([0, 1]), np.array([[1, 0], [2, 0]]), np.array([True, False]))
    return policy, SoftmaxPolicy(5, 2, eos_token=0, seed=2).copy(), batch


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [(dict(policy=None), TypeError, "policy: expected a SoftmaxPolicy; got NoneType"),
     (dict(reference="ref"), TypeError, "reference: expected a SoftmaxPolicy; got str"),
     (dict(reference=SoftmaxPolicy(6, 2, eos_token=0)), ValueError,
      "reference: expected the vocab_size of policy, 5; got 6"),
     (dict(reference=SoftmaxPolicy(5, 3, eos_token=0)), ValueError,
      "reference: expected the num_prompts of policy, 2; got 3"),
     (dict(reference=SoftmaxPolicy(5, 2, eos_token=1)), ValueError,
      "reference: expected the eos_token of policy, 0; got 1"),
     (dict(reference=SoftmaxPolicy(5, 2, eos_token=0, backend="array_api_strict")), TypeError,
      r"reference: expected the backend and dtype of policy \(numpy, float64\); "
      r"got \(array_api_strict, float64\)"),
     (dict(reference=SoftmaxPolicy(5, 2, eos_token=0, dtype="float32")), TypeError,
      r"reference: expected the backend and dtype of policy"),
     (dict(z0=True), TypeError, "z0: expected a real number; got bool True"),
     (dict(z0=float("inf")), ValueError, "z0: expected a finite number"),
     (dict(desirable=np.array([1, 0])), TypeError, "desirable: expected a boolean array"),
     (dict(desirable=np.array([True])), ValueError, r"desirable: expected shape \(2,\)"),
     (dict(desirable=get_namespace("array_api_strict").asarray([True, False])), TypeError,
      "one array library"),
     (dict(reference_logps=np.zeros(3)), ValueError, r"reference_logps: expected shape \(2,\)"),
     (dict(reference_logps=np.zeros(2, dtype=np.float32)), TypeError,
      "reference_logps: expected dtype float64"),
     (dict(fixed_z0=float("nan")), ValueError, "z0: expected a finite number"),
     (dict(z0="exact", max_length=0), ValueError, "length: expected a positive int"),
     (dict(beta=-0.1), ValueError, "beta: expected a number > 0")],
)
def test_the_objective_refuses_bad_arguments_naming_them(pair, change, error, message):
    policy, reference, (prompts, responses, desirable) = pair
    args = dict(policy=policy, reference=reference, prompts=prompts, responses=responses,
                desirable=desirable)
    kwargs = {k: change.pop(k) for k in list(change) if k not in args}
    args.update(change)
    with pytest.raises(error, match=message):
        kto_objective(*args.values(), **kwargs)


def test_flat_objective_refuses_foreign_policies_and_vectors_of_the_wrong_size(pair):
    policy, reference, batch = pair
    with pytest.raises(TypeError, match="policy: expected a SoftmaxPolicy; got dict"):
        FlatObjective({}, reference, *batch)
    obj = FlatObjective(policy, reference, *batch)
    with pytest.raises(ValueError, match=rf"theta: expected shape \({policy.num_parameters},\)"):
        obj(np.zeros(3))


@pytest.mark.parametrize(
    ("prompts", "length", "message"),
    [(np.array([2]), 3, r"prompts: expected ids in \[0, 2\); got 2"),
     (np.array([-1]), 3, r"prompts: expected ids in \[0, 2\); got -1"),
     (np.array([0.0]), 3, "prompts: expected a 1-d array of prompt ids"),
     (np.array([[0]]), 3, "prompts: expected a 1-d array of prompt ids"),
     (np.array([0]), 0, "length: expected a positive int"),
     (np.array([0]), 2.5, "length: expected a positive int")],
)
def test_exact_kl_refuses_prompts_out_of_range_and_bad_lengths(pair, prompts, length, message):
    policy, reference, _ = pair
    with pytest.raises(ValueError, match=message):
        exact_kl(policy, reference, prompts, length)


def test_exact_kl_refuses_a_reference_of_another_vocabulary_or_end_token(pair):
    policy, _, _ = pair
    for other in (SoftmaxPolicy(6, 2, eos_token=0), SoftmaxPolicy(5, 2, eos_token=None)):
        with pytest.raises(ValueError, match="reference: expected the same vocabulary size"):
            exact_kl(policy, other, np.array([0]), 2)


def test_labels_given_as_a_python_list_are_accepted_on_every_backend(backend):
    policy = SoftmaxPolicy(5, 2, eos_token=0, seed=1, backend=backend)
    xp = policy.xp
    batch = (xp.asarray([0, 1]), xp.asarray([[1, 0], [2, 0]]))
    as_list = kto_objective(policy, policy.copy(), *batch, [True, False], z0="zero")
    as_array = kto_objective(policy, policy.copy(), *batch, xp.asarray([True, False]), z0="zero")
    assert float(as_list.loss) == float(as_array.loss)


def test_mismatched_indices_refuses_a_batch_size_that_is_not_an_int():
    for bad in (2.0, True, "4"):
        with pytest.raises(TypeError, match="batch_size: expected an int"):
            mismatched_indices(bad)


@pytest.mark.parametrize(
    ("args", "message"),
    [((0, 3), "vocab_size: expected a positive int; got 0"),
     ((3, 2.5), "length: expected a positive int; got 2.5"),
     ((True, 2), "vocab_size: expected a positive int; got True"),
     ((3, 2, 7), r"eos_token: expected None or an id in \[0, 3\); got 7"),
     ((3, 2, -1), r"eos_token: expected None or an id in \[0, 3\); got -1")],
)
def test_response_space_refuses_bad_sizes_and_end_tokens(args, message):
    with pytest.raises(ValueError, match=message):
        response_space(*args)


# ------------------------------------------------------------------------------------------
# train() and atomic writes


@pytest.fixture(scope="module")
def small_data():
    return sample_unpaired(TASK, 40, seed=0)


def test_train_refuses_a_foreign_config_task_or_reference(small_data, tmp_path):
    config = KTOConfig(max_steps=1, batch_size=8)
    with pytest.raises(TypeError, match="config: expected a KTOConfig; got dict"):
        train(TASK, small_data, {"max_steps": 1})
    with pytest.raises(TypeError, match="task: expected a ToyTask; got NoneType"):
        train(None, small_data, config)
    with pytest.raises(TypeError, match="reference: expected a SoftmaxPolicy; got str"):
        train(TASK, small_data, config, reference="base")
    with pytest.raises(ValueError, match="reference: expected the task's vocab_size, 12; got"):
        train(TASK, small_data, config, reference=bandit_task().base_policy())
    (tmp_path / "a_file").write_text("x")
    with pytest.raises(NotADirectoryError, match="out_dir: expected a directory"):
        train(TASK, small_data, config, out_dir=tmp_path / "a_file")
    with pytest.raises(ValueError, match="out_dir: resume=True needs the run directory"):
        train(TASK, small_data, config, resume=True)
    with pytest.raises(FileNotFoundError, match="resume=True expects .*checkpoint.npz"):
        train(TASK, small_data, config, out_dir=tmp_path / "empty", resume=True)
    with pytest.raises(ValueError, match="data: expected at least 2 examples"):
        train(TASK, small_data.subset([0]), config)


def test_atomic_write_refuses_a_missing_directory_a_directory_and_an_unknown_mode(tmp_path):
    with pytest.raises(FileNotFoundError, match="path: expected a file in an existing directory"):
        with atomic_write(tmp_path / "missing" / "f.txt"):
            pass
    with pytest.raises(IsADirectoryError, match="path: expected a file name"):
        with atomic_write(tmp_path):
            pass
    with pytest.raises(ValueError, match="mode: expected 'w' or 'wb'; got 'a'"):
        with atomic_write(tmp_path / "f.txt", "a"):
            pass
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------
# Tasks, datasets, samplers, writers, optimizers (the rest of the catalogue's rows are in
# tests/test_toy.py, tests/test_feedback.py and tests/test_jsonl.py)


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [(dict(eos_token=True), ValueError, r"eos_token: expected an id in \[0, 12\) or None"),
     (dict(eos_token=1.5), ValueError, r"eos_token: expected an id in \[0, 12\) or None"),
     (dict(eos_token=12), ValueError, r"eos_token: expected an id in \[0, 12\) or None"),
     (dict(vocab=()), ValueError, "vocab: expected distinct non-empty words"),
     (dict(vocab=("hello",) * 12), ValueError, "vocab: expected distinct non-empty words"),
     (dict(vocab=("two words",) + TASK.vocab[1:]), ValueError, "vocab: expected distinct"),
     (dict(prompts=(1, 2, 3, 4, 5)), ValueError, "prompts: expected distinct prompt texts"),
     (dict(prompts=("a", "a", "b", "c", "d")), ValueError, "prompts: expected distinct"),
     (dict(max_length=0), ValueError, "max_length: expected a positive int; got 0"),
     (dict(max_length=2.0), TypeError, "max_length: expected a positive int; got 2.0"),
     (dict(scores=()), ValueError, r"scores: expected shape \(5, 12\)"),
     (dict(base_bias=(float("nan"),) * 12), ValueError, "base_bias: expected finite values"),
     (dict(repeat_penalty=float("nan")), ValueError, "repeat_penalty: expected a finite number"),
     (dict(utility_bound=-1.0), ValueError, "utility_bound: expected a finite number >= 0")],
)
def test_a_toy_task_refuses_inconsistent_fields_naming_them(change, error, message):
    with pytest.raises(error, match=message):
        dataclasses.replace(TASK, **change)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [(lambda: unpair([1]), TypeError, "paired: expected a PairedDataset; got list"),
     (lambda: sample_paired(TASK, 5, max_resamples=-1), ValueError,
      "max_resamples: expected an int >= 0; got -1"),
     (lambda: sample_paired(TASK, 5, max_resamples=1.5), TypeError, "max_resamples: expected"),
     (lambda: sample_unpaired(None, 5), TypeError, "task: expected a ToyTask; got NoneType"),
     (lambda: sample_unpaired(TASK, 5, policy="base"), TypeError,
      "policy: expected a SoftmaxPolicy or None; got str"),
     (lambda: sample_unpaired(TASK, 5, seed=1.5), TypeError, "seed: expected an int >= 0"),
     (lambda: sample_unpaired(TASK, 2.0), TypeError, "n: expected a positive int; got 2.0"),
     (lambda: sample_unpaired(TASK, 5, label_noise="0.1"), TypeError,
      "label_noise: expected a real number"),
     (lambda: UnpairedDataset(np.zeros((2, 2), int), np.zeros((2, 3), int), np.zeros(2, bool)),
      ValueError, r"prompts: expected a 1-d int array \(N,\)"),
     (lambda: UnpairedDataset(np.array([-1]), np.zeros((1, 3), int), np.zeros(1, bool)),
      ValueError, "prompts: expected prompt ids >= 0; got -1"),
     (lambda: sample_unpaired(TASK, 5).subset(np.zeros(3, bool)), ValueError,
      r"indices: expected a bool mask of shape \(5,\)"),
     (lambda: sample_unpaired(TASK, 5).subset(np.array([0.5])), ValueError,
      "indices: expected 1-d int ids or a bool mask"),
     (lambda: sample_unpaired(TASK, 5).subset(np.array([7])), ValueError,
      r"indices: expected ids in \[0, 5\)"),
     (lambda: sample_paired(TASK, 5).subset(np.array([-1])), ValueError,
      r"indices: expected ids in \[0, \d\)"),
     (lambda: TASK.encode(3), TypeError, "text: expected a str; got int"),
     (lambda: TASK.decode([0.5]), ValueError, "ids: expected a 1-d sequence of token ids"),
     (lambda: TASK.decode([99]), ValueError, r"ids: expected token ids in \[0, 12\); got 99"),
     (lambda: TASK.prompt_id(3), TypeError, "prompt: expected a str; got int"),
     (lambda: TASK.utility(np.array([0.0]), np.array([[0, 11, -1]])), ValueError,
      "prompts: expected a 1-d int array"),
     (lambda: TASK.utility(np.array([0, 1]), np.array([[0, 11, -1]])), ValueError,
      "responses: expected 2 rows, one per prompt; got 1"),
     (lambda: TASK.utility(np.array([0]), np.zeros((1, 0), int)), ValueError,
      r"responses: expected at least one column \(T >= 1\)")],
)
def test_datasets_samplers_and_the_task_refuse_bad_arguments_naming_them(call, error, message):
    with pytest.raises(error, match=message):
        call()


def test_the_writers_refuse_the_other_kind_of_dataset_before_touching_the_file(tmp_path):
    path = tmp_path / "data.jsonl"
    with pytest.raises(TypeError, match="dataset: expected an UnpairedDataset; got PairedDataset"):
        write_unpaired(path, sample_paired(TASK, 5), TASK)
    with pytest.raises(TypeError, match="dataset: expected a PairedDataset; got UnpairedDataset"):
        write_paired(path, sample_unpaired(TASK, 5), TASK)
    with pytest.raises(TypeError, match="task: expected a ToyTask; got NoneType"):
        write_unpaired(path, sample_unpaired(TASK, 5), None)
    assert list(tmp_path.iterdir()) == []


def test_the_weight_helper_refuses_data_without_a_desirable_example():
    with pytest.raises(ValueError, match="num_desirable: expected at least one desirable example"):
        balanced_desirable_weight(0, 10)


@pytest.mark.parametrize(
    ("call", "message"),
    [(lambda: Adam(0.1, beta1=1.0), r"beta1, beta2: expected numbers in \[0, 1\)"),
     (lambda: Adam(0.1, eps=0.0), "eps: expected a number > 0"),
     (lambda: Adam(0.0), "learning_rate: expected a number > 0"),
     (lambda: SGD(float("nan")), "learning_rate: expected a finite number"),
     (lambda: make_optimizer("rmsprop", 0.1), "optimizer: expected 'adam' or 'sgd'"),
     (lambda: SGD(0.1).step({"w": np.ones(2)}, {"v": np.ones(2)}),
      r"grads: expected the keys \['w'\]; got \['v'\]")],
)
def test_the_optimizers_refuse_bad_hyperparameters_and_mismatched_gradients(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ------------------------------------------------------------------------------------------
# The catalogue itself

CATALOGUE = Path(__file__).resolve().parent.parent / "docs" / "HOSTILE_INPUT.md"


def test_every_test_the_catalogue_names_exists():
    """docs/HOSTILE_INPUT.md cites tests as `file::test_name`: each must be a real test."""
    cited = re.findall(r"`(\w+)::(test_\w+)", CATALOGUE.read_text(encoding="utf-8"))
    assert len(cited) > 80
    tests = CATALOGUE.parent.parent / "tests"
    missing = []
    for short, name in set(cited):
        source = (tests / f"test_{short}_input.py" if short == "hostile"
                  else tests / f"test_{short}.py").read_text(encoding="utf-8")
        if not re.search(rf"^def {name}\(", source, flags=re.MULTILINE):
            missing.append(f"{short}::{name}")
    assert not missing, missing


def test_exact_evaluation_refuses_a_task_or_reference_that_does_not_fit():
    task = default_task()
    with pytest.raises(TypeError, match="task: expected a ToyTask .* got NoneType"):
        ExactEvaluator(None, task.base_policy())
    with pytest.raises(ValueError, match=r"reference: expected a policy of the task \(V=12"):
        ExactEvaluator(task, SoftmaxPolicy(3, 2))


def test_train_names_an_out_dir_that_is_not_a_path():
    task = default_task()
    data = sample_unpaired(task, 50, seed=0)
    with pytest.raises(TypeError, match="out_dir: expected a directory path"):
        train(task, data, KTOConfig(max_steps=1, desirable_weight=2.5), out_dir=123)
