"""Training: the demo aligns, runs are deterministic, resuming equals not stopping, nothing lost."""

import json
import warnings

import numpy as np
import pytest

from minikto.data.feedback import sample_paired, sample_unpaired
from minikto.data.toy import bandit_task, default_task
from minikto.tools.demo import run_demo
from minikto.training.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from minikto.training.config import KTOConfig, WeightBalanceWarning, check_weight_balance
from minikto.training.optim import SGD, Adam
from minikto.training.train import RunExistsError, batch_indices, train


@pytest.fixture(scope="module")
def task():
    return default_task()


@pytest.fixture(scope="module")
def data(task):
    return sample_unpaired(task, 400, seed=1)


def small(**kw):
    # desirable_weight 2.6 puts the Eq. 8 ratio of these data (114 up / 286 down) in the band
    base = dict(
        max_steps=30, batch_size=16, learning_rate=0.05, eval_every=10, seed=3, desirable_weight=2.6
    )
    base.update(kw)
    return KTOConfig(**base)


def strip_seconds(summary):
    return {k: v for k, v in summary.items() if k != "seconds"}


def test_the_demo_raises_exact_utility_and_reports_a_finite_kl(tmp_path):
    result = run_demo(tmp_path / "demo", quiet=True)
    s = json.loads((tmp_path / "demo" / "summary.json").read_text())
    # margin: at least +0.5 utility over the reference (measured here: -0.30 -> +0.83)
    assert s["expected_utility"]["final"] >= s["expected_utility"]["reference"] + 0.5
    assert s["desirable_mass"]["final"] >= s["desirable_mass"]["reference"] + 0.3
    assert 0.0 < s["kl_to_reference"] < 10.0 and np.isfinite(s["kl_to_reference"])
    assert s["seconds"] < 60
    for name in ("training_curves", "policy_before_after", "utility_vs_kl"):
        assert (tmp_path / "demo" / "figures" / f"{name}.png").stat().st_size > 10_000
    assert len(result.history) == 600


def test_same_seed_gives_identical_numbers(task, data, tmp_path):
    a = train(task, data, small(), out_dir=tmp_path / "a")
    b = train(task, data, small(), out_dir=tmp_path / "b")
    assert strip_seconds(a.summary) == strip_seconds(b.summary)
    assert a.history == b.history
    np.testing.assert_array_equal(a.policy.get_flat(), b.policy.get_flat())
    c = train(task, data, small(seed=4))
    assert c.history != a.history


@pytest.mark.parametrize("backend", ["numpy", "array_api_strict"])
@pytest.mark.parametrize("optimizer", ["adam", "sgd"])
def test_resuming_from_a_checkpoint_continues_the_uninterrupted_trajectory(
    task, data, tmp_path, backend, optimizer
):
    cfg = dict(backend=backend, optimizer=optimizer, z0="batch-grad")
    whole = train(task, data, small(max_steps=30, **cfg), out_dir=tmp_path / "whole")
    cut = train(task, data, small(max_steps=13, **cfg), out_dir=tmp_path / "cut")
    resumed = train(task, data, small(max_steps=30, **cfg), out_dir=tmp_path / "cut", resume=True)
    np.testing.assert_array_equal(resumed.policy.get_flat(), whole.policy.get_flat())
    assert resumed.history == whole.history
    # a resume appends: the first run's final evaluation (step 13, off the schedule) stays
    assert resumed.evals == sorted(whole.evals + cut.evals[-1:], key=lambda e: e["step"])
    assert strip_seconds(resumed.summary) == strip_seconds(whole.summary)
    lines = (tmp_path / "cut" / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == whole.history


def test_a_run_never_overwrites_an_existing_run_directory_unless_told(task, data, tmp_path):
    train(task, data, small(max_steps=2), out_dir=tmp_path / "run")
    before = (tmp_path / "run" / "summary.json").read_bytes()
    with pytest.raises(RunExistsError, match="already holds a run"):
        train(task, data, small(max_steps=3), out_dir=tmp_path / "run")
    assert (tmp_path / "run" / "summary.json").read_bytes() == before
    train(task, data, small(max_steps=3), out_dir=tmp_path / "run", overwrite=True)
    assert json.loads((tmp_path / "run" / "summary.json").read_text())["steps"] == 3


def test_a_failure_while_checkpointing_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "checkpoint.npz"
    params = {"bias": np.arange(3.0)}
    save_checkpoint(path, step=1, params=params, optimizer_state={"t": np.asarray(1)}, config={})
    good = path.read_bytes()

    def explode(handle, **arrays):
        handle.write(b"PK\x03\x04 half a zip")
        raise OSError("disk full")

    monkeypatch.setattr(np, "savez", explode)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, step=2, params=params, optimizer_state={}, config={})
    assert path.read_bytes() == good
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint.npz"]
    monkeypatch.undo()
    assert load_checkpoint(path)["step"] == 1


def test_truncated_foreign_and_incompatible_checkpoints_are_refused(tmp_path):
    path = tmp_path / "ck.npz"
    save_checkpoint(
        path,
        step=5,
        params={"bias": np.ones(2)},
        optimizer_state={"t": np.asarray(5)},
        config={"beta": 0.1, "max_steps": 10},
    )
    data = path.read_bytes()
    (tmp_path / "cut.npz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or not one"):
        load_checkpoint(tmp_path / "cut.npz")
    np.savez(tmp_path / "foreign.npz", weights=np.ones(3))
    with pytest.raises(CheckpointError, match="no 'meta' entry"):
        load_checkpoint(tmp_path / "foreign.npz")
    (tmp_path / "text.npz").write_text("hello")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "text.npz")
    with pytest.raises(CheckpointError, match="beta: saved 0.1, now 0.2"):
        load_checkpoint(path, config={"beta": 0.2, "max_steps": 10})
    assert load_checkpoint(path, config={"beta": 0.1, "max_steps": 99})["step"] == 5


def test_a_checkpoint_of_another_format_version_is_refused(tmp_path):
    import minikto.training.checkpoint as ck

    path = tmp_path / "ck.npz"
    old = ck.CHECKPOINT_FORMAT
    try:
        ck.CHECKPOINT_FORMAT = old + 1
        save_checkpoint(path, step=1, params={}, optimizer_state={}, config={})
    finally:
        ck.CHECKPOINT_FORMAT = old
    with pytest.raises(CheckpointError, match=f"expected format version {old}; got {old + 1}"):
        load_checkpoint(path)


def test_resume_refuses_a_checkpoint_of_another_configuration(task, data, tmp_path):
    train(task, data, small(max_steps=4), out_dir=tmp_path / "r")
    with pytest.raises(CheckpointError, match="beta"):
        train(task, data, small(max_steps=8, beta=0.3), out_dir=tmp_path / "r", resume=True)


def test_batches_hold_at_least_batch_size_examples_and_cover_each_epoch_once():
    for n, b in [(10, 3), (64, 64), (65, 32), (7, 2), (5, 100)]:
        per_epoch = max(1, n // b)
        seen = np.concatenate([batch_indices(n, b, 0, s) for s in range(per_epoch)])
        assert sorted(seen) == list(range(n))
        assert all(len(batch_indices(n, b, 0, s)) >= min(b, n) for s in range(per_epoch))
    assert not np.array_equal(batch_indices(50, 10, 0, 0), batch_indices(50, 10, 0, 5))


def test_eq_8_warns_with_the_ratio_and_the_band():
    with pytest.warns(WeightBalanceWarning, match=r"= 0\.100 lies outside.*\[10\.000, 13\.333\]"):
        ratio, band = check_weight_balance(10, 100, 1.0, 1.0)
    assert ratio == pytest.approx(0.1) and band == pytest.approx((10.0, 40 / 3))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        check_weight_balance(10, 100, 13.33, 1.0)


@pytest.mark.parametrize("loss", ["kto", "apo_zero_unpaired", "sft"])
def test_every_unpaired_objective_improves_the_true_utility(task, data, loss):
    result = train(task, data, small(loss=loss, max_steps=120))
    s = result.summary["expected_utility"]
    assert s["final"] > s["reference"] + 0.3


def test_dpo_trains_on_pairs_and_refuses_unpaired_data(task, data):
    pairs = sample_paired(task, 300, seed=2)
    result = train(task, pairs, small(loss="dpo", max_steps=120))
    s = result.summary["expected_utility"]
    assert s["final"] > s["reference"] + 0.3
    with pytest.raises(TypeError, match="PairedDataset"):
        train(task, data, small(loss="dpo"))
    with pytest.raises(TypeError, match="UnpairedDataset"):
        train(task, pairs, small(loss="kto"))


def test_metrics_carry_trls_names_and_none_for_an_empty_side(task):
    only_bad = sample_unpaired(task, 200, seed=0)
    only_bad = only_bad.subset(np.flatnonzero(~only_bad.desirable))
    with pytest.warns(WeightBalanceWarning, match="no desirable examples"):
        pass_through = train(task, only_bad, small(max_steps=3))
    row = pass_through.history[0]
    for key in (
        "loss",
        "kl",
        "rewards/chosen",
        "rewards/rejected",
        "rewards/margins",
        "logps/chosen",
        "logps/rejected",
    ):
        assert key in row
    assert row["rewards/chosen"] is None and row["rewards/margins"] is None
    assert np.isfinite(row["rewards/rejected"]) and np.isfinite(row["loss"])


def test_sft_stage_then_dense_features_train_on_the_bandit(tmp_path):
    task = bandit_task()
    data = sample_unpaired(task, 300, seed=0)
    result = train(task, data, small(features=8, sft_steps=50, max_steps=60, desirable_weight=1.5))
    s = result.summary["expected_utility"]
    assert s["final"] > s["reference"]
    with pytest.raises(ValueError, match="needs sft_steps > 0"):
        train(task, data, small(features=8))


def test_optimizers_take_the_documented_first_step():
    import array_api_compat.numpy as xp

    params, grads = {"w": xp.asarray([1.0, -2.0])}, {"w": xp.asarray([0.5, -4.0])}
    SGD(0.1).step(params, grads)
    np.testing.assert_allclose(params["w"], [0.95, -1.6])
    params = {"w": xp.asarray([1.0, -2.0])}
    Adam(0.1).step(params, grads)  # the first Adam step is lr * sign(g) (up to eps)
    np.testing.assert_allclose(params["w"], [0.9, -1.9], rtol=1e-7)
    with pytest.raises(ValueError, match="grads: expected the keys"):
        Adam(0.1).step(params, {"v": grads["w"]})


def test_config_refuses_bad_values_naming_the_field():
    with pytest.raises(ValueError, match="batch_size: expected an int >= 2"):
        KTOConfig(batch_size=1)
    with pytest.raises(ValueError, match="z0: expected one of"):
        KTOConfig(z0="kl")
    with pytest.raises(ValueError, match="loss: expected one of"):
        KTOConfig(loss="kto_pair")
    with pytest.raises(ValueError, match="config: unknown keys"):
        KTOConfig.from_dict({"betta": 0.1})
