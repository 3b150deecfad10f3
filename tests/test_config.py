"""KTOConfig: every field documented, plain values only, bounded knobs, TRL's names, and the
config files it reads (JSON, YAML), refusing what is not a small regular file."""

import dataclasses
import json
import os
import sys
import threading
from decimal import Decimal
from fractions import Fraction

import numpy as np
import pytest

from minikto.training.config import (
    MAX_INT,
    MAX_SCALE,
    TRL_ALIASES,
    TRL_WITHOUT_MEANING,
    KTOConfig,
    field_names,
)
from minikto.training.config_file import MAX_CONFIG_BYTES, read_config_file

# ------------------------------------------------------------------------------------------
# The fields: one line of help each, and what the CLI shows as choices


def test_every_field_has_help_and_the_choice_fields_list_what_the_config_accepts():
    for field in dataclasses.fields(KTOConfig):
        assert field.metadata["help"].strip(), field.name
        for choice in field.metadata["choices"]:
            if choice in ("NUMBER", "WIDTH"):
                continue
            assert KTOConfig(**{field.name: choice}).to_dict()[field.name] == choice
    assert field_names()[0] == "beta" and "progress" in field_names()


def test_the_trl_names_point_at_fields_and_never_shadow_one():
    assert set(TRL_ALIASES.values()) <= set(field_names())
    assert not set(TRL_ALIASES) & set(field_names())
    assert not set(TRL_WITHOUT_MEANING) & (set(field_names()) | set(TRL_ALIASES))


# ------------------------------------------------------------------------------------------
# Huge numbers: refused at validation, naming the knob (they overflowed or crashed before)


@pytest.mark.parametrize("name", ["beta", "desirable_weight", "undesirable_weight",
                                  "learning_rate"])
@pytest.mark.parametrize("value", [1e308, 1e200, 10**400, MAX_SCALE * 1.0000001])
def test_a_scale_knob_above_max_scale_is_refused_naming_it(name, value):
    with pytest.raises(ValueError, match=f"^{name}: expected a number of size at most 1e6"):
        KTOConfig(**{name: value})


def test_the_largest_allowed_values_are_accepted_and_a_huge_integer_is_shown_short():
    config = KTOConfig(beta=MAX_SCALE, desirable_weight=MAX_SCALE, z0=-MAX_SCALE,
                       max_steps=MAX_INT, seed=MAX_INT)
    assert config.beta == 1e6 and config.z0 == -1e6
    with pytest.raises(ValueError, match="z0: expected a number of size at most 1e6"):
        KTOConfig(z0=-(10**400))
    with pytest.raises(ValueError, match=r"got an integer of about 401 digits$"):
        KTOConfig(beta=10**400)


@pytest.mark.parametrize("name", ["max_steps", "seed", "batch_size", "eval_every"])
def test_an_integer_knob_beyond_int64_is_refused(name):
    with pytest.raises(ValueError, match=f"{name}: expected an int below 2\\*\\*63"):
        KTOConfig(**{name: 2**63})
    with pytest.raises(ValueError, match=f"{name}: expected an int below .*about 401 digits"):
        KTOConfig(**{name: 10**400})


# ------------------------------------------------------------------------------------------
# Plain values only: a config must be saved with its run as JSON


@pytest.mark.parametrize("value", [np.float32(0.25), np.array(0.25), Decimal("0.25"),
                                   Fraction(1, 4)])
@pytest.mark.parametrize("name", ["beta", "desirable_weight", "learning_rate", "z0"])
def test_a_number_that_json_cannot_hold_is_refused_when_the_config_is_built(name, value):
    with pytest.raises(TypeError, match=f"^{name}: expected a Python float or int .*float\\(\\)"):
        KTOConfig(**{name: value})


def test_a_numpy_float64_is_a_python_float_and_the_config_saves_as_json():
    config = KTOConfig(beta=np.float64(0.25), desirable_weight=2)
    assert json.loads(json.dumps(config.to_dict()))["beta"] == 0.25


def test_a_numpy_int_is_refused_for_an_integer_knob():
    with pytest.raises(ValueError, match=r"max_steps: expected an int >= 0; got np.int64\(5\)"):
        KTOConfig(max_steps=np.int64(5))


def test_the_backend_is_one_of_the_known_array_libraries():
    for backend in ("numpy", "array_api_strict", "cupy"):
        assert KTOConfig(backend=backend).backend == backend
    with pytest.raises(ValueError, match="backend: expected a name: 'numpy', 'array_api_strict' "
                                         "or 'cupy'; got 'this'"):
        KTOConfig(backend="this")


# ------------------------------------------------------------------------------------------
# TRL's names: aliases, near-misses, settings with no meaning here


def test_trl_names_are_read_as_the_fields_they_mean():
    config = KTOConfig.from_dict({"per_device_train_batch_size": 8, "loss_type":
                                  "apo_zero_unpaired", "eval_steps": 5, "save_steps": 10})
    assert (config.batch_size, config.loss, config.eval_every, config.checkpoint_every) == (
        8, "apo_zero_unpaired", 5, 10)


def test_a_field_set_twice_under_two_names_is_refused():
    with pytest.raises(ValueError, match="config: 'batch_size' and "
                                         "'per_device_train_batch_size' both set batch_size"):
        KTOConfig.from_dict({"batch_size": 8, "per_device_train_batch_size": 16})


@pytest.mark.parametrize(("key", "guess"), [("betta", "beta"), ("learning-rate", "learning_rate"),
                                            ("desireable_weight", "desirable_weight"),
                                            ("max_step", "max_steps"),
                                            ("per_device_batch_size",
                                             "per_device_train_batch_size")])
def test_a_near_miss_gets_did_you_mean(key, guess):
    with pytest.raises(ValueError, match=rf"config: unknown keys \['{key}'\] \(did you mean "
                                         rf"'{guess}' for '{key}'\?\); expected some of"):
        KTOConfig.from_dict({key: 1})


def test_a_trl_setting_without_meaning_says_so_and_all_problems_come_in_one_message():
    with pytest.raises(ValueError) as info:
        KTOConfig.from_dict({"num_train_epochs": 3, "gradient_accumulation_steps": 4,
                             "zzz": 1, "beta": 0.1})
    message = str(info.value)
    assert message.startswith("config: unknown keys ['zzz']; expected some of")
    assert ("'num_train_epochs' is a TRL setting with no meaning in minikto: minikto counts "
            "optimizer steps: set max_steps") in message
    assert "'gradient_accumulation_steps' is a TRL setting with no meaning" in message
    assert "\n" not in message


def test_a_key_that_is_not_text_is_refused():
    with pytest.raises(ValueError, match="config: expected text keys; got 1"):
        KTOConfig.from_dict({1: 0.1})


# ------------------------------------------------------------------------------------------
# Config files: JSON or YAML, a small regular file


def test_a_yaml_config_with_trl_names_is_read(tmp_path):
    path = tmp_path / "kto.yaml"
    path.write_text("# as TRL writes it\nlearning_rate: 5e-2\nper_device_train_batch_size: 16\n"
                    "beta: 2.0e-1\nmax_steps: 7\nloss_type: kto\nprogress: false\n")
    config = KTOConfig.from_file(path)
    assert (config.learning_rate, config.batch_size, config.beta, config.max_steps) == (
        0.05, 16, 0.2, 7)
    assert config.progress is False and type(config.learning_rate) is float


def test_json_and_yaml_of_the_same_fields_give_the_same_config(tmp_path):
    fields = {"beta": 0.3, "z0": "exact", "features": 8, "desirable_weight": 1.25}
    (tmp_path / "a.json").write_text(json.dumps(fields))
    (tmp_path / "a.yml").write_text("".join(f"{k}: {v}\n" for k, v in fields.items()))
    assert KTOConfig.from_file(tmp_path / "a.json") == KTOConfig.from_file(tmp_path / "a.yml")
    assert KTOConfig.from_json(tmp_path / "a.json") == KTOConfig(**fields)


@pytest.mark.parametrize(
    ("content", "error", "message"),
    [("beta: 0.1\nbeta: 0.2\n", ValueError, "invalid YAML at line 2: duplicate key 'beta'"),
     ("beta: [0.1\n", ValueError, "invalid YAML at line 2"),
     ("- beta\n", ValueError, "expected a YAML mapping of fields; got list"),
     ("", ValueError, "expected a YAML mapping of fields; got NoneType"),
     ("beta: !!python/object:os.system ls\n", ValueError, "invalid YAML"),
     ("max_steps: 1" + "0" * 5000 + "\n", ValueError, "invalid YAML: Exceeds the limit"),
     ("beta: 2001-12-14\n", TypeError, "beta: expected a real number; got date"),
     ("beta: 1e400\n", ValueError, "beta: expected a finite number; got inf"),
     ("beta: 1" + "0" * 400 + "\n", ValueError, "beta: expected a number of size at most 1e6"),
     ("? [a, b]\n: 1\n", ValueError, "invalid YAML.*unhashable")],
)
def test_a_bad_yaml_config_is_refused_naming_the_file_or_the_field(tmp_path, content, error,
                                                                    message):
    path = tmp_path / "config.yaml"
    path.write_text(content)
    with pytest.raises(error, match=message) as info:
        KTOConfig.from_file(path)
    if "YAML" in message:
        assert str(info.value).startswith(f"config file {path}: ")


def test_a_yaml_merge_key_is_not_a_duplicate(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("base: &b {beta: 0.2}\nrun:\n  <<: *b\n  beta: 0.3\n")
    assert read_config_file(path)["run"] == {"beta": 0.3}


def test_a_huge_integer_in_a_json_config_names_the_knob_not_an_overflow(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"desirable_weight": 1' + "0" * 400 + "}")
    with pytest.raises(ValueError, match="desirable_weight: expected a number of size at most"):
        KTOConfig.from_file(path)


def test_yaml_without_pyyaml_says_what_to_install(tmp_path, monkeypatch):
    path = tmp_path / "config.yaml"
    path.write_text("beta: 0.2\n")
    monkeypatch.setitem(sys.modules, "yaml", None)
    with pytest.raises(ValueError, match=r"reading YAML needs PyYAML \(pip install pyyaml\)"):
        KTOConfig.from_file(path)


def test_a_config_file_over_the_size_bound_is_refused(tmp_path):
    path = tmp_path / "config.json"
    path.write_bytes(b"{}" + b" " * (MAX_CONFIG_BYTES - 1))
    with pytest.raises(ValueError, match=f"expected a file of at most {MAX_CONFIG_BYTES} bytes"):
        KTOConfig.from_file(path)
    path.write_bytes(b"{}" + b" " * (MAX_CONFIG_BYTES - 2))
    assert KTOConfig.from_file(path) == KTOConfig()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_a_fifo_as_config_is_refused_without_waiting_for_a_writer(tmp_path):
    fifo = tmp_path / "config.json"
    os.mkfifo(fifo)
    outcome = []

    def read():
        try:
            KTOConfig.from_file(fifo)
        except ValueError as err:
            outcome.append(str(err))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    reader.join(timeout=10)
    if reader.is_alive():  # the old reader blocked here forever: unblock it, then fail
        with open(fifo, "w"):
            pass
        pytest.fail("reading a FIFO as a config file blocked")
    assert outcome == [f"config file {fifo}: expected a regular file; got {fifo}, which is a "
                       "FIFO (named pipe)"]


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_dev_zero_as_config_is_refused_before_reading_it():
    with pytest.raises(ValueError, match="config file /dev/zero: expected a regular file; got "
                                         "/dev/zero, which is a character device"):
        KTOConfig.from_file("/dev/zero")


def test_a_directory_is_an_is_a_directory_error_naming_it(tmp_path):
    with pytest.raises(IsADirectoryError, match=f"config file {tmp_path}: expected a file; got "):
        KTOConfig.from_file(tmp_path)
