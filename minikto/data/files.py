"""Opening a file a user named: regular files only, and never more than a bound.

A path on the command line can name anything: a FIFO (opening it for reading waits for a
writer, forever), ``/dev/zero`` or ``/dev/urandom`` (endless), a directory, a socket. The
readers of minikto go through :func:`open_user_file`, which refuses what is not a regular
file before reading a byte, and through :func:`read_user_bytes` or :class:`BoundedReader`,
which stop at ``max_bytes``.

The file is opened with ``O_NONBLOCK``, so that even a FIFO swapped in after the check
cannot block the ``open`` call; the type is then checked on the open descriptor
(``fstat``), so what is read is what was checked.
"""

from __future__ import annotations

import os
import stat
from typing import IO

__all__ = ["MAX_DATA_BYTES", "MAX_SMALL_FILE_BYTES", "open_user_file", "read_user_bytes"]

#: The most a dataset file may hold (1 GiB): a toy dataset of a million records is ~80 MB.
MAX_DATA_BYTES = 1 << 30
#: The most a small JSON file (a config, a vectors file) may hold (64 MiB).
MAX_SMALL_FILE_BYTES = 64 << 20


def _kind(mode: int) -> str:
    """What a non-regular file is, in words."""
    for test, name in (
        (stat.S_ISDIR, "a directory"),
        (stat.S_ISFIFO, "a FIFO (named pipe)"),
        (stat.S_ISCHR, "a character device"),
        (stat.S_ISBLK, "a block device"),
        (stat.S_ISSOCK, "a socket"),
    ):
        if test(mode):
            return name
    return "not a regular file"  # pragma: no cover - every POSIX type is listed above


def open_user_file(
    path: str | os.PathLike[str], *, name: str = "path", max_bytes: int = MAX_DATA_BYTES
) -> IO[bytes]:
    """Open ``path`` for reading in binary mode, if it is a regular file of at most ``max_bytes``.

    Parameters
    ----------
    path : str or PathLike
        The file a user named (symlinks are followed).
    name : str
        The argument named in error messages (``"--data"``, ``"--check"``...).
    max_bytes : int
        The largest size accepted.

    Returns
    -------
    binary file object
        Open, in blocking mode, positioned at the start.

    Raises
    ------
    OSError
        If the file cannot be opened (``FileNotFoundError``, ``PermissionError``...); a
        directory raises ``IsADirectoryError``.
    ValueError
        If ``path`` names a FIFO, a device or a socket, or a file over ``max_bytes``.
    """
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    try:
        info = os.fstat(fd)
        if stat.S_ISDIR(info.st_mode):
            raise IsADirectoryError(f"{name}: expected a file; got the directory {os.fspath(path)}")
        if not stat.S_ISREG(info.st_mode):
            raise ValueError(
                f"{name}: expected a regular file; got {os.fspath(path)}, which is "
                f"{_kind(info.st_mode)}"
            )
        if info.st_size > max_bytes:
            raise ValueError(
                f"{name}: expected a file of at most {max_bytes} bytes; got {os.fspath(path)} "
                f"of {info.st_size} bytes"
            )
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def read_user_bytes(
    path: str | os.PathLike[str], *, name: str = "path", max_bytes: int = MAX_SMALL_FILE_BYTES
) -> bytes:
    """The whole content of a regular file of at most ``max_bytes`` (see :func:`open_user_file`).

    A file that grows past ``max_bytes`` while it is read is refused too.
    """
    with open_user_file(path, name=name, max_bytes=max_bytes) as f:
        data = f.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise ValueError(
            f"{name}: expected a file of at most {max_bytes} bytes; got {os.fspath(path)}, "
            "which grew past that while it was read"
        )
    return data
