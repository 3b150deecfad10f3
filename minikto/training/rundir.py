"""Run folders: what minikto may write, replace or delete, and the lock that keeps two runs apart.

A folder minikto creates for a run (or an experiment) holds a marker file, ``.minikto-run``
(or ``.minikto-experiment``), written before anything else. The rules:

- a missing or empty folder is created and marked;
- a marked folder is minikto's own: ``resume`` continues it, ``overwrite`` replaces it, and
  a *stub* (marked, but without a checkpoint: a run killed or refused before its first save)
  is simply restarted;
- a folder that holds anything else (no marker, or a file minikto does not write) is never
  touched: the error lists what is there;
- ``overwrite`` never replaces ``""``, ``.``, ``..`` or any folder that contains the working
  folder; the new run is built beside the old one (a hidden sibling folder) and swapped in
  only once it is complete, so a failure keeps the old run whole;
- a folder minikto no longer wants is removed file by file, only the names it writes (never
  a whole tree): a file someone else put there, even in ``figures/``, is kept, and so is the
  folder that holds it (with a :class:`KeptFilesWarning` naming both);
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
import warnings
from pathlib import Path
from typing import Any

from ..data.atomic import atomic_write, remove_stale_temporaries

try:  # POSIX; elsewhere the lock is advisory only (a no-op)
    import fcntl
except ImportError:  # pragma: no cover
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "LOCK",
    "KeptFilesWarning",
    "RunExistsError",
    "RunFolder",
    "RunInUseError",
    "marker_name",
    "open_folder",
]

LOCK = ".minikto-lock"
#: What each kind of folder may hold (anything else is the user's, and blocks a replacement).
OWN_FILES = {
    "run": ("config.json", "metrics.jsonl", "evals.jsonl", "summary.json", "checkpoint.npz",
            "figures"),
    "experiment": ("runs.csv", "table.md", "section.md", "summary.json"),
}


#: What minikto writes inside those folders' sub-folders (``figures/``) and in an experiment's
#: folder beside its own files: PNG figures, and the temporaries of their atomic writes.
_OWN_FIGURE = re.compile(r"(results_)?[\w.-]+\.png|\.[\w.-]+\.png\.[0-9a-f]{12}\.tmp")


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
    """

    def __init__(self, path: Path, work: Path, kind: str, lock: Any, restarted: bool) -> None:
        self.path, self.work, self.kind, self._lock = path, work, kind, lock
        self.restarted = restarted  #: a stub (no checkpoint) was found and started over

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
        Not a path; an empty path; ``overwrite`` of the working folder or an ancestor.
    RunExistsError
        A folder that holds a run (without ``overwrite``/``resume``) or anything not minikto's.
    RunInUseError
        Another run holds the folder.
    FileNotFoundError
        ``resume`` without a run to resume.
    """
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
        if not dry_run:
            remove_stale_temporaries(path, OWN_FILES[kind])
        foreign = _foreign(path, kind)
        has_checkpoint = kind == "run" and (path / "checkpoint.npz").exists()
        stub = kind == "run" and not has_checkpoint
        if foreign and (overwrite or stub):
            raise RunExistsError(
                f"{argument}: {path} is a minikto {kind} folder but also holds "
                f"{', '.join(foreign)}, which minikto did not write; move them away first"
            )
        empty = not any(n not in (marker, LOCK) for n in os.listdir(path))
        if dry_run and (stub or empty or overwrite or (resume and has_checkpoint)):
            os.close(lock)
            return None
        if resume and has_checkpoint:
            return RunFolder(path, path, kind, lock, restarted=False)
        if stub or empty:  # killed or refused before its first save: nothing worth keeping
            _remove_own(path, kind)
            return RunFolder(path, path, kind, lock, restarted=not empty)
        if not overwrite:
            what = "a run" if kind == "run" else "results"
            hint = " or resume=True (--resume) to continue it" if kind == "run" else ""
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
        raise TypeError(f"{argument}: expected a directory path (str or Path); got {out_dir!r}")
    if os.fspath(out_dir) == "":
        raise ValueError(f"{argument}: expected a directory path; got an empty string")
    path = Path(out_dir)
    if overwrite:
        here = Path.cwd().resolve()
        target = path.resolve()
        if target == here or target in here.parents:
            raise ValueError(
                f"{argument}: refusing to replace {out_dir!r}: it is the working folder or "
                "contains it; choose a folder of its own for the run"
            )
    return path


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


def _foreign(path: Path, kind: str) -> list[str]:
    """What ``path`` holds that minikto did not write (sub-folders included), by name."""
    own = set(OWN_FILES[kind]) | {marker_name(kind), LOCK}
    found = []
    for entry in sorted(path.iterdir(), key=lambda p: p.name):
        if entry.name in own and entry.is_dir() and not entry.is_symlink():
            found += [f"{entry.name}/{n}" for n in sorted(os.listdir(entry))
                      if not _OWN_FIGURE.fullmatch(n)]
        elif entry.name not in own and not (kind == "experiment"
                                            and _OWN_FIGURE.fullmatch(entry.name)):
            found.append(entry.name)
    return found


def _remove_own(path: Path, kind: str) -> None:
    """Delete minikto's own files from ``path``, one by one: never a whole tree, so that a
    file someone else put there (even in ``figures/``) stays where it is."""
    for name in OWN_FILES[kind]:
        target = path / name
        if target.is_dir() and not target.is_symlink():
            for inner in target.iterdir():
                if _OWN_FIGURE.fullmatch(inner.name) and not inner.is_dir():
                    inner.unlink()
            with contextlib.suppress(OSError):  # left in place if it holds another's file
                target.rmdir()
        else:
            with contextlib.suppress(FileNotFoundError):
                target.unlink()


def _remove_folder(path: Path, kind: str) -> list[str]:
    """Remove a folder of minikto's that is no longer wanted, file by file; return what it
    still holds that minikto did not write (the folder is then kept)."""
    remove_stale_temporaries(path, OWN_FILES[kind])
    _remove_own(path, kind)
    for entry in path.iterdir():
        if entry.name in (marker_name(kind), LOCK) or (
            kind == "experiment" and _OWN_FIGURE.fullmatch(entry.name) and not entry.is_dir()
        ):
            entry.unlink()
    kept = sorted(p.name for p in path.iterdir())
    if not kept:
        path.rmdir()
    return kept


def _listing(path: Path, limit: int = 5) -> str:
    names = sorted(p.name for p in path.iterdir())
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")
