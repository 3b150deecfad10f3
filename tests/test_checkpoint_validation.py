"""A checkpoint whose content (not its bytes) was changed is refused, entry by entry, with
one error that names the checkpoint and the entry; save_checkpoint never writes what
load_checkpoint refuses."""

from __future__ import annotations

import json

import numpy as np
import pytest

from minikto.data.feedback import sample_unpaired
from minikto.data.toy import default_task
from minikto.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minikto.training.config import KTOConfig
from minikto.training.train import train

pytestmark = pytest.mark.filterwarnings("ignore::minikto.training.config.WeightBalanceWarning")

TASK = default_task()
CONFIG = KTOConfig(max_steps=6, batch_size=16, eval_every=3)
MORE = KTOConfig(**{**CONFIG.to_dict(), "max_steps": 9})


@pytest.fixture(scope="module")
def data():
    return sample_unpaired(TASK, 120, seed=1)


@pytest.fixture
def run(data, tmp_path):
    folder = tmp_path / "run"
    train(TASK, data, CONFIG, out_dir=folder)
    return folder


def rewrite(path, change) -> None:
    """Load the checkpoint's raw entries, apply ``change(arrays, meta)``, write it back."""
    with np.load(path) as f:
        arrays = {k: f[k] for k in f.files}
    meta = json.loads(arrays.pop("meta").tobytes())
    change(arrays, meta)
    arrays["meta"] = np.frombuffer(json.dumps(meta).encode(), dtype=np.uint8)
    np.savez(path, **arrays)


def first_param(arrays) -> str:
    return next(k for k in arrays if k.startswith("param."))


CHANGES = {
    "float32 parameters": (
        lambda a, m: a.update({first_param(a): a[first_param(a)].astype(np.float32)}),
        r"entry param\.\w+: expected dtype float64; got float32"),
    "complex parameters": (
        lambda a, m: a.update({first_param(a): a[first_param(a)].astype(np.complex128)}),
        r"entry param\.\w+: expected a real float array; got complex128"),
    "int parameters": (
        lambda a, m: a.update({first_param(a): a[first_param(a)].astype(np.int64)}),
        r"entry param\.\w+: expected a real float array; got int64"),
    "a broadcastable shape": (
        lambda a, m: a.update({first_param(a): a[first_param(a)][:1]}),
        r"expected parameters \{"),
    "NaN in a parameter": (
        lambda a, m: a[first_param(a)].__setitem__((0,) * a[first_param(a)].ndim, np.nan),
        r"entry param\.\w+: expected finite values"),
    "t = 0": (lambda a, m: a.update({"optim.t": np.asarray(0)}),
              r"entry optim\.t: expected the integer step count 6"),
    "t = 2.7": (lambda a, m: a.update({"optim.t": np.asarray(2.7)}),
                r"entry optim\.t: expected the integer step count 6"),
    "t = 2**62": (lambda a, m: a.update({"optim.t": np.asarray(2**62)}),
                  r"entry optim\.t: expected the integer step count 6"),
    "step != t": (lambda a, m: m.update({"step": 5}),
                  r"entry optim\.t: expected the integer step count 5"),
    "Adam's moments missing": (
        lambda a, m: [a.pop(k) for k in list(a) if k.startswith("optim.m.")],
        r"entry optim: expected the adam state"),
    "a negative second moment": (
        lambda a, m: a.update({k: -a[k] - 1 for k in a if k.startswith("optim.v.")}),
        r"entry optim\.v\.\w+: expected second moments >= 0"),
    "an emptied evaluation history": (
        lambda a, m: m["extra"].update({"evals": {"rows": 0, "bytes": 0}}),
        r"entry extra\.evals: expected evaluations from step 0"),
    "a shortened metrics history": (
        lambda a, m: m["extra"].update({"metrics": {"rows": 2, "bytes": 10}}),
        r"entry extra\.metrics: expected 2 rows in the first 10 bytes"),
    "no data identity": (lambda a, m: m["extra"].pop("data"),
                         "expected the history and evaluations a training run saves"),
}


@pytest.mark.parametrize("change", list(CHANGES))
def test_a_changed_checkpoint_entry_is_refused_naming_the_checkpoint_and_the_entry(
    data, run, change
):
    edit, message = CHANGES[change]
    path = run / "checkpoint.npz"
    rewrite(path, edit)
    before = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    with pytest.raises(CheckpointError, match=message) as caught:
        train(TASK, data, MORE, out_dir=run, resume=True)
    assert str(path) in str(caught.value)
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == before


def test_a_nan_written_into_the_evaluations_is_refused_not_copied(data, run):
    path = run / "evals.jsonl"
    rows = path.read_text().splitlines()
    row = json.loads(rows[1])
    row["kl_to_reference"] = float("nan")
    rows[1] = json.dumps(row)[: len(rows[1])].ljust(len(rows[1]))  # same length, NaN inside
    text = "\n".join(rows) + "\n"
    path.write_text(text)
    with pytest.raises(CheckpointError, match=r"entry extra\.evals: line 2 of .*evals.jsonl"):
        train(TASK, data, MORE, out_dir=run, resume=True)


def test_a_metrics_file_cut_short_is_refused(data, run):
    path = run / "metrics.jsonl"
    path.write_bytes(path.read_bytes()[:-40])
    with pytest.raises(CheckpointError, match=r"expected 6 rows in the first \d+ bytes of"):
        train(TASK, data, MORE, out_dir=run, resume=True)


@pytest.mark.parametrize(("params", "extra", "message"), [
    ({"w": np.array([1.0, np.nan])}, {}, r"params\['w'\]: expected finite values"),
    ({"w": np.array([1 + 2j])}, {}, r"params\['w'\]: expected a real float array"),
    ({"w": np.ones(2)}, {"loss": float("nan")}, "expected JSON values without NaN or inf"),
    ({"w": np.ones(2)}, {"when": object()}, "expected JSON values"),
])
def test_save_checkpoint_refuses_what_load_checkpoint_would_refuse(tmp_path, params, extra,
                                                                    message):
    path = tmp_path / "c.npz"
    with pytest.raises(ValueError, match=message):
        save_checkpoint(path, step=1, params=params, optimizer_state={"t": np.asarray(1)},
                        config={}, extra=extra)
    assert not path.exists()


def test_what_save_checkpoint_writes_load_checkpoint_reads_back(tmp_path):
    path = tmp_path / "c.npz"
    params = {"w": np.arange(6.0).reshape(2, 3), "b": np.ones(3, dtype=np.float32)}
    save_checkpoint(path, step=2, params=params, optimizer_state={"t": np.asarray(2)},
                    config={"beta": 0.1}, extra={"note": [1, 2]})
    state = load_checkpoint(path)
    assert state["step"] == 2 and state["extra"] == {"note": [1, 2]}
    for k, v in params.items():
        assert state["params"][k].dtype == v.dtype and np.array_equal(state["params"][k], v)
