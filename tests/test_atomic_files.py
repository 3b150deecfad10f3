"""Atomic writes name the user's path in every error, follow a symlink to replace its target
on the target's own file system, and figures are written atomically too."""

from __future__ import annotations

import os

import matplotlib
import pytest

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

import minikto.data.atomic  # noqa: E402
from minikto.data.atomic import atomic_write, remove_stale_temporaries  # noqa: E402
from minikto.tools.plots import save_figure  # noqa: E402


def test_a_failed_replace_names_the_users_path_not_the_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "metrics.jsonl"
    path.write_text("old\n")

    def full(src, dst):
        raise OSError(28, "No space left on device", os.fspath(src))

    monkeypatch.setattr(minikto.data.atomic.os, "replace", full)
    with pytest.raises(OSError, match="No space left on device") as caught:
        with atomic_write(path) as f:
            f.write("new\n")
    message = str(caught.value)
    assert str(path) in message and ".tmp" not in message and caught.value.errno == 28
    assert path.read_text() == "old\n" and sorted(os.listdir(tmp_path)) == ["metrics.jsonl"]


def test_a_failed_create_names_the_users_path(tmp_path, monkeypatch):
    # A read-only folder, as the operating system reports it (tests may run as root, for
    # whom permissions do not bind, so the refusal is injected where the file is created).
    def read_only(name, *args, **kwargs):
        raise PermissionError(13, "Permission denied", os.fspath(name))

    monkeypatch.setattr(minikto.data.atomic.os, "open", read_only)
    path = tmp_path / "x.json"
    with pytest.raises(PermissionError, match=f"could not write {path}: Permission denied") as err:
        with atomic_write(path) as f:
            f.write("{}")
    assert ".tmp" not in str(err.value) and err.value.errno == 13
    assert list(tmp_path.iterdir()) == []


def test_a_symlink_is_followed_its_target_replaced_and_the_link_kept(tmp_path, monkeypatch):
    elsewhere = tmp_path / "other_disk"
    elsewhere.mkdir()
    target = elsewhere / "metrics.jsonl"
    target.write_text("old\n")
    run = tmp_path / "run"
    run.mkdir()
    link = run / "metrics.jsonl"
    link.symlink_to(target)
    renames = []
    original = os.replace

    def replace(src, dst):  # a rename across file systems would fail: check where it goes
        renames.append((os.path.dirname(src), os.fspath(dst)))
        return original(src, dst)

    monkeypatch.setattr(minikto.data.atomic.os, "replace", replace)
    with atomic_write(link) as f:
        f.write("new\n")
    assert renames == [(str(elsewhere.resolve()), str(target.resolve()))]
    assert link.is_symlink() and link.read_text() == "new\n"


def test_only_minikto_temporary_files_are_cleaned_up(tmp_path):
    for name in (".summary.json.0123456789ab.tmp", ".summary.json.notmine.tmp",
                 ".thesis.txt.0123456789ab.tmp", "summary.json"):
        (tmp_path / name).write_text("x")
    assert remove_stale_temporaries(tmp_path, ["summary.json"]) == [
        ".summary.json.0123456789ab.tmp"]
    assert sorted(os.listdir(tmp_path)) == [
        ".summary.json.notmine.tmp", ".thesis.txt.0123456789ab.tmp", "summary.json"]


def test_a_figure_that_fails_to_save_leaves_the_old_png_whole(tmp_path, monkeypatch):
    path = tmp_path / "curves.png"
    save_figure(plt.figure(), path)
    good = path.read_bytes()
    assert good.startswith(b"\x89PNG")
    fig = plt.figure()

    def broken(handle, **kwargs):
        handle.write(b"\x89PNG half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(fig, "savefig", broken)
    with pytest.raises(OSError, match=f"could not write {path}"):
        save_figure(fig, path)
    assert path.read_bytes() == good and sorted(os.listdir(tmp_path)) == ["curves.png"]
