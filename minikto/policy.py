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

Checked once. :meth:`SoftmaxPolicy.token_batch` checks prompts and responses and flattens
them into a :class:`TokenBatch`; :meth:`~SoftmaxPolicy.batch_logps` and
:meth:`~SoftmaxPolicy.batch_logps_backward` compute the two passes on it without checking
again. :meth:`~SoftmaxPolicy.sequence_logps` and :meth:`~SoftmaxPolicy.sequence_logps_backward`
take raw arrays: they check them into a batch, then call those two. Training checks its data
once, when it is loaded, and takes rows of that batch at every step.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks, _token_checks
from .backend import (
    dtype_name,
    get_namespace,
    log_softmax,
    resolve_dtype,
    softmax,
    to_numpy,
)
from .fast import blocks
from .features import make_features
from .params import FrozenParams, TrainableParams
from .token_batch import PassCache, TokenBatch

__all__ = ["SoftmaxPolicy", "TokenBatch"]


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
        the dict entries. A frozen copy (see :meth:`copy`) refuses such updates.
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
        self.vocab_size = _checks.positive_int(vocab_size, "vocab_size")
        self.num_prompts = _checks.positive_int(num_prompts, "num_prompts")
        self.eos_token = _checks.token_or_none(eos_token, "eos_token", self.vocab_size)
        self.seed = _checks.seed(seed, "seed")
        self.xp = get_namespace(backend)  # refuses what is not a backend, naming the argument
        self.backend = backend if isinstance(backend, str) else backend.__name__
        init_std = _checks.finite_nonnegative(init_std, "init_std")
        self.dtype = resolve_dtype(self.xp, dtype)
        self.frozen = False
        rng = np.random.default_rng(seed)
        self.features = make_features(features, self.vocab_size, self.num_prompts, init_std, rng)
        init = self.features.init_params(rng)
        init["bias"] = np.zeros(self.vocab_size)
        self._set_params({k: self.xp.asarray(v, dtype=self.dtype) for k, v in init.items()})

    # --------------------------------------------------------------------------------------
    # Description

    @property
    def bos_state(self) -> int:
        """The state id standing before the first token (``V``)."""
        return self.vocab_size

    @property
    def dtype_name(self) -> str:
        """``"float32"`` or ``"float64"``."""
        return dtype_name(self.dtype)

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
        prompts = self._ids(prompts, "prompts", self.num_prompts)
        states = self._ids(states, "states", self.vocab_size + 1)
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
            Also return what the backward pass needs (the token probabilities and the
            checked, flattened batch), so that :meth:`sequence_logps_backward` does not
            recompute the forward pass.

        Returns
        -------
        array, shape (B,)  (and the cache when ``return_cache``)

        Notes
        -----
        The arguments are checked into a :class:`TokenBatch` (:meth:`token_batch`), whose
        log-probs :meth:`batch_logps` computes.
        """
        batch = self.token_batch(prompts, responses)
        if not return_cache:
            return self.batch_logps(batch)
        logps, cache = self.batch_logps(batch, return_cache=True)
        return logps, cache._replace(source=(prompts, responses))

    def batch_logps(self, batch: TokenBatch, *, return_cache: bool = False) -> Any:
        """:meth:`sequence_logps` of a batch checked once by :meth:`token_batch`.

        Notes
        -----
        With N = B*T flattened positions: the logits (N, V), their log-softmax, the entry
        of each position's target token, zero at padding, summed over T. A batch whose
        (N, V) work exceeds a memory budget takes the block-wise form of the same pass in
        :mod:`minikto.fast.blocks` (optional reading), which gives the same target
        log-probs (and probabilities, and the feature map's context for the backward).
        """
        xp = self.xp
        self._owns(batch)
        if blocks.pays_off(xp, batch.positions, self.row_bytes):  # a large batch
            target_logp, probs, context = blocks.target_logps(self, batch, keep_probs=return_cache)
        else:
            logits = self._logits(batch.prompts, batch.states)  # (N, V)
            logp = log_softmax(logits, axis=-1)  # (N, V)
            target_logp = xp.take_along_axis(logp, batch.targets[:, None], axis=1)[:, 0]  # (N,)
            probs, context = (xp.exp(logp) if return_cache else None), None
        out = xp.sum(xp.reshape(target_logp * batch.mask, batch.shape), axis=1)  # sum over T
        if return_cache:
            return out, PassCache(batch, probs, context)
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
        The arguments are checked (a cache made from these very arrays holds their checked
        batch), then :meth:`batch_logps_backward` computes the gradients.
        """
        if cache is not None and cache.made_from(prompts, responses):
            batch = cache.batch
        else:
            batch = self.token_batch(prompts, responses)
        grad_logps = _token_checks.upstream_gradient(grad_logps, self, batch.rows)
        return self.batch_logps_backward(batch, grad_logps, cache=cache)

    def batch_logps_backward(
        self, batch: TokenBatch, grad_logps: Any, *, cache: Any = None
    ) -> dict[str, Any]:
        """:meth:`sequence_logps_backward` of a checked batch and a (B,) gradient of its dtype.

        Notes
        -----
        ``d logits[b, t] = grad_logps[b] * mask[b, t] * (onehot(y_bt) - softmax(logits[b, t]))``
        (see the module docstring), then the feature map's backward and
        ``d bias = sum_{b,t} d logits[b, t]`` (the bias is added at every position). A large
        batch takes the block-wise form in :mod:`minikto.fast.blocks`.
        """
        xp = self.xp
        self._owns(batch)
        probs = None
        if cache is not None:
            probs = _token_checks.cache_probs(cache, batch.positions, self.vocab_size)  # (N, V)
        if blocks.pays_off(xp, batch.positions, self.row_bytes):  # a large batch
            context = cache.context if cache is not None and cache.batch is batch else None
            return blocks.sequence_logps_backward(self, batch, grad_logps, probs, context)
        if probs is None:
            probs = softmax(self._logits(batch.prompts, batch.states), axis=-1)  # (N, V)
        weight = (  # (N,): g_b at every real token of response b, 0 at padding
            xp.reshape(grad_logps[:, None] * xp.reshape(batch.mask, batch.shape), (-1,))
        )
        vocab = xp.arange(self.vocab_size, dtype=batch.targets.dtype)
        onehot = xp.astype(batch.targets[:, None] == vocab[None, :], self.dtype)  # (N, V)
        grad_logits = weight[:, None] * (onehot - probs)  # (N, V)
        grads = self.features.backward(xp, self.params, grad_logits, batch.prompts, batch.states)
        grads["bias"] = xp.sum(grad_logits, axis=0)  # the bias is added at every position
        return grads

    # -- the per-token mean (SimPO, ORPO, TRL's IPO): the sum divided by the length -----

    def response_lengths(self, prompts: Any, responses: Any) -> Any:
        """``|y_b|``: the number of real (non-padding) tokens of each response, (B,) floats."""
        return self.batch_lengths(self.token_batch(prompts, responses))

    def mean_token_logps(self, prompts: Any, responses: Any, *, return_cache: bool = False) -> Any:
        """``log pi(y_b | x_b) / |y_b|``: the MEAN of the response tokens' log-probs, (B,).

        The cache (with ``return_cache``) is :meth:`sequence_logps`'s, for
        :meth:`mean_token_logps_backward`.
        """
        logps, cache = self.sequence_logps(prompts, responses, return_cache=True)
        means = logps / self.batch_lengths(cache.batch)
        return (means, cache) if return_cache else means

    def mean_token_logps_backward(
        self, prompts: Any, responses: Any, grad_logps: Any, *, cache: Any = None
    ) -> dict[str, Any]:
        """Gradients of ``sum_b grad_logps[b] * mean_b`` for every parameter.

        ``d mean_b / d log pi(y_b|x_b) = 1 / |y_b|``, so this is the sum's backward pass with
        the upstream gradient divided by the lengths.
        """
        if cache is not None and cache.made_from(prompts, responses):
            batch = cache.batch
        else:
            batch = self.token_batch(prompts, responses)
        grad_logps = _token_checks.upstream_gradient(grad_logps, self, batch.rows)
        grad_sums = grad_logps / self.batch_lengths(batch)
        return self.batch_logps_backward(batch, grad_sums, cache=cache)

    def batch_lengths(self, batch: TokenBatch) -> Any:
        """``|y_b|`` of a checked batch, (B,) in the policy's dtype."""
        return self.xp.sum(self.xp.reshape(batch.mask, batch.shape), axis=1)  # (B,)

    # -- the checked batch of the two passes ---------------------------------------------

    def token_batch(self, prompts: Any, responses: Any) -> TokenBatch:
        """Check a batch once and flatten it to N = B*T positions (see :class:`TokenBatch`).

        Parameters
        ----------
        prompts : int array, shape (B,)
        responses : int array, shape (B, T), padded with -1 after each response's end

        Returns
        -------
        TokenBatch
            What :meth:`batch_logps` and :meth:`batch_logps_backward` take; its rows
            (:meth:`TokenBatch.take`) are checked batches too.
        """
        xp = self.xp
        prompts, responses, padded = _token_checks.token_batch(
            prompts, responses, xp, self.backend, num_prompts=self.num_prompts,
            vocab_size=self.vocab_size, eos_token=self.eos_token,
        )
        rows, length = responses.shape
        targets = responses  # padding -> token 0, masked out below
        if padded:
            targets = xp.where(responses >= 0, responses, xp.zeros_like(responses))
        bos = xp.full((rows, 1), self.bos_state, dtype=responses.dtype)
        states = xp.concat([bos, targets[:, :-1]], axis=1) if length > 1 else bos
        return TokenBatch(
            prompts=xp.reshape(xp.broadcast_to(prompts[:, None], (rows, length)), (-1,)),
            states=xp.reshape(states, (-1,)),
            targets=xp.reshape(targets, (-1,)),
            mask=xp.astype(xp.reshape(responses >= 0, (-1,)), self.dtype),
            shape=(rows, length),
            space=self.response_space,
        )

    @property
    def response_space(self) -> tuple[int, int, int | None, Any]:
        """What a checked batch is checked against: (V, P, end token, dtype)."""
        return (self.vocab_size, self.num_prompts, self.eos_token, self.dtype)

    @property
    def row_bytes(self) -> int:
        """The bytes of one row of V logits."""
        return self.vocab_size * (4 if self.dtype == self.xp.float32 else 8)

    def _owns(self, batch: Any) -> None:
        """Refuse what is not a batch checked for this policy's response space and dtype."""
        if not isinstance(batch, TokenBatch) or batch.space != self.response_space:
            v, p, eos, dtype = self.response_space
            got = type(batch).__name__
            if isinstance(batch, TokenBatch):
                got = f"one checked for {(*batch.space[:3], dtype_name(batch.space[3]))}"
            raise TypeError(
                f"batch: expected a TokenBatch checked by token_batch() of a policy with "
                f"(V, P, eos_token, dtype) = {(v, p, eos, dtype_name(dtype))}; got {got}"
            )

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
        prompts = self._ids(prompts, "prompts", self.num_prompts)
        length = _checks.positive_int(length, "length")
        uniforms = xp.asarray(
            np.random.default_rng(_checks.seed(seed, "seed")).random((length, prompts.shape[0])),
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
        """An independent copy; by default frozen, to serve as a reference policy.

        A frozen copy's :attr:`params` refuse new entries (so an optimizer's ``step`` on them
        raises) and, on NumPy, its arrays are read-only. ``copy(frozen=False)`` gives a
        trainable copy (of a frozen policy too).
        """
        new = object.__new__(SoftmaxPolicy)
        new.__dict__.update(self.__dict__)
        new.frozen = frozen
        new._set_params({k: self.xp.asarray(v, copy=True) for k, v in self.params.items()})
        return new

    def to(self, backend: str, dtype: str | None = None) -> SoftmaxPolicy:
        """A copy on another backend (and optionally dtype), with equal parameter values.

        Without ``dtype`` the copy keeps this policy's dtype; it is frozen when this one is.
        """
        new = self.copy(frozen=self.frozen)
        new.xp = get_namespace(backend)
        new.backend = backend if isinstance(backend, str) else backend.__name__
        new.dtype = resolve_dtype(new.xp, dtype or self.dtype_name)
        new._set_params(
            {k: new.xp.asarray(to_numpy(v), dtype=new.dtype) for k, v in self.params.items()}
        )
        return new

    def _set_params(self, params: dict[str, Any]) -> None:
        """Install ``params``; a frozen policy gets them read-only (see :meth:`copy`)."""
        if not self.frozen:
            self.params = TrainableParams(params)
            return
        for value in params.values():
            if isinstance(value, np.ndarray):  # other backends have no read-only flag
                value.flags.writeable = False
        self.params = FrozenParams(params)

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
        self._set_params({
            name: self.xp.asarray(theta[sl].reshape(self.params[name].shape), dtype=self.dtype)
            for name, sl in self.param_slices().items()
        })

    def flatten_grads(self, grads: dict[str, Any]) -> np.ndarray:
        """A gradient dict as one float64 NumPy vector, laid out as :meth:`get_flat`."""
        return np.concatenate([to_numpy(grads[k]).astype(np.float64).ravel() for k in self.params])

    # --------------------------------------------------------------------------------------
    # Validation (written once in :mod:`minikto._token_checks`)

    def _ids(self, ids: Any, name: str, upper: int) -> Any:
        """Checked (N,) int64 ids of the backend in ``[0, upper)``."""
        return _token_checks.token_ids(ids, name, self.xp, self.backend, upper, ndim=1)[0]
