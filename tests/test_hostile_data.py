"""Hostile arguments of tasks, datasets, samplers, writers and optimizers (the catalogue of bad
inputs: docs/HOSTILE_INPUT.md; more rows are tested in tests/test_toy.py,
tests/test_feedback.py and tests/test_jsonl.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from minikto.data.feedback import UnpairedDataset, sample_paired, sample_unpaired, unpair
from minikto.data.jsonl import (
    write_paired,
    write_unpaired,
)
from minikto.data.toy import default_task
from minikto.training.config import balanced_desirable_weight
from minikto.training.optim import SGD, Adam, make_optimizer

pytestmark = pytest.mark.filterwarnings("ignore::minikto.training.config.WeightBalanceWarning")


TASK = default_task()


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
