"""Hostile checkpoint files: a damaged file is refused naming it, or loads exactly what was
saved (the catalogue of bad inputs: docs/HOSTILE_INPUT.md)."""

from __future__ import annotations

import json
import zipfile

import numpy as np
import pytest
from conftest import examples
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from minikto.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::minikto.training.config.WeightBalanceWarning")



def fuzz(n: int) -> settings:
    """``n`` examples under the "ci" profile (see conftest); tmp_path is shared by them."""
    return settings(max_examples=examples(n),
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


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
