"""Atomic file writes: a file is either the old version or the complete new one, never half.

The data goes to a new temporary file in the same directory as the file it replaces (so
the final rename stays on one file system), is flushed and fsync'ed, takes the mode of the
file it replaces (or the usual ``0o666`` less the umask), and only then is renamed over the
target with ``os.replace`` (atomic on POSIX and Windows); the directory is fsync'ed so the
rename itself survives a crash. If anything fails before the rename, the temporary file is
removed and the previous file is untouched.

A symbolic link is followed: the file it points to is the one replaced (its temporary file
sits beside it, on its file system), and the link stays a link. Every error names the
user's path, never the hidden temporary file. A process killed between creating and
renaming its temporary file leaves a ``.NAME.<12 hex digits>.tmp`` file behind;
:func:`remove_stale_temporaries` removes those (and only those) for given file names.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import stat
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from .._brief import brief

__all__ = ["atomic_write", "remove_stale_temporaries"]


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str], mode: str = "w", **open_kwargs: Any
) -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` when the block succeeds.

    Parameters
    ----------
    path : str or PathLike
        The final file name (a symbolic link: the file it points to is replaced).
    mode : "w" or "wb"
    **open_kwargs
        Passed to :func:`os.fdopen` (e.g. ``encoding="utf-8"``, ``newline="\\n"``).

    Raises
    ------
    OSError
        Naming ``path`` (a full disk, a read-only directory, ...); the old file is kept.
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: expected 'w' or 'wb'; got {brief(mode)}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"path: expected a file name; got the directory {path}")
    target = path.resolve()  # a symlink's target: replace it there, on its file system
    directory = target.parent
    if not directory.is_dir():
        raise FileNotFoundError(f"path: expected a file in an existing directory; got {path}")
    temporary = directory / f".{target.name}.{secrets.token_hex(6)}.tmp"
    try:
        fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
    except OSError as err:
        raise _naming(err, path) from err
    try:
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileNotFoundError):  # keep the mode of the file replaced
            os.chmod(temporary, stat.S_IMODE(os.stat(target).st_mode))
        os.replace(temporary, target)
    except BaseException as err:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        if isinstance(err, OSError):
            raise _naming(err, path) from err
        raise
    _fsync_directory(directory)


def _naming(err: OSError, path: Path) -> OSError:
    """The same error, naming the user's path instead of a temporary file."""
    reason = err.strerror or str(err) or type(err).__name__
    kept = " (the previous version, if any, is unchanged)" if path.exists() else ""
    new = type(err)(f"could not write {path}: {reason}{kept}")
    new.errno = err.errno
    return new


def remove_stale_temporaries(directory: str | os.PathLike[str], names: Iterable[str]) -> list[str]:
    """Remove the temporary files a killed :func:`atomic_write` left for the files ``names``.

    Only files named exactly ``.NAME.<12 lowercase hex digits>.tmp`` are touched. Returns the
    names removed.
    """
    directory = Path(directory)
    patterns = [re.compile(r"\." + re.escape(n) + r"\.[0-9a-f]{12}\.tmp") for n in names]
    removed = []
    for entry in sorted(directory.iterdir()):
        if entry.is_file() and not entry.is_symlink() and any(
            p.fullmatch(entry.name) for p in patterns
        ):
            with contextlib.suppress(FileNotFoundError):
                entry.unlink()
                removed.append(entry.name)
    return removed


def _fsync_directory(directory: str | os.PathLike[str]) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
