"""Check a user's own KTO implementation against minikto, and diagnose what is wrong with it.

:func:`check_kto` runs the user's loss function (NumPy, PyTorch or JAX) on the reference
vectors, on hundreds of random float64 batches and on extreme ones, compares its values and
gradients with minikto's (:func:`minikto.kto_loss`, :func:`minikto.kl_estimate`, hand
gradients), and when they differ, with a catalogue of known mistakes
(:mod:`minikto.tools.check_variants`): a variant whose outputs match the user's where the
correct loss does not names the mistake. ``minikto check MODULE:FUNCTION`` is the command.
"""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

from .check_call import call_loss, call_sequence, detect_framework
from .check_cases import Case, loss_cases, sequence_cases
from .check_variants import (
    LOSS_VARIANTS,
    SEQUENCE_VARIANTS,
    Outputs,
    Variant,
    correct_outputs,
    correct_sequence,
    variant_outputs,
)

__all__ = ["CheckRow", "KTOCheckReport", "check_kto"]

#: Values pass when ``|yours - minikto| <= RTOL * |minikto| + ATOL``.
RTOL, ATOL = 1e-9, 1e-12
#: Gradients pass when ``|yours - minikto| <= tol * max|minikto grad of the case| + atol``:
#: ``(tol, atol)`` is GRAD_TOL_AUTOGRAD, or GRAD_TOL_FD for finite differences, whose
#: rounding error is about ``1e-16 * |loss| / h`` with the step ``h = 1e-6``.
GRAD_TOL_AUTOGRAD, GRAD_TOL_FD = (1e-9, 1e-15), (1e-5, 1e-8)


#: The most lines ``str(report)`` prints (one screen); lines are at most 100 characters.
SCREEN_LINES = 40


class CheckRow(NamedTuple):
    """One line of the report."""

    property: str  #: what is compared
    passed: bool
    worst_difference: float  #: the largest |yours - minikto| over the cases (inf: NaN)
    cases: int  #: how many cases were compared


@dataclass
class KTOCheckReport:
    """What :func:`check_kto` found. ``str(report)`` is a table that fits one screen."""

    passed: bool
    diagnosis: str | None  #: the mistake(s) named, with where it is done right; or None
    rows: list[CheckRow]
    smallest_failing_case: str | None  #: shown when no known mistake matches
    function: str = ""  #: the checked function's name
    settings: str = ""  #: z0 mode, framework, how gradients were taken
    variants: list[str] = field(default_factory=list)  #: names of the matched mistakes
    notes: list[str] = field(default_factory=list)  #: what could not be checked, and why

    def __str__(self) -> str:
        name = self.function if len(self.function) <= 84 else "..." + self.function[-81:]
        lines = [f"minikto check: {name}", f"  ({self.settings})", "",
                 f"{'property':<58} {'cases':>5}  {'result':<6}  worst |diff|"]
        for row in self.rows:
            lines.append(f"{row.property:<58} {row.cases:>5}  "
                         f"{'pass' if row.passed else 'FAIL':<6}  {row.worst_difference:.2e}")
        for note in self.notes:
            lines += textwrap.wrap("note: " + note, 98, subsequent_indent="  ")
        lines += ["", "PASSED: the loss agrees with minikto on every case."
                  if self.passed else "FAILED"]
        if self.diagnosis:
            lines += textwrap.wrap("diagnosis: " + self.diagnosis, 98,
                                   subsequent_indent="  ")
        if self.smallest_failing_case:
            lines += ["", *self.smallest_failing_case.splitlines()]
        if len(lines) > SCREEN_LINES:  # long arrays of a big batch: keep to one screen
            lines = lines[: SCREEN_LINES - 1] + ["  ... (the rest: report.smallest_failing_case)"]
        return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Comparing


def _diff(yours: np.ndarray | float, want: np.ndarray | float) -> np.ndarray:
    """|yours - want| with NaN against NaN counted as agreement and NaN otherwise as inf."""
    a = np.atleast_1d(np.asarray(yours, dtype=float))
    b = np.atleast_1d(np.asarray(want, dtype=float))
    d = np.abs(a - b)
    both = np.isnan(a) & np.isnan(b)
    return np.where(both, 0.0, np.where(np.isnan(d), np.inf, d))


def _close(yours: np.ndarray | float, want: np.ndarray | float) -> bool:
    w = np.atleast_1d(np.asarray(want, dtype=float))
    return bool(np.all(_diff(yours, want) <= RTOL * np.nan_to_num(np.abs(w)) + ATOL))


def _grad_close(yours: np.ndarray, want: np.ndarray, tol: tuple[float, float]) -> bool:
    scale = float(np.max(np.abs(want))) if np.size(want) else 0.0
    return bool(np.all(_diff(yours, want) <= tol[0] * scale + tol[1]))


def _agree(
    key: str, yours: Outputs, want: Outputs, grad_tol: tuple[float, float]
) -> tuple[bool, float] | None:
    """Whether one output agrees on one case, and the worst difference; None: not compared."""
    a, b = getattr(yours, key), getattr(want, key)
    if a is None or b is None:
        return None
    worst = float(np.max(_diff(a, b)))
    ok = _grad_close(a, b, grad_tol) if key.startswith("grad") else _close(a, b)
    return ok, worst


# ------------------------------------------------------------------------------------------
# The rows of the report


def _row(
    name: str, key: str, pairs: list[tuple[Outputs, Outputs]], tol: tuple[float, float]
) -> CheckRow | None:
    results = [r for y, w in pairs if (r := _agree(key, y, w, tol)) is not None]
    if not results:
        return None
    return CheckRow(name, all(ok for ok, _ in results), max(d for _, d in results), len(results))


def _loss_rows(cases: list[Case], yours: list[Outputs], want: list[Outputs],
               estimated: bool, how: str) -> list[CheckRow]:
    tol = GRAD_TOL_AUTOGRAD if how == "autograd" else GRAD_TOL_FD
    everything = list(zip(yours, want, strict=True))
    rows = []
    for group, label in (("vectors", "the reference vectors"), ("extremes", "extreme batches"),
                         ("random", "random float64 batches")):
        pairs = [p for p, c in zip(everything, cases, strict=True) if c.group == group]
        rows.append(_row(f"loss on {label}", "loss", pairs, tol))
    rows += [
        _row("per-example losses", "losses", everything, tol),
        _row("rewards = beta * (policy_logps - reference_logps)", "rewards", everything, tol),
        _row(f"gradient wrt policy_logps ({how})", "grad", everything, tol),
    ]
    if estimated:
        rows.append(_row("gradient wrt kl_policy_logps is 0 (z0 detached)", "grad_kl",
                         everything, tol))
    return [r for r in rows if r is not None]


# ------------------------------------------------------------------------------------------
# The diagnosis


def _one_label(case: Case) -> bool:
    return bool(case.desirable.all() or not case.desirable.any())


def _matches(variant: Variant, cases: list[Case], yours: list[Outputs], estimated: bool,
             tol: tuple[float, float], nan_one_label: bool = False) -> bool:
    """Whether the user's outputs equal the variant's on every case (values, then gradients).

    With ``nan_one_label`` the variant is combined with a NaN loss on one-label batches.
    """
    checked = []
    for case, y in zip(cases, yours, strict=True):
        if nan_one_label and _one_label(case):
            if not np.isnan(y.loss):
                return False
            continue
        loss, losses, rewards = variant.value(case, estimated)
        want = Outputs(loss, losses, rewards)
        if any(r is not None and not r[0] for r in
               (_agree(k, y, want, tol) for k in ("loss", "losses", "rewards"))):
            return False
        checked.append((case, y))
    for case, y in checked:  # gradients only for a variant whose values all match
        want = variant_outputs(variant, case, estimated)
        if any(r is not None and not r[0] for r in
               (_agree(k, y, want, tol) for k in ("grad", "grad_kl"))):
            return False
    return True


def _diagnose(cases: list[Case], yours: list[Outputs], estimated: bool,
              tol: tuple[float, float]) -> list[Variant]:
    mode = "estimated" if estimated else "given"
    catalogue = [v for v in LOSS_VARIANTS if mode in v.modes]
    found = [v for v in catalogue if _matches(v, cases, yours, estimated, tol)]
    if found:
        return found
    nan = next(v for v in catalogue if v.name == "nan_one_label")
    for v in catalogue:  # two mistakes at once: a variant that also gives NaN on one label
        if v is not nan and _matches(v, cases, yours, estimated, tol, nan_one_label=True):
            return [v, nan]
    return []


def _fmt(x: np.ndarray | float | None) -> str:
    if x is None:
        return "-"
    text = np.array2string(np.asarray(x), precision=6, max_line_width=78, separator=", ")
    return text.replace("\n", "\n" + " " * 21)


def _smallest_case(cases: list[Case], yours: list[Outputs], want: list[Outputs],
                   estimated: bool, tol: tuple[float, float]) -> str:
    """The failing case of the smallest batch, its inputs and both outputs (some case fails)."""
    failing = [i for i, (y, w) in enumerate(zip(yours, want, strict=True))
               if any(r is not None and not r[0] for r in
                      (_agree(k, y, w, tol) for k in ("loss", "losses", "rewards", "grad",
                                                      "grad_kl")))]
    i = min(failing, key=lambda j: (cases[j].batch, j))
    c, y, w = cases[i], yours[i], want[i]
    z0 = "z0 from kl_* below" if estimated else f"z0 {c.z0:.6g}"
    rows = [("policy_logps", c.policy_logps), ("reference_logps", c.reference_logps),
            ("desirable", c.desirable)]
    if estimated:
        rows += [("kl_policy_logps", c.kl_policy_logps),
                 ("kl_reference_logps", c.kl_reference_logps)]
    rows += [("loss", f"yours {y.loss:.12g}, minikto {w.loss:.12g}")]
    if y.losses is not None:
        rows += [("losses yours", y.losses), ("losses minikto", w.losses)]
    rows += [("grad yours", y.grad), ("grad minikto", w.grad)]
    lines = [f"smallest case that differs: {c.name} (B = {c.batch}, beta {c.beta:.6g}, "
             f"weights {c.desirable_weight:.4g}/{c.undesirable_weight:.4g}, {z0})"]
    lines += [f"  {label:<19}{v if isinstance(v, str) else _fmt(v)}" for label, v in rows]
    relative = [abs(yours[j].loss - want[j].loss) / max(abs(want[j].loss), 1e-300)
                for j in failing]
    if all(r < 1e-5 for r in relative):  # (False for a NaN)
        lines.append("  every loss differs by less than 1e-5 relative: float32 arithmetic "
                     "somewhere? (the inputs are float64)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# The sequence level


def _check_sequence(fn: Callable, framework: str, seed: int) -> tuple[list[CheckRow], list[str]]:
    cases = sequence_cases(seed)
    rng = np.random.default_rng([20240203, seed])
    values, diffs, grad_diffs, grad_ok = [], [], [], True
    for case in cases:
        weights = rng.uniform(0.5, 2.0, size=case.token_logps.shape[0])
        got, grad = call_sequence(fn, case, framework, weights)
        values.append(got)
        diffs.append(float(np.max(_diff(got, correct_sequence(case)))))
        want_grad = weights[:, None] * case.mask
        grad_diffs.append(float(np.max(_diff(grad, want_grad))))
        grad_ok &= _grad_close(grad, want_grad, GRAD_TOL_FD)
    value_ok = all(_close(v, correct_sequence(c)) for v, c in zip(values, cases, strict=True))
    rows = [CheckRow("sequence_fn: sum of the response tokens' log-probs", value_ok,
                     max(diffs), len(cases)),
            CheckRow("sequence_fn: gradient is the mask", grad_ok, max(grad_diffs), len(cases))]
    found = [] if value_ok else [
        f"{v.name}: {v.sentence}" for v in SEQUENCE_VARIANTS
        if all(_close(got, v.value(c)) for got, c in zip(values, cases, strict=True))
    ]
    return rows, found


# ------------------------------------------------------------------------------------------
# The entry point


def check_kto(
    fn: Callable,
    *,
    z0: str = "given",
    seed: int = 0,
    num_random: int = 200,
    sequence_fn: Callable | None = None,
    framework: str | None = None,
) -> KTOCheckReport:
    """Check a KTO loss function against minikto and name the mistake when it is a known one.

    Parameters
    ----------
    fn : callable
        With ``z0="given"``: ``fn(policy_logps, reference_logps, desirable, z0, *, beta,
        desirable_weight, undesirable_weight)`` like :func:`minikto.kto_loss`. With
        ``z0="estimated"``: ``fn(policy_logps, reference_logps, desirable, kl_policy_logps,
        kl_reference_logps, *, beta, desirable_weight, undesirable_weight)`` where the kl_*
        arrays (B,) are the log-probs of the mismatched pairs (x_i, y_{(i-1) mod B}) and fn
        estimates z0 itself. Arrays (B,) are float64 (``desirable`` bool) of the user's
        framework. It returns the loss (a scalar), or a tuple / NamedTuple / dict whose first
        element or ``"loss"`` key is the loss, optionally with ``"losses"`` (B,) and
        ``"rewards"`` (B,) (by name, or positions 1 and 2 of a plain tuple).
    z0 : {"given", "estimated"}
    seed : int
        Seeds the random cases; the same seed gives the same report.
    num_random : int, >= 0
        How many random batches (2 to 12 examples each).
    sequence_fn : callable, optional
        ``sequence_fn(token_logps (N, T), mask (N, T) bool) -> (N,)`` sequence log-probs,
        checked too (the sum over the masked tokens).
    framework : {"numpy", "torch", "jax"}, optional
        Default: detected from the modules fn's code imports (NumPy otherwise).

    Returns
    -------
    KTOCheckReport
        ``passed``, ``diagnosis`` (None when passed or no known mistake matches), ``rows``
        and ``smallest_failing_case``; ``print(report)`` shows the table.
    """
    if not callable(fn):
        raise TypeError(f"fn: expected a callable; got {type(fn).__name__}")
    if z0 not in ("given", "estimated"):
        raise ValueError(f"z0: expected 'given' or 'estimated'; got {z0!r}")
    for name, value in (("seed", seed), ("num_random", num_random)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name}: expected an int >= 0; got {value!r}")
    if sequence_fn is not None and not callable(sequence_fn):
        raise TypeError(f"sequence_fn: expected a callable or None; got "
                        f"{type(sequence_fn).__name__}")
    framework = detect_framework(fn, framework)
    estimated = z0 == "estimated"
    cases = loss_cases(seed, num_random, estimated=estimated)
    want = [correct_outputs(c, estimated) for c in cases]
    yours, errors = _run_user(fn, cases, estimated, framework)
    how = "autograd" if any(y.autograd for y in yours) else "finite differences"
    tol = GRAD_TOL_AUTOGRAD if how == "autograd" else GRAD_TOL_FD
    rows = _loss_rows(cases, yours, want, estimated, how)
    passed = loss_passed = all(r.passed for r in rows)
    found = [] if passed else _diagnose(cases, yours, estimated, GRAD_TOL_FD)
    sentences = [f"{v.name}: {v.sentence}" for v in found]
    if sequence_fn is not None:
        seq_rows, seq_found = _check_sequence(sequence_fn, detect_framework(
            sequence_fn, framework), seed)
        rows += seq_rows
        sentences += seq_found
        passed = passed and all(r.passed for r in seq_rows)
    smallest = None
    if not found and not loss_passed:
        smallest = _smallest_case(cases, yours, want, estimated, tol)
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    return KTOCheckReport(
        passed=passed,
        diagnosis=" ".join(sentences) or None,
        rows=rows,
        smallest_failing_case=smallest,
        function=name,
        settings=f"z0 {z0}, {framework}, gradients by {how}, seed {seed}",
        variants=[v.name for v in found],
        notes=errors + (
            ["without autograd, whether z0 is detached cannot be seen (use torch or jax)"]
            if estimated and how != "autograd" else []
        ),
    )


def _run_user(fn: Callable, cases: list[Case], estimated: bool,
              framework: str) -> tuple[list[Outputs], list[str]]:
    """The user's outputs on every case; an exception on a case counts as a NaN loss there.

    Returns the outputs and a note on the exceptions; re-raises when every case raised (a
    wrong signature, a malformed result: a usage error, not a finding).
    """
    yours, failures = [], []
    for case in cases:
        try:
            yours.append(call_loss(fn, case, estimated, framework))
        except Exception as err:  # noqa: BLE001 - the user's code may raise anything
            yours.append(Outputs(float("nan")))
            failures.append((case, err))
    if len(failures) == len(cases):
        raise failures[0][1]
    if not failures:
        return yours, []
    case, err = failures[0]
    note = (f"fn raised on {len(failures)} case(s), the loss counted as NaN there; first on "
            f"{case.name!r}: {type(err).__name__}: {err}")
    return yours, [note if len(note) <= 180 else note[:177] + "..."]

