"""``minikto check MODULE:FUNCTION``: load the user's function, check it, exit 0, 1 or 2.

Exit codes, always: 0 the loss agrees with minikto; 1 it does not (the report says how); 2 the
check could not run: no such file, module or function, a syntax error or an exception while
importing the user's file, an exception on every case or a wrong signature, a function that
did not return within :data:`~minikto.tools.check_call.CALL_TIMEOUT_S` seconds on one case.
An error in the user's code is summarised in a few lines (the exception, then the last frames
in the user's own files), not as Python's whole traceback.
"""

from __future__ import annotations

import argparse
import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from .._brief import brief
from . import check_call
from .check import check_kto

__all__ = ["load_function", "run", "summarize"]

_PACKAGE = str(Path(__file__).resolve().parent.parent)  # minikto's own files


class CouldNotRun(Exception):
    """The check could not run; the message says why (exit 2)."""


def summarize(err: BaseException, frames: int = 3) -> str:
    """The exception in a few lines: its type and message, then the last ``frames`` frames
    outside minikto (file name, line, function and the line of code)."""
    if isinstance(err, SyntaxError):
        where = f"{Path(err.filename or '?').name}, line {err.lineno}"
        return f"SyntaxError: {err.msg} ({where})\n    {(err.text or '').strip()}"
    message = str(err) if len(str(err)) <= 200 else str(err)[:197] + "..."
    lines = [f"{type(err).__name__}: {message}" if message else type(err).__name__]
    own = [f for f in traceback.extract_tb(err.__traceback__) if _is_users(f.filename)]
    for frame in own[-frames:]:
        lines.append(
            f"  {Path(frame.filename).name}, line {frame.lineno}, in {frame.name}: "
            f"{(frame.line or '').strip()}"
        )
    return "\n".join(lines)


def _is_users(filename: str) -> bool:
    """Whether a frame's file is the user's: not minikto's, not an installed library's, not
    Python's own (``<frozen importlib...>`` included)."""
    installed = (sys.prefix, sys.base_prefix, _PACKAGE)
    return not filename.startswith(("<", *installed)) and "site-packages" not in filename


def load_function(spec: str, flag: str) -> Callable:
    """``MODULE:FUNCTION`` -> the function; MODULE is a dotted name or a path to a .py file,
    imported with its own folder first on ``sys.path`` (so it can import its siblings).

    Raises :class:`ValueError` for a malformed spec or a missing file / function, and
    :class:`CouldNotRun` when importing the user's code fails (its error summarised).
    """
    module_name, sep, attr = spec.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(
            f"{flag}: expected MODULE:FUNCTION (or path/to/file.py:FUNCTION); got {brief(spec)}"
        )
    if module_name.endswith(".py"):
        path = Path(module_name)
        if not path.is_file():
            raise ValueError(f"{flag}: expected an existing .py file; got {brief(module_name)}")
        folder = str(path.resolve().parent)
        name = f"_minikto_check_{path.stem}"
    else:
        folder, name = str(Path.cwd()), module_name  # as `python -m` does: the current folder
    if folder not in sys.path:
        sys.path.insert(0, folder)
    try:
        with check_call.time_limit(check_call.CALL_TIMEOUT_S, f"importing {module_name}"):
            if module_name.endswith(".py"):
                loader_spec = importlib.util.spec_from_file_location(name, path)
                module = importlib.util.module_from_spec(loader_spec)
                sys.modules[name] = module  # so that the function's module can be found by name
                loader_spec.loader.exec_module(module)
            else:
                module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name != module_name.split(".")[0]:
            raise CouldNotRun(
                f"{flag}: importing {brief(module_name)} failed:\n{summarize(err)}"
            ) from err
        raise ValueError(f"{flag}: cannot import {brief(module_name)} ({err})") from err
    except SystemExit as err:
        raise CouldNotRun(
            f"{flag}: {brief(module_name)} called sys.exit({brief(err.code)}) while being "
            "imported; put the code that exits under "
            '`if __name__ == "__main__":`'
        ) from None
    except check_call.CallTimeout as err:
        raise CouldNotRun(f"{flag}: {err}") from None
    except Exception as err:  # noqa: BLE001 - the user's code may raise anything
        raise CouldNotRun(
            f"{flag}: importing {brief(module_name)} failed:\n{summarize(err)}"
        ) from err
    fn = getattr(module, attr, None)
    if not callable(fn):
        raise ValueError(f"{flag}: {brief(module_name)} has no function {brief(attr)}")
    return fn


def run(args: argparse.Namespace) -> int:
    """The ``check`` command: print the report; return 0 (correct), 1 (wrong), 2 (the check
    could not run, the reason on stderr)."""
    try:
        fn = load_function(args.function, "FUNCTION")
        sequence_fn = load_function(args.sequence, "--sequence") if args.sequence else None
        report = check_kto(
            fn,
            z0=args.z0,
            seed=args.seed,
            num_random=args.num_random,
            sequence_fn=sequence_fn,
            framework=args.framework,
        )
    except CouldNotRun as err:
        print(f"minikto check: could not run the check. {err}", file=sys.stderr)
        return 2
    except (ValueError, TypeError) as err:
        if err.__traceback__ is not None and _raised_by_user(err):
            print(
                f"minikto check: could not run the check: your function raised on every "
                f"case:\n{summarize(err)}",
                file=sys.stderr,
            )
        else:
            print(f"minikto check: error: {err}", file=sys.stderr)
        return 2
    except TimeoutError as err:
        print(f"minikto check: could not run the check: {err}", file=sys.stderr)
        return 2
    except Exception as err:  # noqa: BLE001 - the user's code may raise anything
        print(
            f"minikto check: could not run the check: your function raised on every "
            f"case:\n{summarize(err)}",
            file=sys.stderr,
        )
        return 2
    report.function = args.function
    print(report)
    return 0 if report.passed else 1


def _raised_by_user(err: BaseException) -> bool:
    """Whether the innermost frame of the traceback is outside minikto (the user's code)."""
    frames = traceback.extract_tb(err.__traceback__)
    return bool(frames) and not frames[-1].filename.startswith(_PACKAGE)
