"""Atomic file writes: a file is either the old version or the complete new one, never half.

The data goes to a new temporary file in the same directory (so the final rename stays on
one file system), is flushed and fsync'ed, takes the mode of the file it replaces (or the
usual ``0o666`` less the umask), and only then is renamed over the target with
``os.replace`` (atomic on POSIX and Windows); the directory is fsync'ed so the rename
itself survives a crash. If anything fails before the rename, the temporary file is
removed and the previous file is untouched.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

__all__ = ["atomic_write"]


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike[str], mode: str = "w", **open_kwargs: Any
) -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` when the block succeeds.

    Parameters
    ----------
    path : str or PathLike
        The final file name.
    mode : "w" or "wb"
    **open_kwargs
        Passed to :func:`os.fdopen` (e.g. ``encoding="utf-8"``, ``newline="\\n"``).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"mode: expected 'w' or 'wb'; got {mode!r}")
    path = Path(path)
    if path.is_dir():
        raise IsADirectoryError(f"path: expected a file name; got the directory {path}")
    directory = path.resolve().parent
    if not directory.is_dir():
        raise FileNotFoundError(f"path: expected a file in an existing directory; got {path}")
    temporary = directory / f".{path.name}.{secrets.token_hex(6)}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)  # umask applies
    try:
        with os.fdopen(fd, mode, **open_kwargs) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        with contextlib.suppress(FileNotFoundError):  # keep the mode of the file replaced
            os.chmod(temporary, stat.S_IMODE(os.stat(path).st_mode))
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise
    _fsync_directory(directory)


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
