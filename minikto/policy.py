r"""A tiny autograd-free softmax policy over a toy vocabulary.

The next-token distribution depends only on the prompt id ``x`` and the previous token
(a first-order Markov policy; the begin-of-response state ``BOS = V`` stands before the
first token):

.. math:: \pi(y_t = v \mid x, y_{t-1}) = \mathrm{softmax}_v\bigl(f(x, y_{t-1}) + b\bigr)

where the feature map ``f`` is tabular (``features="onehot"``) or a fixed random embedding of
width d feeding a trainable (d, V) layer (``features=d``); see :mod:`minikto.features`.

Response space. Responses are integer arrays (B, T) padded with ``-1`` after their end.
With ``eos_token=None`` a response is any sequence of exactly T tokens. With an end token,
a response stops at its first ``eos_token`` (1 <= length <= T) or is cut at T tokens; the
probability of a cut response is the product of its T token probabilities, i.e. the mass of
all its continuations, so the probabilities of all responses of length <= T sum to exactly 1
(:mod:`minikto.exact` enumerates them). ``T = 1`` is the single-token (bandit) case.

Forward and backward (the derivation behind ``sequence_logps_backward``):

.. math:: \log\pi(y \mid x) = \sum_{t \le L} \log\mathrm{softmax}(\ell_t)_{y_t}, \qquad
          \frac{\partial \log\mathrm{softmax}(\ell)_{y}}{\partial \ell}
          = \mathrm{onehot}(y) - \mathrm{softmax}(\ell)

so with an upstream gradient ``g_b = dLoss / d log pi(y_b|x_b)`` the gradient of the logits
at every real (non-padding) token is ``g_b (onehot(y_t) - p_t)``; the feature map sends it to
its parameters and the bias gradient is its sum over all tokens.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from .backend import (
    array_namespace,
    column_sums,
    get_namespace,
    is_numpy,
    log_softmax,
    log_softmax_at,
    resolve_dtype,
    rows_per_chunk,
    softmax,
    softmax_grad,
    to_numpy,
)
from .features import DenseFeatures, OneHotFeatures

__all__ = ["SoftmaxPolicy"]


class SoftmaxPolicy:
    """A first-order Markov softmax policy with hand-derived gradients.

    Parameters
    ----------
    vocab_size : int
        V, the number of tokens (ids ``0 .. V-1``).
    num_prompts : int
        P, the number of prompt ids (``0 .. P-1``).
    features : "onehot" or int
        ``"onehot"``: a logit table per prompt (P, V) plus one per previous-token state
        (V + 1, V) plus a bias (V,). An int d: fixed random embeddings of width d and a
        trainable output layer ``weight`` (d, V) plus a bias (V,).
    seed : int
        Seeds the initial parameters (and the fixed embeddings).
    backend : str
        ``"numpy"``, ``"cupy"``, ``"array_api_strict"``... (see :mod:`minikto.backend`).
    dtype : "float64" or "float32"
    eos_token : int or None
        The end-of-response token; None for fixed-length responses.
    init_std : float
        Standard deviation of the initial trainable weights (the bias starts at 0).

    Attributes
    ----------
    params : dict[str, array]
        The live parameter arrays (``xp`` arrays); an optimizer updates them in place of
        the dict entries.
    xp : module
        The array namespace.
    """

    def __init__(
        self,
        vocab_size: int,
        num_prompts: int,
        *,
        features: str | int = "onehot",
        seed: int = 0,
        backend: str = "numpy",
        dtype: str = "float64",
        eos_token: int | None = None,
        init_std: float = 0.5,
    ) -> None:
        self.vocab_size = _positive_int(vocab_size, "vocab_size")
        self.num_prompts = _positive_int(num_prompts, "num_prompts")
        if eos_token is not None:
            if isinstance(eos_token, bool) or not isinstance(eos_token, (int, np.integer)):
                raise TypeError(f"eos_token: expected an int or None; got {eos_token!r}")
            if not 0 <= eos_token < vocab_size:
                raise ValueError(f"eos_token: expected an id in [0, {vocab_size}); got {eos_token}")
            eos_token = int(eos_token)
        self.eos_token = eos_token
        self.seed = _seed(seed, "seed")
        self.xp = get_namespace(backend)  # refuses what is not a backend, naming the argument
        self.backend = backend if isinstance(backend, str) else backend.__name__
        init_std = _finite_nonnegative(init_std, "init_std")
        self.dtype = resolve_dtype(self.xp, dtype)
        self.frozen = False
        rng = np.random.default_rng(seed)
        if isinstance(features, str) and features == "onehot":
            self.features: OneHotFeatures | DenseFeatures = OneHotFeatures(
                self.vocab_size, self.num_prompts, init_std
            )
        elif isinstance(features, (int, np.integer)) and not isinstance(features, bool):
            width = _positive_int(int(features), "features")
            self.features = DenseFeatures(self.vocab_size, self.num_prompts, width, init_std, rng)
        else:
            raise ValueError(
                f"features: expected 'onehot' or a positive int width; got {features!r}"
            )
        init = self.features.init_params(rng)
        init["bias"] = np.zeros(self.vocab_size)
        self.params = {k: self.xp.asarray(v, dtype=self.dtype) for k, v in init.items()}

    # --------------------------------------------------------------------------------------
    # Description

    @property
    def bos_state(self) -> int:
        """The state id standing before the first token (``V``)."""
        return self.vocab_size

    @property
    def dtype_name(self) -> str:
        """``"float32"`` or ``"float64"``."""
        return "float32" if "float32" in str(self.dtype) else "float64"

    @property
    def feature_spec(self) -> str | int:
        """``"onehot"`` or the embedding width d, as passed to the constructor."""
        return "onehot" if self.features.kind == "onehot" else self.features.width

    @property
    def num_parameters(self) -> int:
        """The number of trainable scalars."""
        return sum(int(np.prod(p.shape)) for p in self.params.values())

    def __repr__(self) -> str:
        return (
            f"SoftmaxPolicy(vocab_size={self.vocab_size}, num_prompts={self.num_prompts}, "
            f"features={self.feature_spec!r}, backend={self.backend!r}, "
            f"dtype={self.dtype_name!r}, eos_token={self.eos_token}, "
            f"parameters={self.num_parameters})"
        )

    # --------------------------------------------------------------------------------------
    # Next-token distribution

    def next_token_logits(self, prompts: Any, states: Any) -> Any:
        """Logits (N, V) for N (prompt, state) pairs; a state is a token id or ``V`` (BOS)."""
        prompts = self._ids(prompts, "prompts", self.num_prompts, ndim=1)
        states = self._ids(states, "states", self.vocab_size + 1, ndim=1)
        if prompts.shape != states.shape:
            raise ValueError(
                f"states: expected shape {tuple(prompts.shape)} like prompts; "
                f"got {tuple(states.shape)}"
            )
        return self._logits(prompts, states)

    def next_token_probs(self, prompts: Any, states: Any) -> Any:
        """Exact next-token probabilities (N, V); each row sums to 1."""
        return softmax(self.next_token_logits(prompts, states), axis=-1)

    def next_token_logprobs(self, prompts: Any, states: Any) -> Any:
        """Exact next-token log-probabilities (N, V)."""
        return log_softmax(self.next_token_logits(prompts, states), axis=-1)

    def _logits(self, prompts: Any, states: Any) -> Any:
        return self.features.logits(self.xp, self.params, prompts, states) + self.params["bias"]

    # --------------------------------------------------------------------------------------
    # Sequence log-probabilities and their gradient

    def sequence_logps(self, prompts: Any, responses: Any, *, return_cache: bool = False) -> Any:
        """``log pi(y_b | x_b)``: the sum of the response tokens' log-probs, padding excluded.

        Parameters
        ----------
        prompts : int array, shape (B,)
        responses : int array, shape (B, T), padded with -1 after each response's end
        return_cache : bool
            Also return what the backward pass needs (the token probabilities, and the
            flattened batch with its hidden vectors), so that
            :meth:`sequence_logps_backward` does not recompute the forward pass.

        Returns
        -------
        array, shape (B,)  (and the cache when ``return_cache``)

        Notes
        -----
        With N = B*T flattened positions, the logits of a block of positions are computed,
        turned into the target log-probabilities by :func:`~minikto.backend.log_softmax_at`
        and dropped before the next block: no (N, V) array is kept unless the cache asks
        for the probabilities.
        """
        xp = self.xp
        batch = self._batch(prompts, responses)
        token_logp, probs, context = self._forward(batch, keep_probs=return_cache)
        if batch.mask is not None:
            token_logp = token_logp * batch.mask
        rows, length = batch.shape
        out = token_logp  # T = 1: one token per response
        if length > 1:
            out = xp.sum(xp.reshape(token_logp, (rows, length)), axis=1)
        if return_cache:
            return out, _Cache(batch, probs, context, source=(prompts, responses))
        return out

    def sequence_logps_backward(
        self, prompts: Any, responses: Any, grad_logps: Any, *, cache: Any = None
    ) -> dict[str, Any]:
        """Gradients of ``sum_b grad_logps[b] * log pi(y_b|x_b)`` for every parameter.

        Parameters
        ----------
        prompts : int array, shape (B,)
        responses : int array, shape (B, T)
        grad_logps : array, shape (B,)
            The upstream gradient ``dLoss / d log pi(y_b | x_b)``.
        cache : optional
            The cache returned by ``sequence_logps(..., return_cache=True)`` for the same
            batch; without it the forward pass is recomputed. The cache is only read, so it
            may serve several backward passes.

        Returns
        -------
        dict[str, array]
            Same keys and shapes as :attr:`params`.

        Notes
        -----
        ``d logits[b, t] = grad_logps[b] * mask[b, t] * (onehot(y_bt) - softmax(logits[b, t]))``
        (see the module docstring), then the feature map's backward and
        ``d bias = sum_{b,t} d logits[b, t]``. Both are sums over positions, so they are
        accumulated block of positions by block of positions.
        """
        xp = self.xp
        if cache is not None and cache.serves(prompts, responses):
            batch = cache.batch  # the very arrays of the forward pass: checked there
        else:
            batch = self._batch(prompts, responses)
        rows, length = batch.shape
        if not hasattr(grad_logps, "shape") or tuple(grad_logps.shape) != (rows,):
            raise ValueError(
                f"grad_logps: expected shape ({rows},); "
                f"got {getattr(grad_logps, 'shape', grad_logps)!r}"
            )
        if array_namespace(grad_logps) is not xp:
            raise TypeError(
                f"grad_logps: expected an array of the policy's backend ({self.backend}); "
                f"got {type(grad_logps).__module__}.{type(grad_logps).__name__}"
            )
        if not bool(xp.all(xp.isfinite(grad_logps))):
            bad = int(xp.sum(xp.astype(~xp.isfinite(grad_logps), xp.int64)))
            raise ValueError(f"grad_logps: expected finite values; got {bad} that are not")
        n = rows * length
        if cache is not None:
            if tuple(cache.probs.shape) != (n, self.vocab_size):
                raise ValueError(
                    f"cache: expected the cache of this batch, probs of shape "
                    f"({n}, {self.vocab_size}); got {tuple(cache.probs.shape)}"
                )
            probs = cache.probs
            context = cache.context if cache.batch is batch else None
        else:
            _, probs, context = self._forward(batch, keep_probs=True)
        if context is None:
            context = self.features.context(xp, self.params, batch.prompts, batch.states)
        weight = (  # (N,): g_b at every position of response b, 0 at padding
            xp.reshape(
                xp.broadcast_to(xp.astype(grad_logps, self.dtype)[:, None], (rows, length)), (-1,)
            )
        )
        if batch.mask is not None:
            weight = weight * batch.mask

        # d logits = weight * (onehot(y) - p) for a block of positions at a time; the feature
        # map's backward and the bias (a sum over positions) add up the blocks' contributions.
        step = self._rows_per_block(n, backward=True)
        buffer = None if step >= n else xp.empty((step, self.vocab_size), dtype=self.dtype)
        grads: dict[str, Any] = {}
        bias = None
        for start in range(0, n, step):
            block = slice(start, min(start + step, n))
            out = None if buffer is None else buffer[: block.stop - block.start, :]
            grad_logits = softmax_grad(
                probs[block, :], batch.targets[block], weight[block], out=out
            )
            part = self.features.backward_rows(xp, self.params, grad_logits, context, block)
            for name, value in part.items():  # first block: take it; then add in place
                if name in grads:
                    grads[name] += value
                else:
                    grads[name] = value
            block_bias = column_sums(grad_logits)  # d bias = sum of d logits over positions
            if bias is None:
                bias = block_bias
            else:
                bias += block_bias
        grads["bias"] = bias
        return grads

    def _forward(self, batch: _Batch, *, keep_probs: bool) -> tuple[Any, Any, Any]:
        """Target log-probs (N,), the probabilities (N, V) when ``keep_probs``, the context.

        The N positions are processed in blocks of :meth:`_rows_per_block` rows: logits of
        the block (feature map + bias), then :func:`~minikto.backend.log_softmax_at`, in
        place. With the probabilities kept, each block is computed directly inside the
        (N, V) array that the cache will hold; otherwise one block-sized buffer serves
        every block.
        """
        xp = self.xp
        n = batch.targets.shape[0]
        context = self.features.context(xp, self.params, batch.prompts, batch.states)
        bias = self.params["bias"]
        step = self._rows_per_block(n)
        if step >= n:  # one block: small batches, GPUs and the portable path
            logits = self.features.logits_rows(xp, self.params, context, slice(0, n))
            logits += bias
            picked, probs = log_softmax_at(
                logits, batch.targets, return_probs=keep_probs, overwrite=True
            )
            return picked, probs, context
        probs = xp.empty((n, self.vocab_size), dtype=self.dtype) if keep_probs else None
        buffer = None if keep_probs else xp.empty((step, self.vocab_size), dtype=self.dtype)
        pieces = []
        for start in range(0, n, step):
            block = slice(start, min(start + step, n))
            out = probs[block, :] if keep_probs else buffer[: block.stop - block.start, :]
            logits = self.features.logits_rows(xp, self.params, context, block, out=out)
            logits += bias
            picked, block_probs = log_softmax_at(
                logits, batch.targets[block], return_probs=keep_probs, overwrite=True
            )
            if keep_probs and block_probs is not out:
                probs[block, :] = block_probs
            pieces.append(picked)
        return xp.concat(pieces), probs, context

    def _rows_per_block(self, n: int, *, backward: bool = False) -> int:
        """Positions per block: all of them unless the backend asks for cache-sized blocks.

        The backward pass takes blocks up to four times larger (each block adds one
        ``h.T @ G`` product into the gradient: fewer, larger products), but never more than
        half of the positions: a block buffer as large as the (N, V) cache cannot be
        recycled by the allocator and is mapped afresh, page by page, at every step.
        """
        itemsize = 4 if self.dtype == self.xp.float32 else 8
        step = rows_per_chunk(self.xp, self.vocab_size * itemsize)
        if step is None:
            return n
        return max(step, min(4 * step, n // 2)) if backward else step

    def _batch(self, prompts: Any, responses: Any) -> _Batch:
        """Check a batch and flatten it to N = B*T positions (see :class:`_Batch`)."""
        xp = self.xp
        prompts, responses, padded = self._checked_batch(prompts, responses)
        batch, length = responses.shape
        targets = responses
        if padded:
            targets = xp.where(responses >= 0, responses, xp.zeros_like(responses))
        states = xp.full((batch, 1), self.bos_state, dtype=responses.dtype)
        if length > 1:
            states = xp.concat([states, targets[:, :-1]], axis=1)
        flat_prompts = prompts
        if length > 1:
            flat_prompts = xp.reshape(xp.broadcast_to(prompts[:, None], (batch, length)), (-1,))
        mask = xp.astype(xp.reshape(responses >= 0, (-1,)), self.dtype) if padded else None
        return _Batch(
            prompts=flat_prompts,
            states=xp.reshape(states, (-1,)),
            targets=xp.reshape(targets, (-1,)),
            mask=mask,
            shape=(batch, length),
        )

    def _flatten(self, prompts: Any, responses: Any) -> tuple[Any, Any, Any, Any]:
        """Flat (B*T,) prompt ids, previous-token states, targets (padding -> 0) and mask."""
        batch = self._batch(prompts, responses)
        mask = batch.mask
        if mask is None:
            mask = self.xp.ones(batch.targets.shape, dtype=self.dtype)
        return batch.prompts, batch.states, batch.targets, mask

    # --------------------------------------------------------------------------------------
    # Sampling, copies, flat parameter vectors

    def sample(self, prompts: Any, length: int, seed: int | None = None) -> Any:
        """Sample one response per prompt by inverse-CDF sampling.

        Parameters
        ----------
        prompts : int array, shape (B,)
        length : int
            T, the maximum response length.
        seed : int, optional
            Seeds a NumPy generator for the uniforms (the same draws on every backend).

        Returns
        -------
        int array, shape (B, T): -1 after an end token.
        """
        xp = self.xp
        prompts = self._ids(prompts, "prompts", self.num_prompts, ndim=1)
        length = _positive_int(length, "length")
        uniforms = xp.asarray(
            np.random.default_rng(_seed(seed, "seed")).random((length, prompts.shape[0])),
            dtype=self.dtype,
        )
        state = xp.full(prompts.shape, self.bos_state, dtype=prompts.dtype)
        ended = xp.zeros(prompts.shape, dtype=xp.bool)
        columns = []
        for t in range(length):
            cdf = xp.cumulative_sum(softmax(self._logits(prompts, state), axis=-1), axis=1)
            token = xp.sum(xp.astype(cdf < uniforms[t, :][:, None], prompts.dtype), axis=1)
            token = xp.minimum(token, xp.full_like(token, self.vocab_size - 1))
            columns.append(xp.where(ended, xp.full_like(token, -1), token))
            if self.eos_token is not None:
                ended = ended | (token == self.eos_token)
            state = token
        return xp.stack(columns, axis=1)

    def copy(self, *, frozen: bool = True) -> SoftmaxPolicy:
        """An independent copy (by default frozen: optimizers refuse to update it)."""
        new = object.__new__(SoftmaxPolicy)
        new.__dict__.update(self.__dict__)
        new.params = {k: self.xp.asarray(v, copy=True) for k, v in self.params.items()}
        new.frozen = frozen
        return new

    def to(self, backend: str, dtype: str | None = None) -> SoftmaxPolicy:
        """A copy on another backend (and optionally dtype), with equal parameter values."""
        new = self.copy(frozen=self.frozen)
        new.backend = backend
        new.xp = get_namespace(backend)
        new.dtype = resolve_dtype(new.xp, dtype or str(self.dtype).rsplit(".", 1)[-1])
        new.params = {
            k: new.xp.asarray(to_numpy(v), dtype=new.dtype) for k, v in self.params.items()
        }
        return new

    def param_slices(self) -> dict[str, slice]:
        """Where each parameter block lies in the flat vector of :meth:`get_flat`."""
        out, start = {}, 0
        for name, value in self.params.items():
            size = int(np.prod(value.shape))
            out[name] = slice(start, start + size)
            start += size
        return out

    def get_flat(self) -> np.ndarray:
        """All parameters as one float64 NumPy vector (in :attr:`params` order)."""
        return np.concatenate(
            [to_numpy(v).astype(np.float64).ravel() for v in self.params.values()]
        )

    def set_flat(self, theta: Any) -> None:
        """Set all parameters from a flat vector laid out as :meth:`get_flat`."""
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (self.num_parameters,):
            raise ValueError(f"theta: expected shape ({self.num_parameters},); got {theta.shape}")
        for name, sl in self.param_slices().items():
            shape = self.params[name].shape
            self.params[name] = self.xp.asarray(theta[sl].reshape(shape), dtype=self.dtype)

    def flatten_grads(self, grads: dict[str, Any]) -> np.ndarray:
        """A gradient dict as one float64 NumPy vector, laid out as :meth:`get_flat`."""
        return np.concatenate([to_numpy(grads[k]).astype(np.float64).ravel() for k in self.params])

    # --------------------------------------------------------------------------------------
    # Validation

    def _ids(self, ids: Any, name: str, upper: int, *, ndim: int) -> Any:
        return self._ids_and_min(ids, name, upper, ndim=ndim)[0]

    def _ids_and_min(self, ids: Any, name: str, upper: int, *, ndim: int) -> tuple[Any, int]:
        """Checked int64 ids of the backend, and their smallest value (-1: padding)."""
        xp = self.xp
        native = type(ids) is np.ndarray and is_numpy(xp)  # already an array of the backend
        if native:
            pass
        elif isinstance(ids, (list, tuple, np.ndarray, np.generic)):
            ids = xp.asarray(np.asarray(ids))
        elif not hasattr(ids, "dtype"):
            raise TypeError(f"{name}: expected an integer array; got {type(ids).__name__}")
        elif array_namespace(ids) is not xp:
            raise TypeError(
                f"{name}: expected an array of the policy's backend ({self.backend}); "
                f"got {type(ids).__module__}.{type(ids).__name__}"
            )
        if ids.ndim != ndim:
            raise ValueError(f"{name}: expected a {ndim}-d array; got shape {tuple(ids.shape)}")
        if ids.shape[0] == 0:
            raise ValueError(f"{name}: expected a non-empty batch; got shape {tuple(ids.shape)}")
        if any(size == 0 for size in ids.shape):  # (B, 0): no ids to check; refused later
            return ids, 0
        integral = ids.dtype.kind in "iu" if native else xp.isdtype(ids.dtype, "integral")
        if not integral:
            raise TypeError(f"{name}: expected integer ids; got dtype {ids.dtype}")
        if ids.dtype != xp.int64:
            ids = xp.astype(ids, xp.int64)
            native = False
        low, high = (-1 if name == "responses" else 0), upper
        if native:  # the same reductions, without the namespace's wrappers
            smallest, largest = int(ids.min()), int(ids.max())
        else:
            smallest, largest = int(xp.min(ids)), int(xp.max(ids))
        if smallest < low or largest >= high:
            bad = smallest if smallest < low else largest
            extra = " (or -1 for padding)" if name == "responses" else ""
            raise ValueError(f"{name}: expected ids in [0, {high}){extra}; got {bad}")
        return ids, smallest

    def _check_batch(self, prompts: Any, responses: Any) -> tuple[Any, Any]:
        """The checked (B,) prompts and (B, T) responses as int64 arrays of the backend."""
        prompts, responses, _ = self._checked_batch(prompts, responses)
        return prompts, responses

    def _checked_batch(self, prompts: Any, responses: Any) -> tuple[Any, Any, bool]:
        """As :meth:`_check_batch`, and whether any response is padded."""
        xp = self.xp
        prompts = self._ids(prompts, "prompts", self.num_prompts, ndim=1)
        responses, smallest = self._ids_and_min(responses, "responses", self.vocab_size, ndim=2)
        padded = smallest < 0
        if responses.shape[0] != prompts.shape[0]:
            raise ValueError(
                f"responses: expected {prompts.shape[0]} rows, one per prompt; "
                f"got shape {tuple(responses.shape)}"
            )
        if responses.shape[1] == 0:
            raise ValueError("responses: expected at least one position (T >= 1); got T = 0")
        if self.eos_token is None and not padded:
            return prompts, responses, padded  # no padding, no end token: nothing to check
        pad = responses < 0
        if bool(xp.any(pad[:, 0])):
            row = int(xp.argmax(xp.astype(pad[:, 0], xp.int8)))
            raise ValueError(
                f"responses: expected at least one token per response; row {row} is empty"
            )
        bad = pad[:, :-1] & ~pad[:, 1:]
        if bool(xp.any(bad)):
            row = int(xp.argmax(xp.astype(xp.any(bad, axis=1), xp.int8)))
            raise ValueError(
                f"responses: expected -1 padding only after the last token; row {row} has a "
                "token after padding"
            )
        if self.eos_token is not None:
            is_eos = xp.astype(responses == self.eos_token, xp.int64)
            after = (xp.cumulative_sum(is_eos, axis=1) - is_eos) > 0
            if bool(xp.any(after & ~pad)):
                row = int(xp.argmax(xp.astype(xp.any(after & ~pad, axis=1), xp.int8)))
                raise ValueError(
                    f"responses: expected nothing but -1 after the end token {self.eos_token}; "
                    f"row {row} continues after it"
                )
        return prompts, responses, padded


class _Batch(NamedTuple):
    """A checked batch flattened to N = B*T positions (row-major: position b*T + t)."""

    prompts: Any  #: (N,) the prompt id of each position
    states: Any  #: (N,) the previous token, or BOS = V at t = 0
    targets: Any  #: (N,) the token to score (0 at padding)
    mask: Any  #: (N,) 1.0 at real tokens, 0.0 at padding; None when nothing is padded
    shape: tuple[int, int]  #: (B, T)


class _Cache:
    """What the backward pass reuses from the forward pass.

    The token probabilities (N, V), the flattened batch and the feature map's context (the
    hidden vectors of the embeddings), and the two arrays the forward pass was called with:
    a backward pass called with those very arrays skips checking and flattening them again.
    """

    def __init__(self, batch: _Batch, probs: Any, context: Any, source: tuple) -> None:
        self.batch = batch
        self.probs = probs  # (N, V)
        self.context = context
        self._source = source

    def serves(self, prompts: Any, responses: Any) -> bool:
        """True when called with the same array objects as the forward pass."""
        return prompts is self._source[0] and responses is self._source[1]


def _seed(value: Any, name: str) -> int | None:
    """A seed for ``np.random.default_rng``: None or an int >= 0."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 0:
        raise (ValueError if isinstance(value, (int, np.integer)) else TypeError)(
            f"{name}: expected None or an int >= 0; got {value!r}"
        )
    return int(value)


def _finite_nonnegative(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name}: expected a finite number >= 0; got {value!r}")
    if not np.isfinite(value) or value < 0:
        raise ValueError(f"{name}: expected a finite number >= 0; got {value!r}")
    return float(value)


def _positive_int(value: Any, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name}: expected a positive int; got {value!r}")
    if value < 1:
        raise ValueError(f"{name}: expected a positive int; got {value}")
    return int(value)
