"""Hostile arguments of train() and of atomic writes (the catalogue of bad inputs:
docs/HOSTILE_INPUT.md)."""

from __future__ import annotations

import pytest

from minikto.data.atomic import atomic_write
from minikto.data.feedback import sample_unpaired
from minikto.data.toy import bandit_task, default_task
from minikto.training.config import KTOConfig
from minikto.training.train import train

pytestmark = pytest.mark.filterwarnings("ignore::minikto.training.config.WeightBalanceWarning")


TASK = default_task()


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


def test_train_names_an_out_dir_that_is_not_a_path():
    task = default_task()
    data = sample_unpaired(task, 50, seed=0)
    with pytest.raises(TypeError, match="out_dir: expected a directory path"):
        train(task, data, KTOConfig(max_steps=1, desirable_weight=2.5), out_dir=123)
