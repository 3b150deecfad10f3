"""Checking a reference vectors file against minikto, strictly.

:func:`check_vectors` reads a vectors file (or its dict), validates every case before using
it, recomputes it with minikto and lists the disagreements. The validation is strict, in
the file's own terms: a number must be a JSON number (not a string, not a boolean), a label
a JSON boolean (``"true"`` is refused, never cast), every list of one case as long as the
others; a file without cases fails. Each problem is one line that names the case (by its
``name``, or by its position when it has none), so a hand-edited or generated file can be
mended.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from ..data.files import MAX_SMALL_FILE_BYTES, read_user_bytes
from .vectors import _ARRAYS, FORMAT, VERSION, compute_outputs, compute_tolerances

__all__ = ["check_vectors"]

#: Inputs that are numbers (every other input is an array of numbers or of booleans).
_SCALARS = {"z0", "beta", "desirable_weight", "undesirable_weight"}
#: The inputs of each function, in the file's spelling.
_INPUTS = {
    "kto_loss": (*_ARRAYS["kto_loss"], "desirable", "z0", "beta", "desirable_weight",
                 "undesirable_weight"),
    "kto_loss_from_token_logps": (*_ARRAYS["kto_loss_from_token_logps"], "completion_mask",
                                  "desirable", "z0", "beta", "desirable_weight",
                                  "undesirable_weight"),
    "kl_estimate": _ARRAYS["kl_estimate"],
    "dpo_loss": (*_ARRAYS["dpo_loss"], "beta"),
}
_BOOLEANS = {"desirable", "completion_mask"}


def check_vectors(
    vectors: str | os.PathLike | dict,
    *,
    rtol: float = 0.0,
    atol: float = 0.0,
    backend: str = "numpy",
) -> list[str]:
    """Recompute every case with minikto and list where it disagrees with the file.

    Parameters
    ----------
    vectors : path or dict
        A vectors file (as written by :func:`~minikto.tools.vectors.write_vectors`) or the
        dict itself. A path must name a regular file of at most 64 MiB.
    rtol, atol : float
        A value passes when ``|computed - stored|`` is within the rounding a correct float64
        computation may carry at the case's values
        (:func:`~minikto.tools.vectors.compute_tolerances`, docs/CHECK.md "The tolerance
        rule"), or within ``atol + rtol * |stored|`` (0 by default).
    backend : str
        The array backend to recompute with ("numpy", "array_api_strict"...).

    Returns
    -------
    list of str
        One line per disagreement or malformed case (``"<case>: <output>[i]: stored ...,
        computed ..."``, ``"<case>: inputs: ..."``); empty when everything agrees.

    Raises
    ------
    ValueError
        If the file is not JSON, not an object, or not a regular file.
    OSError
        If the file cannot be read.
    """
    if not isinstance(vectors, dict):
        vectors = _load(Path(vectors))
    if vectors.get("format") != FORMAT or vectors.get("version") != VERSION:
        return [
            f"file: expected format {FORMAT!r} version {VERSION}; got format "
            f"{vectors.get('format')!r} version {vectors.get('version')!r}"
        ]
    cases = vectors.get("cases")
    if not isinstance(cases, list) or not cases:
        got = "no key 'cases'" if cases is None else _describe(cases)
        return [f"file: expected a non-empty list of cases under 'cases'; got {got}"]
    failures: list[str] = []
    seen: set[str] = set()
    for position, case in enumerate(cases):
        name = _name(case, position)
        if name in seen:
            failures.append(f"{name}: the name of an earlier case; every name must be unique")
        elif isinstance(case, dict) and name.startswith("case "):
            failures.append(f"{name}: name: expected a non-empty string; got "
                            f"{_describe(case.get('name'))}")
        seen.add(name)
        problem = _case_problem(case)
        if problem:
            failures.append(f"{name}: {problem}")
            continue
        try:
            computed = compute_outputs(case["function"], case["inputs"], backend=backend)
        except (TypeError, ValueError) as err:
            failures.append(f"{name}: cannot recompute ({type(err).__name__}: {err})")
            continue
        stored = case["outputs"]
        for key in sorted(set(computed) ^ set(stored)):
            where = "missing from the file" if key in computed else "unknown"
            failures.append(f"{name}: output {key!r} is {where}")
        bound = compute_tolerances(case["function"], case["inputs"], computed)
        for key in sorted(computed.keys() & stored.keys()):
            failures += _compare(f"{name}: {key}", stored[key], computed[key], bound[key],
                                 rtol, atol)
    return failures


def _load(path: Path) -> dict:
    raw = read_user_bytes(path, name="vectors file", max_bytes=MAX_SMALL_FILE_BYTES)
    try:
        vectors = json.loads(raw.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError, RecursionError, ValueError) as err:
        raise ValueError(f"vectors file {path}: expected a JSON vectors file; {err}") from err
    if not isinstance(vectors, dict):
        raise ValueError(
            f"vectors file {path}: expected a JSON object; got {type(vectors).__name__}"
        )
    return vectors


def _name(case: Any, position: int) -> str:
    """How a case is named in a message: its ``name``, else ``case <position>``."""
    if isinstance(case, dict) and isinstance(case.get("name"), str) and case["name"]:
        return case["name"]
    return f"case {position} (no name)"


def _case_problem(case: Any) -> str | None:
    """What is wrong with a case's structure and inputs, or None."""
    if not isinstance(case, dict):
        return f"expected a JSON object; got {_describe(case)}"
    function = case.get("function")
    if function not in _INPUTS:
        return f"function: expected one of {sorted(_INPUTS)}; got {_describe(function)}"
    for key in ("inputs", "outputs"):
        if not isinstance(case.get(key), dict):
            return f"{key}: expected a JSON object; got {_describe(case.get(key))}"
    inputs = case["inputs"]
    missing = [k for k in _INPUTS[function] if k not in inputs]
    if missing:
        return f"inputs: missing key {missing[0]!r} (a {function} case needs {_INPUTS[function]})"
    shapes = {}
    for key in _INPUTS[function]:
        value = inputs[key]
        if key in _SCALARS:
            if not _is_number(value):
                return f"inputs.{key}: expected a finite JSON number; got {_describe(value)}"
            continue
        shape, problem = _array_shape(value, boolean=key in _BOOLEANS)
        if problem:
            return f"inputs.{key}: {problem}"
        shapes[key] = shape
    batch = {key: shape[0] for key, shape in shapes.items()}
    if len(set(batch.values())) > 1:
        return f"inputs: expected lists of one length B; got lengths {batch}"
    tokens = function == "kto_loss_from_token_logps"
    for key, shape in shapes.items():
        ndim = 2 if tokens and key != "desirable" else 1
        if len(shape) != ndim:
            return f"inputs.{key}: expected a {ndim}-d list; got a {len(shape)}-d one"
    if tokens and len({s for k, s in shapes.items() if k != "desirable"}) > 1:
        return f"inputs: expected token arrays of one shape (B, L); got shapes {shapes}"
    for key, value in case["outputs"].items():
        if not _is_number(value):
            _, problem = _array_shape(value, boolean=False)
            if problem:
                return f"outputs.{key}: {problem}"
    return None


def _array_shape(value: Any, *, boolean: bool) -> tuple[tuple[int, ...], str | None]:
    """The shape of a non-empty 1-d, or 2-d rectangular, list of numbers or booleans."""
    what = "JSON booleans true/false" if boolean else "finite JSON numbers"
    if not isinstance(value, list) or not value:
        return (), f"expected a non-empty list of {what}; got {_describe(value)}"
    two_d = all(isinstance(v, list) for v in value)
    rows = value if two_d else [value]
    widths = {len(row) for row in rows}
    if len(widths) > 1 or 0 in widths:
        return (), f"expected rows of one length, each a list of {what}; got lengths {widths}"
    for row in rows:
        for item in row:
            if isinstance(item, bool) is not boolean or not (boolean or _is_number(item)):
                return (), f"expected a list of {what}; got an item {_describe(item)}"
    return ((len(rows), widths.pop()) if two_d else (len(value),)), None


def _is_number(value: Any) -> bool:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return False
    try:
        return math.isfinite(value)
    except OverflowError:  # an integer beyond float64, e.g. 1e400 written out
        return False


def _describe(value: Any) -> str:
    """A JSON value in a message: its type, and the value itself when short."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return f"boolean {str(value).lower()}"
    if isinstance(value, str):
        return f"string {value[:40]!r}"
    if isinstance(value, (int, float)):
        return f"number {value!r}" if len(repr(value)) <= 40 else "a number too large"
    if isinstance(value, list):
        return f"a list of {len(value)} items"
    return "an object"


def _compare(label: str, stored: Any, computed: Any, bound: Any, rtol: float,
             atol: float) -> list[str]:
    want = np.asarray(stored, dtype=np.float64)
    got = np.asarray(computed, dtype=np.float64)
    if want.shape != got.shape:
        return [f"{label}: stored shape {want.shape}, computed shape {got.shape}"]
    allowed = np.maximum(np.asarray(bound, dtype=np.float64), atol + rtol * np.abs(want))
    bad = np.flatnonzero(~(np.abs(got - want) <= allowed))
    out = []
    for i in bad:
        index = "".join(f"[{k}]" for k in np.unravel_index(i, want.shape)) if want.ndim else ""
        w, g = want.reshape(-1)[i], got.reshape(-1)[i]
        out.append(
            f"{label}{index}: stored {float(w)!r}, computed {float(g)!r} (|diff| {abs(g - w):.3g})"
        )
    return out
