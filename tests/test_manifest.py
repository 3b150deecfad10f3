"""The run folder's manifest: ``--overwrite`` deletes only what minikto wrote in that folder,
whatever the name of a user's file; a finished run is never a stub; a link, a mount point, a
full disk and a killed replacement are each handled before anything is lost.

Each test fails on the code before run folders kept a manifest (a user's ``*.png`` in
``figures/`` was deleted by ``--overwrite``, a run without its checkpoint was restarted,
``--out LINK --overwrite`` emptied the run, a mount point failed only after training).
"""

from __future__ import annotations

import errno
import json
import os

import pytest

import minikto.training.checkpoint
import minikto.training.rundir as rundir
from minikto.data.feedback import sample_unpaired
from minikto.data.toy import default_task
from minikto.tools.cli import main
from minikto.training.config import KTOConfig
from minikto.training.rundir import RunExistsError, open_folder
from minikto.training.train import train

pytestmark = pytest.mark.filterwarnings("ignore::minikto.training.config.WeightBalanceWarning")

MANIFEST = ".minikto-manifest"  # rundir.MANIFEST
TASK = default_task()
CONFIG = KTOConfig(max_steps=4, batch_size=16, eval_every=2)
TRAIN = ["train", "--n", "100", "--max-steps", "2", "--batch-size", "16", "--quiet"]


@pytest.fixture(scope="module")
def data():
    return sample_unpaired(TASK, 120, seed=1)


def snapshot(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def manifest(folder) -> set[str]:
    return set(json.loads((folder / MANIFEST).read_text())["files"])


# ------------------------------------------------------------------------------------------
# 1. --overwrite deletes only the manifest's entries


def test_the_manifest_lists_every_file_a_run_wrote_and_nothing_else(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([*TRAIN, "--out", "r"]) == 0
    run = tmp_path / "r"
    written = {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}
    bookkeeping = {".minikto-run", ".minikto-lock", MANIFEST}
    assert manifest(tmp_path / "r") == written - bookkeeping
    assert "figures/training_curves.png" in manifest(tmp_path / "r")


def test_overwrite_keeps_a_users_png_in_the_figures_folder(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*TRAIN, "--out", "r"]) == 0
    (tmp_path / "r" / "figures" / "holiday.png").write_bytes(b"my holiday")
    before = snapshot(tmp_path / "r")
    assert main([*TRAIN, "--out", "r", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "figures/holiday.png" in err and "which minikto did not write" in err
    assert snapshot(tmp_path / "r") == before


def test_a_users_file_with_a_name_minikto_writes_elsewhere_still_blocks(data, tmp_path):
    run = tmp_path / "run"
    train(TASK, data, CONFIG, out_dir=run)  # the API writes no figures
    (run / "figures").mkdir()
    (run / "figures" / "training_curves.png").write_bytes(b"mine")
    with pytest.raises(RunExistsError, match="figures/training_curves.png"):
        train(TASK, data, CONFIG, out_dir=run, overwrite=True)
    assert (run / "figures" / "training_curves.png").read_bytes() == b"mine"


def test_overwrite_keeps_a_users_png_in_an_experiment_folder(tmp_path):
    folder = open_folder(tmp_path / "imbalance", kind="experiment")
    folder.claim(["runs.csv", "results_imbalance.png"])
    for name in ("runs.csv", "results_imbalance.png"):
        (folder.work / name).write_bytes(b"minikto's")
    folder.finish()
    (tmp_path / "imbalance" / "holiday.png").write_bytes(b"my holiday")
    with pytest.raises(RunExistsError, match="holiday.png"):
        open_folder(tmp_path / "imbalance", kind="experiment", overwrite=True)
    assert (tmp_path / "imbalance" / "holiday.png").read_bytes() == b"my holiday"
    (tmp_path / "imbalance" / "holiday.png").unlink()
    replaced = open_folder(tmp_path / "imbalance", kind="experiment", overwrite=True)
    replaced.finish()
    assert sorted(p.name for p in (tmp_path / "imbalance").iterdir()) == [".minikto-experiment"]


def test_a_resumed_api_run_never_writes_its_figures_over_a_users_file(tmp_path, capsys):
    run = tmp_path / "run"
    config = KTOConfig(max_steps=2, batch_size=16)
    same = sample_unpaired(TASK, 100, seed=0)  # what the command line samples for --n 100
    train(TASK, same, config, out_dir=run, data_source={"task": "default", "n": 100, "seed": 0})
    (run / "figures").mkdir()
    (run / "figures" / "training_curves.png").write_bytes(b"mine")
    code = main(["train", "--out", str(run), "--n", "100", "--max-steps", "3", "--batch-size",
                 "16", "--resume", "--quiet"])
    assert code == 2 and "figures/training_curves.png" in capsys.readouterr().err
    assert (run / "figures" / "training_curves.png").read_bytes() == b"mine"


# ------------------------------------------------------------------------------------------
# 2. A folder with finished output is never replaced without --overwrite


def test_a_finished_run_without_its_checkpoint_is_not_a_stub(data, tmp_path):
    run = tmp_path / "run"
    train(TASK, data, CONFIG, out_dir=run)
    (run / "checkpoint.npz").unlink()
    before = snapshot(run)
    with pytest.raises(RunExistsError, match="already holds a run; pass overwrite=True"):
        train(TASK, data, KTOConfig(max_steps=2, batch_size=16), out_dir=run)
    with pytest.raises(RunExistsError, match="finished run's output"):
        train(TASK, data, CONFIG, out_dir=run, resume=True)
    assert snapshot(run) == before
    train(TASK, data, KTOConfig(max_steps=2, batch_size=16), out_dir=run, overwrite=True)
    assert json.loads((run / "summary.json").read_text())["steps"] == 2


# ------------------------------------------------------------------------------------------
# 4. --out a symbolic link to a run folder


def test_overwrite_through_a_symlink_replaces_the_target_and_keeps_the_link(tmp_path, capsys):
    run, link = tmp_path / "run", tmp_path / "link"
    assert main([*TRAIN, "--out", str(run)]) == 0
    link.symlink_to(run)
    assert main([*TRAIN, "--out", str(link), "--overwrite", "--max-steps", "3"]) == 0
    assert link.is_symlink() and link.resolve() == run.resolve()
    assert json.loads((run / "summary.json").read_text())["steps"] == 3
    assert sorted(p.name for p in tmp_path.iterdir()) == ["link", "run"]  # nothing hidden left


def test_a_symlink_to_nothing_is_refused_naming_it(tmp_path, capsys):
    link = tmp_path / "link"
    link.symlink_to(tmp_path / "gone")
    assert main([*TRAIN, "--out", str(link)]) == 2
    assert "is a symbolic link to" in capsys.readouterr().err
    assert not (tmp_path / "gone").exists() and link.is_symlink()


# ------------------------------------------------------------------------------------------
# 13. A mount point, a full disk, a killed replacement


def test_overwrite_of_a_mount_point_is_refused_before_training(data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(TASK, data, CONFIG, out_dir=run)
    before = snapshot(run)
    monkeypatch.setattr(rundir.os.path, "ismount", lambda p: os.fspath(p) == os.fspath(run))
    trained = []
    monkeypatch.setattr("minikto.training.train._run", lambda *a: trained.append(1))
    with pytest.raises(ValueError, match="mount point"):
        train(TASK, data, CONFIG, out_dir=run, overwrite=True)
    assert not trained and snapshot(run) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_full_disk_names_the_file_and_says_nothing_was_lost(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main([*TRAIN, "--out", "r"]) == 0
    before = snapshot(tmp_path / "r")

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(minikto.training.checkpoint.np, "savez", full)
    assert main([*TRAIN, "--out", "r", "--overwrite"]) == 2
    err = capsys.readouterr().err
    assert "checkpoint.npz: No space left on device" in err and "Nothing was lost" in err
    assert snapshot(tmp_path / "r") == before


def test_the_folder_a_killed_overwrite_left_is_removed_next_time(data, tmp_path):
    run = tmp_path / "run"
    train(TASK, data, CONFIG, out_dir=run)
    killed = open_folder(run, overwrite=True)  # as a replacement killed half-way leaves it
    (killed.work / "config.json").write_text("{}")
    killed.release()
    assert len([p for p in tmp_path.iterdir() if ".minikto-new-" in p.name]) == 1
    train(TASK, data, CONFIG, out_dir=run, resume=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_a_left_replacement_holding_a_users_file_is_kept(data, tmp_path):
    run = tmp_path / "run"
    train(TASK, data, CONFIG, out_dir=run)
    killed = open_folder(run, overwrite=True)
    (killed.work / "notes.txt").write_text("mine")
    killed.release()
    train(TASK, data, CONFIG, out_dir=run, resume=True)
    kept = [p for p in tmp_path.iterdir() if ".minikto-new-" in p.name]
    assert len(kept) == 1 and (kept[0] / "notes.txt").read_text() == "mine"
