r"""Feature maps: how a (prompt, previous token) state becomes next-token logits.

A :class:`~minikto.policy.SoftmaxPolicy` has one code path; its feature map decides which
parameters produce the logits (before the shared bias) and sends their gradient back.
Both maps expose the same methods:

- ``init_params(rng)`` -> dict of NumPy arrays (the trainable parameters, without the bias);
- ``logits(params, prompts, states)`` -> (N, V) logits for N (prompt, state) pairs;
- ``backward(params, grad_logits, prompts, states)`` -> dict of gradients, same keys.

(:mod:`minikto.fast.blocks` computes the same by blocks of rows for large batches.)

A *state* is the previous token id in ``[0, V)`` or the begin-of-response state ``V``.

``OneHotFeatures`` (tabular):
    ``logits = prompt[x] + prev[s]``; gathering rows is the forward pass, so the backward is
    a scatter-add: ``d prompt[k] = sum over n with x_n = k of grad_logits[n]``.

``DenseFeatures`` (width d):
    fixed random embeddings ``h = E_prompt[x] + E_state[s]`` (not trained) feed a trainable
    output layer: ``logits = h @ weight``; backward ``d weight = h.T @ grad_logits``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from . import _checks
from ._brief import brief
from .backend import scatter_add


class OneHotFeatures:
    """Tabular logits: one row of V logits per prompt plus one per previous-token state."""

    kind = "onehot"

    def __init__(self, vocab_size: int, num_prompts: int, init_std: float) -> None:
        self.vocab_size = vocab_size
        self.num_prompts = num_prompts
        self.init_std = init_std

    def init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        v, p = self.vocab_size, self.num_prompts
        return {
            "prompt": self.init_std * rng.standard_normal((p, v)),  # (P, V)
            "prev": self.init_std * rng.standard_normal((v + 1, v)),  # (V + 1, V): BOS is row V
        }

    def logits(self, xp: Any, params: dict, prompts: Any, states: Any) -> Any:
        """(N, V) = prompt[prompts] + prev[states]."""
        return xp.take(params["prompt"], prompts, axis=0) + xp.take(params["prev"], states, axis=0)

    def backward(self, xp: Any, params: dict, grad_logits: Any, prompts: Any, states: Any) -> dict:
        """Scatter-add each row of grad_logits into the rows it was gathered from."""
        return {
            "prompt": scatter_add(grad_logits, prompts, self.num_prompts),
            "prev": scatter_add(grad_logits, states, self.vocab_size + 1),
        }


class DenseFeatures:
    """Fixed random embeddings of width d and a trainable (d, V) output layer."""

    kind = "dense"

    def __init__(
        self,
        vocab_size: int,
        num_prompts: int,
        width: int,
        init_std: float,
        rng: np.random.Generator,
    ) -> None:
        self.vocab_size = vocab_size
        self.num_prompts = num_prompts
        self.width = width
        self.init_std = init_std
        scale = 1.0 / np.sqrt(2.0 * width)  # so that h = E_p[x] + E_s[s] has E|h|^2 = 1
        self.prompt_embedding = scale * rng.standard_normal((num_prompts, width))  # (P, d)
        self.state_embedding = scale * rng.standard_normal((vocab_size + 1, width))  # (V+1, d)
        self._tables_on_backend: dict[Any, tuple[Any, Any]] = {}

    def init_params(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        return {"weight": self.init_std * rng.standard_normal((self.width, self.vocab_size))}

    def embeddings(self, xp: Any, dtype: Any) -> tuple[Any, Any]:
        """The fixed embedding tables moved to ``xp`` once (cached per namespace and dtype)."""
        key = (xp.__name__, str(dtype))
        if key not in self._tables_on_backend:
            self._tables_on_backend[key] = (
                xp.asarray(self.prompt_embedding, dtype=dtype),
                xp.asarray(self.state_embedding, dtype=dtype),
            )
        return self._tables_on_backend[key]

    def hidden(self, xp: Any, params: dict, prompts: Any, states: Any) -> Any:
        """(N, d) = E_prompt[prompts] + E_state[states]."""
        e_prompt, e_state = self.embeddings(xp, params["weight"].dtype)
        return xp.take(e_prompt, prompts, axis=0) + xp.take(e_state, states, axis=0)

    def logits(self, xp: Any, params: dict, prompts: Any, states: Any) -> Any:
        """(N, V) = hidden @ weight."""
        return self.hidden(xp, params, prompts, states) @ params["weight"]

    def backward(self, xp: Any, params: dict, grad_logits: Any, prompts: Any, states: Any) -> dict:
        """d weight = hidden.T @ grad_logits, shape (d, V)."""
        return {"weight": self.hidden(xp, params, prompts, states).T @ grad_logits}


def make_features(
    spec: Any, vocab_size: int, num_prompts: int, init_std: float, rng: np.random.Generator
) -> OneHotFeatures | DenseFeatures:
    """The feature map named by ``spec``: ``"onehot"`` or a positive int width d."""
    if isinstance(spec, str) and spec == "onehot":
        return OneHotFeatures(vocab_size, num_prompts, init_std)
    if isinstance(spec, (int, np.integer)) and not isinstance(spec, bool):
        width = _checks.positive_int(int(spec), "features")
        return DenseFeatures(vocab_size, num_prompts, width, init_std, rng)
    raise ValueError(f"features: expected 'onehot' or a positive int width; got {brief(spec)}")
