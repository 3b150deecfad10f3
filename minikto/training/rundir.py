"""Run folders: what minikto may write, replace or delete, and the lock that keeps two runs apart.

A folder minikto creates for a run (or an experiment) holds a marker file, ``.minikto-run``
(or ``.minikto-experiment``), written before anything else. The rules:

- a missing or empty folder is created and marked;
- every file minikto writes into the folder is first listed in its manifest,
  ``.minikto-manifest`` (a JSON list of paths relative to the folder, replaced atomically),
  so the manifest always covers what the folder's runs wrote; only those paths are ever
  deleted, whatever their name or extension (a folder of an older minikto, without a
  manifest, is read as holding the fixed names that version wrote; see
  :mod:`minikto.training.manifest`);
- a marked folder is minikto's own: ``resume`` continues it, ``overwrite`` replaces it, and
  a *stub* (marked, but without any finished output: no checkpoint, no summary, no figure
  and no logged step; a run killed or refused before its first save) is simply restarted.
  A folder with any finished output is never replaced without ``overwrite``;
- a folder that holds anything else (no marker, or a file not in the manifest, of any
  name) is never touched: the error lists what is there. A manifest entry that is not a
  regular file (a FIFO named ``metrics.jsonl``) is refused, even for ``resume``;
- ``overwrite`` never replaces ``""``, ``.``, ``..`` or any folder that contains the working
  folder; the new run is built beside the old one (a hidden sibling folder) and swapped in
  only once it is complete, so a failure keeps the old run whole. Whether the swap can
  happen (not a mount point, a writable parent) is checked before anything runs, and the
  siblings a killed replacement left (``.NAME.minikto-new-*``) are removed, by their
  manifests, the next time the folder is opened;
- a path that is a symbolic link to a folder is the folder it points to (replaced there, the
  link kept); a link to nothing is refused;
- a folder minikto no longer wants is removed file by file, only its manifest's entries
  (never a whole tree): a file someone else put there, even in ``figures/``, is kept, and
  so is the folder that holds it (with a :class:`KeptFilesWarning` naming both);
- a run holds an exclusive lock (``fcntl.flock`` on ``.minikto-lock``, released by the
  operating system even on ``kill -9``) while it writes: a second run into the same folder
  refuses instead of mixing its files with the first one's.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import stat
import warnings
from collections.abc import Iterable
from pathlib import Path, PurePosixPath
from typing import Any

from .._brief import brief
from ..data.atomic import atomic_write, remove_stale_temporaries
from .manifest import (
    MANIFEST,
    ManifestError,
    add_to_manifest,
    is_temporary_of,
    owned_dirs,
    owned_files,
)

try:  # POSIX; elsewhere the lock is advisory only (a no-op)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOCK",
    "MANIFEST",
    "KeptFilesWarning",
    "RunExistsError",
    "RunFolder",
    "RunInUseError",
    "add_to_manifest",
    "marker_name",
    "open_folder",
]

LOCK = ".minikto-lock"
#: The files whose presence makes a run folder more than a stub (finished output).
_FINISHED = ("checkpoint.npz", "summary.json", "figures")


class KeptFilesWarning(UserWarning):
    """A replaced folder was kept (hidden) because it held files minikto did not write."""


class RunExistsError(FileExistsError):
    """The folder exists and holds files; overwrite or resume it, or choose another one."""


class RunInUseError(BlockingIOError):
    """Another minikto process holds the folder's lock."""


def marker_name(kind: str) -> str:
    """The marker file of a folder of this kind (``"run"`` or ``"experiment"``)."""
    return f".minikto-{kind}"


class RunFolder:
    """A claimed folder: ``path`` (the user's), ``work`` (where the files go) and the lock.

    ``work`` is ``path`` itself, or, when an old run is being replaced, a hidden sibling
    that :meth:`finish` swaps in. :meth:`abandon` removes a sibling that never completed.
    Every file is listed with :meth:`claim` before it is written.
    """

    def __init__(self, path: Path, work: Path, kind: str, lock: Any, restarted: bool) -> None:
        self.path, self.work, self.kind, self._lock = path, work, kind, lock
        self.restarted = restarted  #: a stub (no checkpoint) was found and started over

    def claim(self, names: Iterable[str]) -> None:
        """List ``names`` (paths relative to the folder) in the manifest before writing them."""
        add_to_manifest(self.work, names, self.kind)

    def finish(self) -> Path:
        """Swap a run built aside into place (the old one is removed last); release the lock."""
        try:
            if self.work != self.path:
                old = self.path.with_name(f".{self.path.name}.minikto-old-{secrets.token_hex(4)}")
                os.rename(self.path, old)
                try:
                    os.rename(self.work, self.path)
                except BaseException:
                    os.rename(old, self.path)
                    raise
                self.work = self.path
                kept = _remove_folder(old, self.kind)
                if kept:  # a file added to the old run while the new one was built
                    warnings.warn(KeptFilesWarning(
                        f"{self.path}: the replaced {self.kind} was kept as {old} because it "
                        f"holds {', '.join(kept)}, which minikto did not write"
                    ), stacklevel=2)
        finally:
            self.release()
        return self.path

    def abandon(self) -> None:
        """Remove a replacement that did not complete (the old run stays); release the lock."""
        try:
            if self.work != self.path:
                with contextlib.suppress(OSError):  # what minikto wrote there, and nothing else
                    _remove_folder(self.work, self.kind)
        finally:
            self.release()

    def release(self) -> None:
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None


def open_folder(
    out_dir: Any, *, kind: str = "run", overwrite: bool = False, resume: bool = False,
    argument: str = "out_dir", dry_run: bool = False,
) -> RunFolder | None:
    """Claim ``out_dir`` for a new, resumed or replacing run; see the module docstring.

    With ``dry_run`` nothing is created, locked or removed: the same errors are raised, and
    None is returned where the folder could be claimed.

    Raises
    ------
    TypeError, ValueError
        Not a path; an empty path; ``overwrite`` of the working folder or an ancestor;
        ``overwrite`` and ``resume`` together; a manifest entry that is not a regular file;
        a replacement that could not be swapped in (a mount point, a read-only parent).
    RunExistsError
        A folder that holds a run (without ``overwrite``/``resume``) or anything not minikto's.
    RunInUseError
        Another run holds the folder.
    FileNotFoundError
        ``resume`` without a run to resume.
    """
    if overwrite and resume:
        raise ValueError(
            "overwrite, resume: expected at most one: resume continues the run in the folder, "
            "overwrite replaces it; got both"
        )
    path = _check_path(out_dir, argument, overwrite)
    marker = marker_name(kind)
    if path.exists() and not path.is_dir():
        raise NotADirectoryError(f"{argument}: expected a directory; {path} is a file")
    if not path.exists() or not [n for n in os.listdir(path) if n != LOCK]:
        if resume:
            raise FileNotFoundError(
                f"{argument}: resume=True expects {path}/checkpoint.npz; none found"
            )
        if dry_run:
            return None
        path.mkdir(parents=True, exist_ok=True)
        return _claim(path, path, kind, restarted=False)
    if not (path / marker).is_file():
        if kind == "run" and (path / "checkpoint.npz").is_file():
            raise RunExistsError(
                f"{argument}: {path} looks like a run of an older minikto (no {marker} marker: "
                f"{_listing(path)}); it cannot be resumed or replaced by this version, so "
                "choose another location (or move it away yourself)"
            )
        raise RunExistsError(
            f"{argument}: {path} holds files minikto did not write ({_listing(path)}); minikto "
            "replaces only its own folders, so choose another location"
        )
    lock = _lock(path, argument)
    try:
        own = owned_files(path, kind)
        _refuse_special(path, own, argument)
        if not dry_run:
            _remove_temporaries(path, own)
            _remove_abandoned_replacements(path, kind)
        foreign = _foreign(path, kind, own)
        has_checkpoint = kind == "run" and (path / "checkpoint.npz").exists()
        stub = kind == "run" and not _finished(path)
        if foreign and (overwrite or stub):
            raise RunExistsError(
                f"{argument}: {path} is a minikto {kind} folder but also holds "
                f"{_names(foreign)}, which minikto did not write; move them away first"
            )
        empty = not any(n not in (marker, LOCK, MANIFEST) for n in os.listdir(path))
        if resume and not has_checkpoint and not stub:
            raise RunExistsError(
                f"{argument}: resume=True expects {path}/checkpoint.npz; none found, but the "
                f"folder holds a finished run's output ({_listing(path)}); pass overwrite=True "
                "(--overwrite) to replace it, or choose another location"
            )
        if overwrite and not (stub or empty):
            _check_swappable(path, argument)
        if dry_run and (stub or empty or overwrite or (resume and has_checkpoint)):
            os.close(lock)
            return None
        if resume and has_checkpoint:
            return RunFolder(path, path, kind, lock, restarted=False)
        if stub or empty:  # killed or refused before its first save: nothing worth keeping
            _remove_own(path, own)
            return RunFolder(path, path, kind, lock, restarted=not empty)
        if not overwrite:
            what = "a run" if kind == "run" else "results"
            hint = (" or resume=True (--resume) to continue it"
                    if kind == "run" and has_checkpoint else "")
            raise RunExistsError(
                f"{argument}: {path} already holds {what}; pass overwrite=True (--overwrite) "
                f"to replace it{hint}"
            )
        aside = path.with_name(f".{path.name}.minikto-new-{secrets.token_hex(4)}")
        aside.mkdir()
        _write_marker(aside, kind)
        return RunFolder(path, aside, kind, lock, restarted=False)
    except BaseException:
        os.close(lock)
        raise


def _check_path(out_dir: Any, argument: str, overwrite: bool) -> Path:
    if not isinstance(out_dir, (str, os.PathLike)):
        raise TypeError(
            f"{argument}: expected a directory path (str or Path); got {brief(out_dir)}"
        )
    if os.fspath(out_dir) == "":
        raise ValueError(f"{argument}: expected a directory path; got an empty string")
    path = Path(out_dir)
    if path.is_symlink():  # the folder it points to is the run's; the link stays as it is
        target = path.resolve()
        if not target.is_dir():
            raise NotADirectoryError(
                f"{argument}: {path} is a symbolic link to {target}, which is not an existing "
                "folder; point it at a folder or choose another location"
            )
        path = target
    if overwrite:
        here = Path.cwd().resolve()
        target = path.resolve()
        if target == here or target in here.parents:
            raise ValueError(
                f"{argument}: refusing to replace {brief(os.fspath(out_dir))}: it is the "
                "working folder or contains it; choose a folder of its own for the run"
            )
    return path


def _check_swappable(path: Path, argument: str) -> None:
    """A replacement is renamed into place: refuse now what would refuse that rename later."""
    parent = path.parent
    if os.path.ismount(path) or os.stat(path).st_dev != os.stat(parent).st_dev:
        raise ValueError(
            f"{argument}: cannot replace {path}: it is a mount point (another file system), "
            "and a replacement is built beside it and renamed into place; choose a folder "
            "inside it, or remove the old run yourself"
        )
    if not os.access(parent, os.W_OK | os.X_OK):
        raise PermissionError(
            f"{argument}: cannot replace {path}: its parent folder {parent} is not writable, "
            "and a replacement is built beside it and renamed into place"
        )


def _claim(path: Path, work: Path, kind: str, *, restarted: bool) -> RunFolder:
    lock = _lock(path, "out_dir")
    try:
        _write_marker(path, kind)
    except BaseException:
        os.close(lock)
        raise
    return RunFolder(path, work, kind, lock, restarted=restarted)


def _lock(path: Path, argument: str) -> int:
    fd = os.open(path / LOCK, os.O_RDWR | os.O_CREAT, 0o666)
    if fcntl is None:  # pragma: no cover
        return fd
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise RunInUseError(
            f"{argument}: {path} is in use by another minikto process; wait for it to finish "
            "or choose another location"
        ) from None
    return fd


def _write_marker(path: Path, kind: str) -> None:
    with atomic_write(path / marker_name(kind), "w", encoding="utf-8") as f:
        json.dump({"format": f"minikto-{kind}", "version": 1}, f)
        f.write("\n")


def _foreign(path: Path, kind: str, own: set[str]) -> list[str]:
    """What ``path`` holds that minikto did not write (inside sub-folders too), by path."""
    always = {marker_name(kind), LOCK, MANIFEST}
    dirs = owned_dirs(own)
    found = []

    def walk(folder: Path, prefix: str) -> None:
        entries = sorted(folder.iterdir(), key=lambda p: p.name)
        for entry in entries:
            if len(found) > 20:  # enough to name in an error
                return
            rel = prefix + entry.name
            if entry.is_dir() and not entry.is_symlink():
                before = len(found)
                walk(entry, rel + "/")
                if rel not in dirs and len(found) == before:  # an empty folder of the user's
                    found.append(rel + "/")
            elif not (rel in own or (not prefix and rel in always) or is_temporary_of(rel, own)):
                found.append(rel)

    walk(path, "")
    return found


def _refuse_special(path: Path, own: set[str], argument: str) -> None:
    """A manifest entry must be a regular file (a FIFO would block a read forever)."""
    for rel in sorted(own):
        try:
            mode = os.stat(path / rel).st_mode
        except FileNotFoundError:
            continue
        except OSError as err:
            raise ValueError(f"{argument}: {path / rel}: {err.strerror}") from None
        if not stat.S_ISREG(mode):
            what = ("a directory" if stat.S_ISDIR(mode) else
                    "a FIFO (named pipe)" if stat.S_ISFIFO(mode) else "not a regular file")
            raise ValueError(
                f"{argument}: expected {path / rel} to be the regular file minikto wrote; it "
                f"is {what}, so it is neither read nor replaced; move it away first"
            )


def _finished(path: Path) -> bool:
    """Does a run folder hold any finished output (more than a stub)?"""
    if any((path / n).exists() for n in _FINISHED):
        return True
    with contextlib.suppress(OSError):
        return (path / "metrics.jsonl").stat().st_size > 0
    return False


def _remove_temporaries(path: Path, own: set[str]) -> None:
    """Remove the temporaries a killed atomic write left for the owned files."""
    by_dir: dict[str, list[str]] = {}
    for rel in own:
        p = PurePosixPath(rel)
        by_dir.setdefault(p.parent.as_posix(), []).append(p.name)
    for folder, names in by_dir.items():
        if (path / folder).is_dir() and not (path / folder).is_symlink():
            remove_stale_temporaries(path / folder, names)


def _remove_abandoned_replacements(path: Path, kind: str) -> None:
    """Remove the hidden siblings a killed ``overwrite`` left (``.NAME.minikto-new-*``); the
    folder's lock is held, so no other process is building one now."""
    pattern = re.compile(r"\." + re.escape(path.name) + r"\.minikto-new-[0-9a-f]{8}")
    for entry in path.parent.iterdir():
        if (pattern.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink()
                and (entry / marker_name(kind)).is_file()):
            with contextlib.suppress(OSError, ManifestError):
                _remove_folder(entry, kind)


def _remove_own(path: Path, own: set[str]) -> None:
    """Delete minikto's own files from ``path``, one by one: never a whole tree, so that a
    file someone else put there (even in ``figures/``) stays where it is."""
    _remove_temporaries(path, own)
    for rel in sorted(own):
        target = path / rel
        if target.is_symlink() or target.is_file():
            with contextlib.suppress(FileNotFoundError):
                target.unlink()
    for rel in sorted(owned_dirs(own), key=lambda d: -d.count("/")):
        with contextlib.suppress(OSError):  # left in place if it holds another's file
            (path / rel).rmdir()
    with contextlib.suppress(FileNotFoundError):
        (path / MANIFEST).unlink()


def _remove_folder(path: Path, kind: str) -> list[str]:
    """Remove a folder of minikto's that is no longer wanted, file by file; return what it
    still holds that minikto did not write (the folder is then kept)."""
    _remove_own(path, owned_files(path, kind))
    for name in (marker_name(kind), LOCK):
        with contextlib.suppress(FileNotFoundError):
            (path / name).unlink()
    kept = sorted(p.name for p in path.iterdir())
    if not kept:
        path.rmdir()
    return kept


def _names(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(brief(n, 80).strip("'") for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _listing(path: Path, limit: int = 5) -> str:
    return _names(sorted(p.name for p in path.iterdir()), limit)
