"""Hostile config files and KTOConfig fields: refused naming the file or the field (the
catalogue of bad inputs: docs/HOSTILE_INPUT.md)."""

from __future__ import annotations

import pytest

from minikto.training.config import KTOConfig

pytestmark = pytest.mark.filterwarnings("ignore::minikto.training.config.WeightBalanceWarning")



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
     ("loss", "kto_pair", ValueError, "loss: expected one of"),
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
