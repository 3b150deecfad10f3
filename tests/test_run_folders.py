"""Run folders: minikto replaces only what it wrote, never before the new run is complete,
and two runs never share a folder.

Each test here fails on the code before run folders had a marker, a lock and a build-aside
replacement (``--overwrite`` then deleted whatever ``--out`` named, first thing).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

import minikto.training.optim
from minikto.data.feedback import sample_unpaired
from minikto.data.toy import default_task
from minikto.tools.cli import main
from minikto.training.config import KTOConfig
from minikto.training.rundir import RunExistsError, RunInUseError, open_folder
from minikto.training.train import train

pytestmark = pytest.mark.filterwarnings("ignore::minikto.training.config.WeightBalanceWarning")

TASK = default_task()
CONFIG = KTOConfig(max_steps=6, batch_size=16, eval_every=3)


@pytest.fixture(scope="module")
def data():
    return sample_unpaired(TASK, 120, seed=1)


def snapshot(folder) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def hidden_siblings(folder) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if ".minikto-" in p.name)


# ------------------------------------------------------------------------------------------
# What --overwrite may replace


def test_overwrite_refuses_a_folder_minikto_did_not_write_and_names_what_is_there(
    data, tmp_path
):
    docs = tmp_path / "mydocs"
    docs.mkdir()
    (docs / "thesis.txt").write_text("three years of work")
    for overwrite in (False, True):
        with pytest.raises(RunExistsError, match=r"holds files minikto did not write "
                                                 r"\(thesis.txt\)"):
            train(TASK, data, CONFIG, out_dir=docs, overwrite=overwrite)
    assert snapshot(docs) == {"thesis.txt": b"three years of work"}


def test_overwrite_refuses_a_run_folder_that_also_holds_a_users_file(data, tmp_path):
    run = tmp_path / "run"
    train(TASK, data, CONFIG, out_dir=run)
    (run / "notes.md").write_text("my notes")
    before = snapshot(run)
    with pytest.raises(RunExistsError, match="also holds notes.md, which minikto did not write"):
        train(TASK, data, CONFIG, out_dir=run, overwrite=True)
    assert snapshot(run) == before


@pytest.mark.parametrize("out", ["", ".", "..", "ancestor"])
def test_overwrite_never_replaces_the_working_folder_its_parents_or_an_empty_path(
    data, tmp_path, monkeypatch, out
):
    here = tmp_path / "a" / "b"
    here.mkdir(parents=True)
    (here / "keep.txt").write_text("x")
    monkeypatch.chdir(here)
    target = str(tmp_path / "a") if out == "ancestor" else out
    with pytest.raises(ValueError, match="out_dir: (refusing to replace|expected a directory "
                                         "path; got an empty string)"):
        train(TASK, data, CONFIG, out_dir=target, overwrite=True)
    assert (here / "keep.txt").read_text() == "x"


def test_demo_into_the_working_folder_with_overwrite_is_refused(tmp_path, monkeypatch, capsys):
    (tmp_path / "keep.txt").write_text("x")
    monkeypatch.chdir(tmp_path)
    code = main(["demo", "--out", ".", "--overwrite", "--max-steps", "2"])  # raises: test fails
    err = capsys.readouterr().err
    assert code == 2 and "refusing to replace" in err, err
    assert "Traceback" not in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["keep.txt"]


def test_a_refusal_without_overwrite_says_the_demo_has_no_resume(tmp_path, capsys):
    run = tmp_path / "demo"
    assert main(["demo", "--out", str(run), "--max-steps", "2"]) == 0
    capsys.readouterr()
    code = main(["demo", "--out", str(run), "--max-steps", "2"])
    err = capsys.readouterr().err
    assert code == 2 and "--overwrite" in err
    assert "--resume" not in err and "resume=True" not in err


# ------------------------------------------------------------------------------------------
# The old run survives until the new one is complete


@pytest.mark.parametrize("bad", [
    {"backend": "nope"},
    {"features": 8},  # without sft_steps
    {"n": 1},
])
def test_overwrite_with_a_bad_argument_keeps_the_old_run(data, tmp_path, bad):
    run = tmp_path / "run"
    train(TASK, data, CONFIG, out_dir=run)
    before = snapshot(run)
    fields = {k: v for k, v in bad.items() if k != "n"}
    use = data.subset([0]) if "n" in bad else data
    with pytest.raises((ValueError, TypeError, ImportError)):
        train(TASK, use, KTOConfig(**{**CONFIG.to_dict(), **fields}), out_dir=run,
              overwrite=True)
    assert snapshot(run) == before and hidden_siblings(run) == []


def test_overwrite_that_fails_mid_run_keeps_the_old_run_whole(data, tmp_path):
    run = tmp_path / "run"
    train(TASK, data, CONFIG, out_dir=run)
    before = snapshot(run)
    huge = KTOConfig(**CONFIG.to_dict())  # KTOConfig refuses 1e308 (MAX_SCALE): force it past
    object.__setattr__(huge, "desirable_weight", 1e308)  # the check to fail mid-run
    with pytest.raises(FloatingPointError, match="desirable_weight"):
        train(TASK, data, huge, out_dir=run, overwrite=True)
    assert snapshot(run) == before and hidden_siblings(run) == []


def test_overwrite_replaces_a_run_once_the_new_one_is_complete(data, tmp_path, monkeypatch):
    run = tmp_path / "run"
    train(TASK, data, CONFIG, out_dir=run)
    seen = []
    original = minikto.training.optim.Adam.step

    def step(self, params, grads):  # while the new run trains, the old one is still there
        seen.append(json.loads((run / "config.json").read_text())["max_steps"])
        return original(self, params, grads)

    monkeypatch.setattr(minikto.training.optim.Adam, "step", step)
    longer = KTOConfig(**{**CONFIG.to_dict(), "max_steps": 8})
    result = train(TASK, data, longer, out_dir=run, overwrite=True)
    assert seen == [6] * 8
    assert json.loads((run / "config.json").read_text())["max_steps"] == 8
    assert result.run_dir == run and hidden_siblings(run) == []
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 8


# ------------------------------------------------------------------------------------------
# A lock: two runs never share a folder


def test_a_second_run_into_a_folder_in_use_is_refused(data, tmp_path):
    run = tmp_path / "run"
    train(TASK, data, CONFIG, out_dir=run)
    before = snapshot(run)
    holder = open_folder(run, resume=True)  # another process would hold it the same way
    try:
        for kw in ({"resume": True}, {"overwrite": True}, {}):
            with pytest.raises(RunInUseError, match="in use by another minikto process"):
                train(TASK, data, CONFIG, out_dir=run, **kw)
    finally:
        holder.release()
    assert snapshot(run) == before
    train(TASK, data, CONFIG, out_dir=run, resume=True)  # free again


def test_a_second_process_is_refused_while_the_first_one_trains(data, tmp_path):
    run = tmp_path / "run"
    script = (
        "import time, minikto.training.optim as o\n"
        "from minikto.training.train import train\n"
        "from minikto.training.config import KTOConfig\n"
        "from minikto.data.toy import default_task\n"
        "from minikto.data.feedback import sample_unpaired\n"
        "step = o.Adam.step\n"
        "def slow(self, p, g):\n"
        "    open({!r}, 'w').close(); time.sleep(0.5); return step(self, p, g)\n"
        "o.Adam.step = slow\n"
        "t = default_task()\n"
        "train(t, sample_unpaired(t, 120, seed=1), KTOConfig(max_steps=6, batch_size=16),"
        " out_dir={!r})\n".format(str(tmp_path / "started"), str(run))
    )
    first = subprocess.Popen([sys.executable, "-c", script],
                             env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        for _ in range(600):
            if (tmp_path / "started").exists():
                break
            first.poll()
            assert first.returncode is None
            import time

            time.sleep(0.05)
        with pytest.raises(RunInUseError):
            train(TASK, data, CONFIG, out_dir=run)
    finally:
        assert first.wait(timeout=120) == 0
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 6


# ------------------------------------------------------------------------------------------
# Stubs, leftovers and the default checkpoint


class Crash(Exception):
    pass


def crash_at_step(monkeypatch, number: int) -> None:
    calls = []
    original = minikto.training.optim.Adam.step

    def step(self, params, grads):
        calls.append(1)
        if len(calls) == number:
            raise Crash(f"step {number}")
        return original(self, params, grads)

    monkeypatch.setattr(minikto.training.optim.Adam, "step", step)


@pytest.mark.parametrize("again", [{}, {"resume": True}])
def test_a_run_stopped_before_its_first_checkpoint_can_be_rerun_or_resumed(
    data, tmp_path, monkeypatch, again
):
    run = tmp_path / "run"
    crash_at_step(monkeypatch, 2)
    with pytest.raises(Crash):
        train(TASK, data, CONFIG, out_dir=run)
    monkeypatch.undo()
    assert (run / ".minikto-run").is_file() and not (run / "checkpoint.npz").exists()
    whole = train(TASK, data, CONFIG, out_dir=tmp_path / "whole")
    result = train(TASK, data, CONFIG, out_dir=run, **again)
    assert result.history == whole.history
    assert (run / "metrics.jsonl").read_bytes() == (tmp_path / "whole" / "metrics.jsonl"
                                                    ).read_bytes()


def test_long_runs_checkpoint_by_default(data, tmp_path, monkeypatch):
    from minikto.training.checkpoint import load_checkpoint
    from minikto.training.train import AUTO_CHECKPOINT_EVERY, AUTO_CHECKPOINT_STEPS

    config = KTOConfig(max_steps=AUTO_CHECKPOINT_STEPS, batch_size=16, eval_every=0)
    assert config.checkpoint_every == 0
    crash_at_step(monkeypatch, AUTO_CHECKPOINT_EVERY + 10)
    with pytest.raises(Crash):
        train(TASK, data, config, out_dir=tmp_path / "run")
    assert load_checkpoint(tmp_path / "run" / "checkpoint.npz")["step"] == AUTO_CHECKPOINT_EVERY


def test_leftover_temporary_files_of_a_killed_save_are_removed_and_nothing_else(
    data, tmp_path
):
    run = tmp_path / "run"
    train(TASK, data, CONFIG, out_dir=run)
    (run / ".checkpoint.npz.0123456789ab.tmp").write_bytes(b"half")
    (run / ".metrics.jsonl.a1b2c3d4e5f6.tmp").write_bytes(b"half")
    train(TASK, data, CONFIG, out_dir=run, resume=True)
    assert not [p for p in run.iterdir() if p.name.endswith(".tmp")]


def test_a_config_value_json_cannot_hold_fails_before_any_folder_exists(data, tmp_path):
    import numpy as np

    with pytest.raises(TypeError, match="beta: expected a Python float or int"):
        config = KTOConfig(**{**CONFIG.to_dict(), "beta": np.float32(0.1)})
        train(TASK, data, config, out_dir=tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_run_folder_of_an_older_minikto_is_named_as_such_and_kept(data, tmp_path):
    old = tmp_path / "old"
    old.mkdir()
    for name in ("checkpoint.npz", "config.json", "metrics.jsonl"):
        (old / name).write_text("from an older version")
    before = snapshot(old)
    for kw in ({"resume": True}, {"overwrite": True}):
        with pytest.raises(RunExistsError, match="looks like a run of an older minikto"):
            train(TASK, data, CONFIG, out_dir=old, **kw)
    assert snapshot(old) == before


# ------------------------------------------------------------------------------------------
# Removing a replaced run: file by file, never a whole tree


def test_overwrite_refuses_a_users_file_inside_the_runs_figures_folder(data, tmp_path):
    run = tmp_path / "run"
    train(TASK, data, CONFIG, out_dir=run)
    (run / "figures").mkdir(exist_ok=True)
    (run / "figures" / "notes.txt").write_text("mine")
    before = snapshot(run)
    with pytest.raises(RunExistsError, match="figures/notes.txt"):
        train(TASK, data, CONFIG, out_dir=run, overwrite=True)
    assert snapshot(run) == before and hidden_siblings(run) == []


def test_a_file_added_to_the_old_run_while_the_new_one_is_built_is_kept(tmp_path):
    from minikto.training.rundir import KeptFilesWarning

    run = tmp_path / "run"
    first = open_folder(run)
    (run / "checkpoint.npz").write_bytes(b"a saved run, not a stub")
    (run / "summary.json").write_text("{}")
    (run / "figures").mkdir()
    (run / "figures" / "training_curves.png").write_bytes(b"png")
    first.finish()
    folder = open_folder(run, overwrite=True)  # the new run goes to a hidden sibling
    (run / "figures" / "notes.txt").write_text("written during the run")  # the old run's
    (folder.work / "summary.json").write_text('{"new": true}')
    with pytest.warns(KeptFilesWarning, match="figures"):
        folder.finish()
    assert json.loads((run / "summary.json").read_text()) == {"new": True}
    kept = [p for p in tmp_path.iterdir() if ".minikto-old-" in p.name]
    assert len(kept) == 1 and (kept[0] / "figures" / "notes.txt").read_text() == (
        "written during the run"
    )
    assert sorted(p.name for p in kept[0].rglob("*")) == ["figures", "notes.txt"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["run", kept[0].name])


def test_a_replaced_run_of_only_minikto_files_leaves_nothing_behind(tmp_path):
    run = tmp_path / "run"
    first = open_folder(run)
    (run / "checkpoint.npz").write_bytes(b"a saved run, not a stub")
    (run / "figures").mkdir()
    (run / "figures" / "training_curves.png").write_bytes(b"png")
    (run / "figures" / ".training_curves.png.0123456789ab.tmp").write_bytes(b"half")
    first.finish()
    folder = open_folder(run, overwrite=True)
    folder.finish()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_an_abandoned_replacement_removes_only_what_minikto_wrote_there(tmp_path):
    run = tmp_path / "run"
    first = open_folder(run)
    (run / "checkpoint.npz").write_bytes(b"a saved run, not a stub")
    first.finish()
    folder = open_folder(run, overwrite=True)
    assert folder.work != run  # built aside
    (folder.work / "config.json").write_text("{}")
    (folder.work / "stray.txt").write_text("not minikto's")
    folder.abandon()
    assert (folder.work / "stray.txt").read_text() == "not minikto's"
    assert sorted(p.name for p in folder.work.iterdir()) == ["stray.txt"]
