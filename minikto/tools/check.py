"""Check a user's own KTO implementation against minikto, and diagnose what is wrong with it.

:func:`check_kto` runs the user's loss function (NumPy, PyTorch or JAX) on the reference
vectors, on hundreds of random float64 batches and on extreme ones, compares its values and
gradients with minikto's (:func:`minikto.kto_loss`, :func:`minikto.kl_estimate`, hand
gradients), and when they differ, with a catalogue of known mistakes
(:mod:`minikto.tools.check_variants`): a variant whose outputs match the user's where the
correct loss does not names the mistake, with its one-line fix. Every comparison allows the
rounding error a correct float64 implementation can have at the values at hand
(:mod:`minikto.tools.check_tolerance`, docs/CHECK.md "The tolerance rule").
``minikto check MODULE:FUNCTION`` is the command (:mod:`minikto.tools.check_command`).
"""

from __future__ import annotations

import inspect
import textwrap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from ..gradcheck import EPSILON, ROUNDING
from . import check_call
from .check_call import (
    CallTimeout,
    ResultMistake,
    call_loss,
    call_sequence,
    detect_framework,
    is_trl_signature,
    time_limit,
)
from .check_cases import Case, loss_cases, sequence_cases
from .check_tolerance import Bounds, bounds
from .check_variants import (
    LOSS_VARIANTS,
    RESULT_MISTAKES,
    SEQUENCE_VARIANTS,
    Outputs,
    Variant,
    correct_outputs,
    correct_sequence,
    detached_outputs,
    variant_outputs,
)

__all__ = ["CheckRow", "KTOCheckReport", "check_kto"]


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


def _allowed(key: str, yours: Outputs, want: Outputs, bound: Bounds) -> Any:
    """The difference a correct implementation may show for one output of one case.

    A gradient by finite differences carries its own measured bound (``grad_bound``), and
    so may the outputs compared with (a variant's); otherwise the rounding bound of
    :mod:`~minikto.tools.check_tolerance` at the values compared with.
    """
    allowed = bound.allowed(key, getattr(want, key))
    if key in ("grad", "grad_kl"):
        own, other = getattr(yours, key + "_bound"), getattr(want, key + "_bound")
        allowed = allowed if own is None else np.maximum(allowed, own)
        allowed = allowed if other is None else allowed + other
    return allowed


def _agree(key: str, yours: Outputs, want: Outputs, bound: Bounds) -> tuple[bool, float] | None:
    """Whether one output agrees on one case, and the worst difference; None: not compared."""
    a, b = getattr(yours, key), getattr(want, key)
    if a is None or b is None:
        return None
    diff = _diff(a, b)
    return bool(np.all(diff <= _allowed(key, yours, want, bound))), float(np.max(diff))


# ------------------------------------------------------------------------------------------
# The rows of the report


def _row(name: str, key: str, triples: list[tuple[Outputs, Outputs, Bounds]]) -> CheckRow | None:
    results = [r for y, w, b in triples if (r := _agree(key, y, w, b)) is not None]
    if not results:
        return None
    return CheckRow(name, all(ok for ok, _ in results), max(d for _, d in results), len(results))


def _loss_rows(cases: list[Case], yours: list[Outputs], want: list[Outputs],
               limits: list[Bounds], estimated: bool, how: str) -> list[CheckRow]:
    everything = list(zip(yours, want, limits, strict=True))
    rows = []
    for group, label in (("vectors", "the reference vectors"), ("extremes", "extreme batches"),
                         ("random", "random float64 batches")):
        triples = [t for t, c in zip(everything, cases, strict=True) if c.group == group]
        rows.append(_row(f"loss on {label}", "loss", triples))
    rows += [
        _row("per-example losses", "losses", everything),
        _row("rewards = beta * (policy_logps - reference_logps)", "rewards", everything),
        _row(f"gradient wrt policy_logps ({how})", "grad", everything),
    ]
    if estimated:
        rows.append(_row("gradient wrt kl_policy_logps is 0 (z0 detached)", "grad_kl",
                         everything))
    return [r for r in rows if r is not None]


def _concatenated_order(cases: list[Case], yours: list[Outputs], want: list[Outputs],
                        limits: list[Bounds]) -> bool:
    """Whether the per-example arrays come chosen first, then rejected (TRL's torch.cat
    order) rather than in batch order; if so they are put back in batch order, in place."""
    def permuted(case: Case, x: np.ndarray | None) -> np.ndarray | None:
        if x is None:
            return None
        order = np.concatenate([np.flatnonzero(case.desirable), np.flatnonzero(~case.desirable)])
        out = np.empty_like(x)
        out[order] = x
        return out

    def agree(key: str, outputs: list[Outputs]) -> bool:
        results = (_agree(key, y, w, b) for y, w, b in zip(outputs, want, limits, strict=True))
        return all(r is None or r[0] for r in results)

    keys = [k for k in ("losses", "rewards") if any(getattr(y, k) is not None for y in yours)]
    if not keys or all(agree(k, yours) for k in keys):
        return False
    moved = [Outputs(y.loss, permuted(c, y.losses), permuted(c, y.rewards))
             for c, y in zip(cases, yours, strict=True)]
    if not all(agree(k, moved) for k in keys):
        return False
    for y, m in zip(yours, moved, strict=True):
        y.losses, y.rewards = m.losses, m.rewards
    return True


# ------------------------------------------------------------------------------------------
# The diagnosis


def _one_label(case: Case) -> bool:
    return bool(case.desirable.all() or not case.desirable.any())


def _matches(variant: Variant, cases: list[Case], yours: list[Outputs], limits: list[Bounds],
             estimated: bool, nan_one_label: bool = False) -> bool:
    """Whether the user's outputs equal the variant's on every case (values, then gradients).

    With ``nan_one_label`` the variant is combined with a NaN loss on one-label batches.
    """
    checked = []
    for case, y, b in zip(cases, yours, limits, strict=True):
        if nan_one_label and _one_label(case):
            if not np.isnan(y.loss):
                return False
            continue
        loss, losses, rewards = variant.value(case, estimated)
        want = Outputs(loss, losses, rewards)
        if any(r is not None and not r[0] for r in
               (_agree(k, y, want, b) for k in ("loss", "losses", "rewards"))):
            return False
        checked.append((case, y, b))

    def same_gradients(want: Outputs, y: Outputs, b: Bounds) -> bool:
        return not any(r is not None and not r[0] for r in
                       (_agree(k, y, want, b) for k in ("grad", "grad_kl")))

    for case, y, b in checked:  # gradients only for a variant whose values all match
        if same_gradients(variant_outputs(variant, case, estimated, y), y, b):
            continue
        if not (variant.z0_from_policy and same_gradients(
                detached_outputs(variant, case, estimated), y, b)):
            return False
    return True


def _diagnose(cases: list[Case], yours: list[Outputs], limits: list[Bounds],
              estimated: bool) -> list[Variant]:
    mode = "estimated" if estimated else "given"
    catalogue = [v for v in LOSS_VARIANTS if mode in v.modes]
    found = [v for v in catalogue if _matches(v, cases, yours, limits, estimated)]
    if found:
        return found
    nan = next(v for v in catalogue if v.name == "nan_one_label")
    for v in catalogue:  # two mistakes at once: a variant that also gives NaN on one label
        if v is not nan and _matches(v, cases, yours, limits, estimated, nan_one_label=True):
            return [v, nan]
    return []


def _fmt(x: np.ndarray | float | None) -> str:
    if x is None:
        return "-"
    text = np.array2string(np.asarray(x), precision=6, max_line_width=78, separator=", ")
    return text.replace("\n", "\n" + " " * 21)


def _smallest_case(cases: list[Case], yours: list[Outputs], want: list[Outputs],
                   limits: list[Bounds], estimated: bool) -> str:
    """The failing case of the smallest batch, its inputs and both outputs (some case fails)."""
    failing = [i for i, (y, w, b) in enumerate(zip(yours, want, limits, strict=True))
               if any(r is not None and not r[0] for r in
                      (_agree(k, y, w, b) for k in ("loss", "losses", "rewards", "grad",
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
                for j in failing if not _agree("loss", yours[j], want[j], limits[j])[0]]
    if relative and all(r < 1e-5 for r in relative):  # (False for a NaN)
        lines.append("  every loss differs by less than 1e-5 relative: float32 arithmetic "
                     "somewhere? (the inputs are float64)")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# The sequence level


def _check_sequence(fn: Callable, framework: str, seed: int) -> tuple[list[CheckRow], list[str]]:
    """The sequence rows. A row's sum is off by at most C eps sum_t |token_t| (rounding of
    the sum); its gradient by autograd is the mask times the weights exactly, by central
    differences off by the rounding of ``sum_i w_i out_i`` divided by the step 1e-6."""
    cases = sequence_cases(seed)
    rng = np.random.default_rng([20240203, seed])
    unit = ROUNDING * EPSILON
    values, limits, diffs, grad_diffs, grad_ok = [], [], [], [], True
    for case in cases:
        weights = rng.uniform(0.5, 2.0, size=case.token_logps.shape[0])
        got, grad = call_sequence(fn, case, framework, weights)
        size = np.sum(np.abs(case.token_logps), axis=1)
        values.append(got)
        limits.append(unit * size)
        diffs.append(float(np.max(_diff(got, correct_sequence(case)))))
        want_grad = weights[:, None] * case.mask
        grad_limit = unit * (weights[:, None] if framework != "numpy" else
                             np.sum(weights * size) / 1e-6)
        grad_diffs.append(float(np.max(_diff(grad, want_grad))))
        grad_ok &= bool(np.all(_diff(grad, want_grad) <= grad_limit))

    def agrees(want: Callable[[Any], np.ndarray]) -> bool:
        return all(bool(np.all(_diff(v, want(c)) <= limit))
                   for v, c, limit in zip(values, cases, limits, strict=True))

    value_ok = agrees(correct_sequence)
    rows = [CheckRow("sequence_fn: sum of the response tokens' log-probs", value_ok,
                     max(diffs), len(cases)),
            CheckRow("sequence_fn: gradient is the mask", grad_ok, max(grad_diffs), len(cases))]
    found = [] if value_ok else [
        f"{v.name}: {v.sentence} Fix: {v.fix}." for v in SEQUENCE_VARIANTS if agrees(v.value)
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
    timeout: float | None = None,
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
        ``"rewards"`` (B,) (by name, or positions 1 and 2 of a plain tuple), in batch order
        or chosen first then rejected (TRL's ``torch.cat`` order). TRL's own
        ``KTOTrainer.kto_loss(self, policy_chosen_logps, policy_rejected_logps,
        policy_KL_logps, reference_chosen_logps, reference_rejected_logps,
        reference_KL_logps)`` is accepted as it is (then z0 is estimated).
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
    timeout : float, optional
        Seconds one case may take before fn is stopped (default
        :data:`~minikto.tools.check_call.CALL_TIMEOUT_S`, 60 s; POSIX main thread only).

    Returns
    -------
    KTOCheckReport
        ``passed``, ``diagnosis`` (None when passed or no known mistake matches; else each
        mistake with its fix), ``rows``, ``variants`` and ``smallest_failing_case``;
        ``print(report)`` shows the table.

    Raises
    ------
    TypeError
        If fn's signature cannot take the arguments (the expected one is named).
    TimeoutError
        If fn did not return within ``timeout`` on a case.
    Exception
        fn's own exception, when it raised on every case.
    """
    limit = _check_arguments(fn, z0, seed, num_random, sequence_fn, timeout)
    framework = detect_framework(fn, framework)
    trl = is_trl_signature(fn)
    estimated = z0 == "estimated" or trl
    _check_signature(fn, estimated, trl)
    cases = loss_cases(seed, num_random, estimated=estimated)
    want = [correct_outputs(c, estimated) for c in cases]
    limits = [bounds(c, _z0_used(c, estimated), estimated) for c in cases]
    yours, notes, mistakes = _run_user(fn, cases, want, estimated, framework, limit)
    if all(np.isnan(y.loss) for y in yours) and not mistakes:
        mistakes.append("nan_loss")
    if _concatenated_order(cases, yours, want, limits):
        notes.append("per-example losses and rewards came chosen first, then rejected (TRL's "
                     "torch.cat order); compared in that order")
    how = "autograd" if any(y.autograd for y in yours) else "finite differences"
    rows = _loss_rows(cases, yours, want, limits, estimated, how)
    passed = loss_passed = all(r.passed for r in rows) and not mistakes
    found = [] if passed or mistakes else _diagnose(cases, yours, limits, estimated)
    sentences = [f"{m}: {RESULT_MISTAKES[m]}" for m in mistakes]
    sentences += [f"{v.name}: {v.sentence} Fix: {v.fix}." for v in found]
    if sequence_fn is not None:
        seq_rows, seq_found = _check_sequence(sequence_fn, detect_framework(
            sequence_fn, framework), seed)
        rows += seq_rows
        sentences += seq_found
        passed = passed and all(r.passed for r in seq_rows)
    smallest = None
    if not found and not loss_passed and not all(np.isnan(y.loss) for y in yours):
        smallest = _smallest_case(cases, yours, want, limits, estimated)
    name = f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', repr(fn))}"
    if estimated and how != "autograd":
        notes.append("without autograd, whether z0 is detached cannot be seen (use torch or "
                     "jax)")
    return KTOCheckReport(
        passed=passed,
        diagnosis=" ".join(sentences) or None,
        rows=rows,
        smallest_failing_case=smallest,
        function=name,
        settings=f"z0 {'estimated' if estimated else 'given'}"
                 f"{' (TRL kto_loss signature)' if trl else ''}, {framework}, gradients by "
                 f"{how}, seed {seed}",
        variants=mistakes + [v.name for v in found],
        notes=notes,
    )


def _check_arguments(fn: Any, z0: Any, seed: Any, num_random: Any, sequence_fn: Any,
                     timeout: Any) -> float:
    """check_kto's signature, checked; returns the time limit of one case in seconds."""
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
    if timeout is None:
        return check_call.CALL_TIMEOUT_S
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise ValueError(f"timeout: expected a number of seconds > 0; got {timeout!r}")
    return float(timeout)


_GIVEN_SIGNATURE = ("fn(policy_logps, reference_logps, desirable, z0, *, beta, "
                    "desirable_weight, undesirable_weight)")
_ESTIMATED_SIGNATURE = ("fn(policy_logps, reference_logps, desirable, kl_policy_logps, "
                        "kl_reference_logps, *, beta, desirable_weight, undesirable_weight)")


def _check_signature(fn: Callable, estimated: bool, trl: bool) -> None:
    """Refuse a function whose signature cannot take the check's arguments, naming the one
    expected (and TRL's, which is accepted as it is)."""
    try:
        signature = inspect.signature(fn)
    except (TypeError, ValueError):
        return  # (a builtin or C function: its call will tell)
    if trl:
        return
    try:
        signature.bind(*range(5 if estimated else 4), beta=0, desirable_weight=0,
                       undesirable_weight=0)
    except TypeError:
        expected = _ESTIMATED_SIGNATURE if estimated else _GIVEN_SIGNATURE
        other = "--z0 given" if estimated else "--z0 estimated (z0=\"estimated\")"
        raise TypeError(
            f"fn: expected {expected}; got {getattr(fn, '__name__', 'fn')}{signature}. Rename "
            f"or reorder the parameters, or check with {other} if fn takes the other form; "
            "TRL's KTOTrainer.kto_loss(self, policy_chosen_logps, policy_rejected_logps, "
            "policy_KL_logps, reference_chosen_logps, reference_rejected_logps, "
            "reference_KL_logps) is accepted as it is"
        ) from None


def _z0_used(case: Case, estimated: bool) -> float:
    if not estimated:
        return case.z0
    return max(0.0, float(np.mean(case.kl_policy_logps - case.kl_reference_logps)))


def _run_user(fn: Callable, cases: list[Case], want: list[Outputs], estimated: bool,
              framework: str, limit: float) -> tuple[list[Outputs], list[str], list[str]]:
    """The user's outputs on every case; an exception on a case counts as a NaN loss there.

    Returns the outputs, a note on the exceptions, and the result mistakes seen (None or a
    complex number returned, sys.exit called). Re-raises when every case raised an
    exception (a malformed result, a bug: the check could not run), and raises TimeoutError
    when a case took longer than ``limit`` seconds.
    """
    yours, failures, mistakes = [], [], []
    for case, correct in zip(cases, want, strict=True):
        try:
            with time_limit(limit, f"fn on case {case.name!r}"):
                yours.append(call_loss(fn, case, estimated, framework, correct.grad))
            continue
        except CallTimeout as err:
            raise TimeoutError(str(err)) from None
        except ResultMistake as err:
            mistakes.append(err.name)
        except SystemExit:
            mistakes.append("sys_exit")
        except Exception as err:  # noqa: BLE001 - the user's code may raise anything
            failures.append((case, err))
        yours.append(Outputs(float("nan")))
    if len(failures) == len(cases):
        raise failures[0][1]
    mistakes = list(dict.fromkeys(mistakes))
    if not failures:
        return yours, [], mistakes
    case, err = failures[0]
    note = (f"fn raised on {len(failures)} case(s), the loss counted as NaN there; first on "
            f"{case.name!r}: {type(err).__name__}: {err}")
    return yours, [note if len(note) <= 180 else note[:177] + "..."], mistakes
