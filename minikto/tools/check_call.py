"""Calling a user's KTO function in its own framework (NumPy, PyTorch or JAX) and back.

minikto's cases are float64 NumPy arrays. They are converted to the framework the user's
code uses, detected from the names its module imports (``torch``, ``jax``) or given as
``framework=``. minikto never imports PyTorch or JAX: it takes the module the user's code has
already loaded (:func:`_loaded`), so neither is a dependency and minikto's own math stays
autograd-free. The user's framework's autograd (``loss.backward()``, ``jax.grad``) is used
only to read the gradient of the user's own function, which is how a detached z0 can be
told from one that is not; for NumPy functions gradients come from central finite
differences.
"""

from __future__ import annotations

import inspect
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import ModuleType, SimpleNamespace
from typing import Any

import numpy as np

from .check_cases import Case, SequenceCase
from .check_variants import Outputs, fd_grad, fd_step

__all__ = [
    "CALL_TIMEOUT_S",
    "FRAMEWORKS",
    "TRL_PARAMETERS",
    "CallTimeout",
    "ResultMistake",
    "call_loss",
    "call_sequence",
    "detect_framework",
    "is_trl_signature",
    "split_result",
    "time_limit",
]

#: The frameworks a user's function may use.
FRAMEWORKS = ("numpy", "torch", "jax")
#: Seconds one case (the user's calls and their gradient) may take before it is stopped.
CALL_TIMEOUT_S = 60.0
#: The parameters of TRL's ``KTOTrainer.kto_loss`` (TRL 0.19), after ``self``.
TRL_PARAMETERS = ("policy_chosen_logps", "policy_rejected_logps", "policy_KL_logps",
                  "reference_chosen_logps", "reference_rejected_logps", "reference_KL_logps")


class ResultMistake(Exception):
    """The user's function returned (or did) something that is a known mistake in itself:
    ``name`` is a key of :data:`~minikto.tools.check_variants.RESULT_MISTAKES`."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name


class CallTimeout(BaseException):
    """The user's function did not return in time (a BaseException, so that the user's own
    ``except Exception`` cannot swallow it)."""


@contextmanager
def time_limit(seconds: float, what: str) -> Iterator[None]:
    """Stop the block after ``seconds`` with :class:`CallTimeout` (SIGALRM: on POSIX, in the
    main thread; elsewhere the block runs without a limit)."""
    main = threading.current_thread() is threading.main_thread()
    if not hasattr(signal, "setitimer") or not main:
        yield
        return

    def stop(signum: int, frame: Any) -> None:
        raise CallTimeout(f"{what} did not return within {seconds:g} s and was stopped")

    previous = signal.signal(signal.SIGALRM, stop)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def is_trl_signature(fn: Callable) -> bool:
    """Whether ``fn`` takes TRL's ``kto_loss`` arguments (after ``self``, if unbound)."""
    try:
        names = [n for n in inspect.signature(fn).parameters if n != "self"]
    except (TypeError, ValueError):
        return False
    return tuple(names[:6]) == TRL_PARAMETERS


def detect_framework(fn: Callable, framework: str | None = None) -> str:
    """``framework`` if given, else "torch" or "jax" when the function's module uses them."""
    if framework is not None:
        if framework not in FRAMEWORKS:
            raise ValueError(f"framework: expected one of {FRAMEWORKS}; got {framework!r}")
        return framework
    names = dict(getattr(fn, "__globals__", {}))
    module = sys.modules.get(getattr(fn, "__module__", None) or "")
    names.update(vars(module) if module is not None else {})
    roots = set()
    for value in names.values():  # imported modules, and names imported from modules
        origin = value.__name__ if isinstance(value, ModuleType) else getattr(
            value, "__module__", None)
        if isinstance(origin, str):
            roots.add(origin.split(".")[0])
    for candidate in ("torch", "jax"):
        if candidate in roots:
            return candidate
    return "numpy"


# ------------------------------------------------------------------------------------------
# Converting


def _loaded(name: str) -> ModuleType:
    """The framework module the user's code has already imported (minikto imports none)."""
    module = sys.modules.get(name)
    if module is None:
        raise ValueError(
            f"framework: expected the user's code to have imported {name!r} (minikto uses the "
            f"framework your function runs on and never imports it itself); {name!r} is not "
            "loaded"
        )
    return module


def _to_user(x: np.ndarray | float, framework: str, grad: bool = False) -> Any:
    if framework == "torch":
        torch = _loaded("torch")
        return torch.tensor(x, dtype=torch.bool if np.asarray(x).dtype == bool else
                            torch.float64, requires_grad=grad)
    if framework == "jax":  # pragma: no cover - test_check_jax.py, where JAX is installed
        jax = _loaded("jax")
        jax.config.update("jax_enable_x64", True)
        return jax.numpy.asarray(x)
    return np.array(x)


def _to_numpy(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu()
    return np.asarray(x, dtype=np.float64)


def split_result(result: Any, batch: int) -> tuple[Any, Any, Any]:
    """``(loss, losses, rewards)`` from a scalar, a (Named)tuple or a dict."""
    if isinstance(result, dict):
        if "loss" not in result:
            raise TypeError(
                f"fn: expected a dict with a 'loss' key; got the keys {sorted(result)}"
            )
        parts = (result["loss"], result.get("losses"), result.get("rewards"))
    elif isinstance(result, tuple) and hasattr(result, "_fields"):
        names = result._fields
        parts = (result.loss if "loss" in names else result[0],
                 result.losses if "losses" in names else None,
                 result.rewards if "rewards" in names else None)
    elif isinstance(result, (tuple, list)):
        parts = tuple(result[i] if i < len(result) else None for i in range(3))
    else:
        parts = (result, None, None)
    loss, losses, rewards = parts
    if loss is None:
        raise ResultMistake("returns_none")
    if isinstance(loss, complex) or "complex" in str(getattr(loss, "dtype", "")):
        raise ResultMistake("complex_loss")
    numeric = hasattr(loss, "shape") or isinstance(loss, (int, float, np.number))
    if not numeric or tuple(getattr(loss, "shape", ())) != () or isinstance(loss, bool):
        raise TypeError(
            "fn: expected the loss (a scalar) as the result, its first element or its 'loss' "
            f"key; got {type(loss).__name__}"
            + (f" of shape {tuple(loss.shape)}" if hasattr(loss, "shape") else f" {loss!r:.40}")
        )
    for name, x in (("losses", losses), ("rewards", rewards)):
        if x is not None and tuple(getattr(x, "shape", ())) != (batch,):
            raise ValueError(
                f"fn: expected {name} of shape ({batch},); got "
                f"{type(x).__name__} of shape {tuple(getattr(x, 'shape', ()))}"
            )
    return loss, losses, rewards


# ------------------------------------------------------------------------------------------
# The loss


def _call(fn: Callable, case: Case, estimated: bool, framework: str, grad: bool) -> tuple:
    policy = _to_user(case.policy_logps, framework, grad)
    kl_policy = _to_user(case.kl_policy_logps, framework, grad)
    reference = _to_user(case.reference_logps, framework)
    if is_trl_signature(fn):
        return _call_trl(fn, case, framework, policy, reference, kl_policy), policy, kl_policy
    args = [policy, reference, _to_user(case.desirable, framework)]
    if estimated:
        args += [kl_policy, _to_user(case.kl_reference_logps, framework)]
    else:
        args.append(_to_user(np.float64(case.z0), framework))
    result = fn(*args, beta=case.beta, desirable_weight=case.desirable_weight,
                undesirable_weight=case.undesirable_weight)
    return split_result(result, case.batch), policy, kl_policy


def _call_trl(fn: Callable, case: Case, framework: str, policy: Any, reference: Any,
              kl_policy: Any) -> tuple[Any, Any, Any]:
    """TRL's ``kto_loss(self, policy_chosen_logps, ...)``: the batch split by label, the
    per-example losses and rewards (returned chosen first, then rejected: TRL's
    ``torch.cat`` order) put back in batch order, the loss their ``nanmean`` as TRL's
    trainer takes it."""
    chosen, rejected = np.flatnonzero(case.desirable), np.flatnonzero(~case.desirable)

    def take(x: Any, mask: np.ndarray) -> Any:  # x[mask], the mask in x's framework
        return x[_to_user(mask, framework)] if framework == "torch" else x[mask]

    args = [take(policy, case.desirable), take(policy, ~case.desirable), kl_policy,
            take(reference, case.desirable), take(reference, ~case.desirable),
            _to_user(case.kl_reference_logps, framework)]
    if "self" in inspect.signature(fn).parameters:
        accelerator = SimpleNamespace(gather_for_metrics=lambda x: x, device="cpu")
        args.insert(0, SimpleNamespace(
            beta=case.beta, desirable_weight=case.desirable_weight,
            undesirable_weight=case.undesirable_weight, loss_type="kto", calculate_KL=True,
            accelerator=accelerator))
    losses, chosen_rewards, rejected_rewards = fn(*args)[:3]
    order = np.concatenate([chosen, rejected])
    batch = np.empty(case.batch, dtype=np.int64)
    batch[order] = np.arange(case.batch)  # position in the concatenation of each example

    def in_batch_order(x: Any) -> np.ndarray:
        return _to_numpy(x)[batch]

    rewards = np.concatenate([_to_numpy(chosen_rewards).reshape(-1),
                              _to_numpy(rejected_rewards).reshape(-1)])[batch]
    loss = losses.nanmean() if framework == "torch" else (
        _loaded("jax").numpy.nanmean(losses) if framework == "jax" else np.nanmean(losses))
    return loss, in_batch_order(losses), rewards


def _value(fn: Callable, estimated: bool, framework: str) -> Callable[[Case], float]:
    return lambda case: float(_to_numpy(_call(fn, case, estimated, framework, False)[0][0]))


def call_loss(fn: Callable, case: Case, estimated: bool, framework: str,
              expected_grad: np.ndarray | None = None) -> Outputs:
    """The user's outputs on one case, with gradients (autograd or finite differences).

    Finite differences come with their error bound (``grad_bound``), measured against
    ``expected_grad`` (:func:`~minikto.tools.check_variants.fd_grad`). ``grad_kl`` is left
    None when it comes from finite differences: without autograd a function cannot say
    whether it detaches z0.
    """
    if framework == "jax":  # pragma: no cover - test_check_jax.py, where JAX is installed
        return _call_jax(fn, case, estimated)
    (loss, losses, rewards), policy, kl_policy = _call(
        fn, case, estimated, framework, framework == "torch"
    )
    out = Outputs(float(_to_numpy(loss)),
                  None if losses is None else _to_numpy(losses),
                  None if rewards is None else _to_numpy(rewards))
    if framework == "torch" and getattr(loss, "requires_grad", False):
        loss.backward()
        out.grad = _grad_or_zeros(policy)
        out.grad_kl = _grad_or_zeros(kl_policy) if estimated else None
        out.autograd = True
    elif np.isfinite(out.loss):
        out.grad, out.grad_bound = fd_grad(_value(fn, estimated, framework), case,
                                           "policy_logps", fd_step(case), expected_grad)
    return out


def _grad_or_zeros(x: Any) -> np.ndarray:
    return np.zeros(tuple(x.shape)) if x.grad is None else _to_numpy(x.grad)


def _call_jax(fn: Callable, case: Case, estimated: bool) -> Outputs:  # pragma: no cover
    jax = _loaded("jax")
    (loss, losses, rewards), _, _ = _call(fn, case, estimated, "jax", False)

    def scalar(policy: Any, kl_policy: Any) -> Any:
        c = case.replace(policy_logps=policy, kl_policy_logps=kl_policy)
        return _call(fn, c, estimated, "jax", False)[0][0]

    grads = jax.grad(scalar, argnums=(0, 1))(
        jax.numpy.asarray(case.policy_logps), jax.numpy.asarray(case.kl_policy_logps)
    )
    return Outputs(float(loss), None if losses is None else _to_numpy(losses),
                   None if rewards is None else _to_numpy(rewards),
                   _to_numpy(grads[0]), _to_numpy(grads[1]) if estimated else None, True)


# ------------------------------------------------------------------------------------------
# The sequence level


def call_sequence(
    fn: Callable, case: SequenceCase, framework: str, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """The user's sequence log-probs (N,) and the gradient of ``sum(weights * out)`` (N, T)."""
    rows = case.token_logps.shape[0]

    def run(tokens: Any) -> Any:
        out = fn(tokens, _to_user(case.mask, framework))
        if tuple(getattr(out, "shape", ())) != (rows,):
            raise ValueError(
                f"sequence_fn: expected sequence log-probs of shape ({rows},); got "
                f"{type(out).__name__} of shape {tuple(getattr(out, 'shape', ()))}"
            )
        return out

    if framework == "torch":
        tokens = _to_user(case.token_logps, framework, grad=True)
        out = run(tokens)
        if out.requires_grad:
            (out * _to_user(weights, framework)).sum().backward()
            return _to_numpy(out), _grad_or_zeros(tokens)
        return _to_numpy(out), np.zeros_like(case.token_logps)
    if framework == "jax":  # pragma: no cover - test_check_jax.py, where JAX is installed
        jax = _loaded("jax")

        def weighted(t: Any) -> Any:
            return (run(t) * jax.numpy.asarray(weights)).sum()

        tokens = _to_user(case.token_logps, framework)
        return _to_numpy(run(tokens)), _to_numpy(jax.grad(weighted)(tokens))
    values = _to_numpy(run(np.array(case.token_logps)))
    flat = case.token_logps.reshape(-1)
    grad = np.empty_like(flat)
    for i in range(flat.shape[0]):  # central differences of a (nearly) linear function
        up, down = flat.copy(), flat.copy()
        up[i] += 1e-6
        down[i] -= 1e-6
        grad[i] = (np.sum(weights * _to_numpy(run(up.reshape(case.token_logps.shape))))
                   - np.sum(weights * _to_numpy(run(down.reshape(case.token_logps.shape))))
                   ) / 2e-6
    return values, grad.reshape(case.token_logps.shape)
