r"""A word-level toy alignment task whose true utility is known.

Real alignment data comes from people who say which answers they like; nobody can tell how
good a policy *really* is. Here the judge is a formula, so every experiment can be scored
exactly: a policy's expected utility :math:`\mathbb{E}_{y \sim \pi(\cdot|x)}[u(x, y)]` is a sum
over the few hundred responses of each prompt.

The default task (:func:`default_task`)
---------------------------------------
- Vocabulary (token id = position): ``hello thanks great tasty food friend sorry late please
  awful whatever .`` (V = 12). The word ``.`` is the end token: a response stops at its first
  ``.``, so responses read as text, ``"hello friend ."``.
- Prompts (P = 5): ``praise the food``, ``complain politely about the delay``, ``thank a
  colleague``, ``greet a friend``, ``apologise for the delay``.
- Responses have at most T = 3 tokens: a phrase of up to two words and its ``.``, or three
  words cut at T (a reply that never ends). The padded form is an int array of width T with
  ``-1`` after the end, e.g. ``[0, 5, 11]`` or ``[11, -1, -1]``.

The hidden utility
------------------
Each prompt wants a tone: a table ``score[x, w]`` gives every word +1 (the word the request
asks for), +0.5 (a helpful word), -0.5 or -1 (off-tone, rude or dismissive), or 0 (neutral).
For a prompt x and a response y with content words :math:`w_1 \dots w_k` (the ``.`` excluded),

.. math:: u(x, y) = \mathrm{clip}\Bigl(\sum_{\text{distinct } w} \mathrm{score}[x, w]
          - 0.5\,n_{\text{repeat}} - 1.0\,[\text{no end}] - 0.5\,[k = 0],\; -2,\; 2\Bigr)

- a word counts once; every repetition costs 0.5 (``"great great ."``);
- a reply that is cut at T without its ``.`` costs 1.0 (it rambles);
- the empty reply ``"."`` costs 0.5 (it says nothing);
- the clip keeps a few very bad rambling replies from dominating averages.

The best replies score 1.5 (``"hello friend ."`` for *greet a friend*, ``"great tasty ."``
for *praise the food*); the utility is blind to word order.

The base policy
---------------
:meth:`ToyTask.base_policy` is the model before alignment (the reference ``pi_ref``): a
:class:`~minikto.policy.SoftmaxPolicy` with hand-set logits. It knows the *topic* of each
request but not the wanted *tone* (it likes ``awful`` when asked about food and ``whatever``
everywhere), and bigram preferences make it fluent (``great food``, ``hello friend``, a ``.``
after a noun). It therefore puts substantial mass on poor or rambling replies: its expected
utility is far below 1.5 and KTO has room to improve (``tests/test_toy.py`` checks this).

:func:`bandit_task` is the one-token version (T = 1, no end token): a response is one word
and ``u(x, y) = score[x, y]``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from .._brief import brief
from ..backend import to_numpy
from ..policy import SoftmaxPolicy
from .responses import _describe, check_responses

__all__ = ["ToyTask", "bandit_task", "default_task"]


@dataclass(frozen=True)
class ToyTask:
    """A toy task: a vocabulary, prompts, a hidden utility and a base policy.

    Tables are stored as tuples of rows so the task is immutable; :attr:`score_table` gives
    the hidden scores as a NumPy array, :meth:`base_policy` turns the base tables into a
    policy. Build one with :func:`default_task` or :func:`bandit_task`.
    """

    name: str  #: a short label, shown in plots and reports
    vocab: tuple[str, ...]  #: the words; token id = index
    prompts: tuple[str, ...]  #: the prompt texts; prompt id = index
    eos_token: int | None  #: id of the end token ("."), or None for fixed-length responses
    max_length: int  #: T, the most tokens a response holds (the end token included)
    scores: tuple[tuple[float, ...], ...]  #: (P, V) hidden score of each word for each prompt
    base_prompt_logits: tuple[tuple[float, ...], ...]  #: (P, V) base policy, per prompt
    base_prev_logits: tuple[tuple[float, ...], ...]  #: (V + 1, V) base bigrams; row V = BOS
    base_bias: tuple[float, ...]  #: (V,) base policy bias
    repeat_penalty: float = 0.5  #: cost of each repeated word
    no_end_penalty: float = 1.0  #: cost of a response cut at T without the end token
    empty_penalty: float = 0.5  #: cost of the empty response (the end token alone)
    utility_bound: float = 2.0  #: the utility is clipped to [-bound, bound]

    def __post_init__(self) -> None:
        v, p = len(self.vocab), len(self.prompts)
        if v == 0 or len(set(self.vocab)) != v or any(not _is_word(w) for w in self.vocab):
            raise ValueError(
                f"vocab: expected distinct non-empty words without spaces; got {brief(self.vocab)}"
            )
        if (p == 0 or len(set(self.prompts)) != p
                or not all(isinstance(x, str) and x for x in self.prompts)):
            raise ValueError(f"prompts: expected distinct prompt texts; got {brief(self.prompts)}")
        if self.eos_token is not None and (
            isinstance(self.eos_token, bool)
            or not isinstance(self.eos_token, (int, np.integer))
            or not 0 <= self.eos_token < v
        ):
            raise ValueError(f"eos_token: expected an id in [0, {v}) or None; got {self.eos_token}")
        if isinstance(self.max_length, bool) or not isinstance(self.max_length, int):
            raise TypeError(f"max_length: expected a positive int; got {brief(self.max_length)}")
        if self.max_length < 1:
            raise ValueError(f"max_length: expected a positive int; got {self.max_length}")
        for name, shape in (("scores", (p, v)), ("base_prompt_logits", (p, v)),
                            ("base_prev_logits", (v + 1, v)), ("base_bias", (v,))):
            table = np.asarray(getattr(self, name), dtype=np.float64)
            if table.shape != shape:
                raise ValueError(f"{name}: expected shape {shape}; got {table.shape}")
            if not np.all(np.isfinite(table)):
                raise ValueError(f"{name}: expected finite values; got NaN or infinity")
        for name in ("repeat_penalty", "no_end_penalty", "empty_penalty", "utility_bound"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
                np.isfinite(value) and value >= 0
            ):
                raise ValueError(f"{name}: expected a finite number >= 0; got {brief(value)}")

    # --------------------------------------------------------------------------------------
    # Sizes and tables

    @property
    def vocab_size(self) -> int:
        """V, the number of tokens."""
        return len(self.vocab)

    @property
    def num_prompts(self) -> int:
        """P, the number of prompts."""
        return len(self.prompts)

    @property
    def score_table(self) -> np.ndarray:
        """The hidden word scores, float64 (P, V) (the end token scores 0)."""
        return np.asarray(self.scores, dtype=np.float64)

    # --------------------------------------------------------------------------------------
    # Text <-> ids

    def encode(self, text: str) -> list[int]:
        """Token ids of the words of ``text`` (split on whitespace).

        Raises
        ------
        ValueError
            On a word outside the vocabulary, naming it (no word is ever dropped).
        """
        return self._word_ids(text, "text")

    def _word_ids(self, text: str, name: str) -> list[int]:
        if not isinstance(text, str):
            raise TypeError(f"{name}: expected a str; got {type(text).__name__}")
        index = {w: i for i, w in enumerate(self.vocab)}
        ids = []
        for word in text.split():
            if word not in index:
                raise ValueError(
                    f"{name}: expected words of the vocabulary {' '.join(self.vocab)!r}; "
                    f"got unknown word {_short(word)}"
                )
            ids.append(index[word])
        return ids

    def decode(self, ids: Sequence[int] | np.ndarray) -> str:
        """The words of ``ids`` joined by spaces; decoding stops at the first ``-1`` (padding)."""
        ids = np.asarray(to_numpy(ids))
        if ids.ndim != 1 or (ids.size and not np.issubdtype(ids.dtype, np.integer)):
            raise ValueError(f"ids: expected a 1-d sequence of token ids; got {brief(ids)}")
        words = []
        for token in ids.tolist():
            if token == -1:
                break
            if not 0 <= token < self.vocab_size:
                raise ValueError(f"ids: expected token ids in [0, {self.vocab_size}); got {token}")
            words.append(self.vocab[token])
        return " ".join(words)

    def encode_response(self, text: str, *, name: str = "text") -> np.ndarray:
        """A response text as a padded int64 row (T,): ``"hello ."`` -> ``[0, 11, -1]``.

        Parameters
        ----------
        text : str
            Words separated by whitespace.
        name : str
            The argument name used in error messages.

        Raises
        ------
        ValueError
            On an unknown word, an empty text, more than T tokens, or words after the end.
        """
        ids = self._word_ids(text, name)
        if not ids:
            raise ValueError(f"{name}: expected at least one word; got an empty response")
        if len(ids) > self.max_length:
            raise ValueError(
                f"{name}: expected at most T = {self.max_length} tokens; "
                f"got {len(ids)}"
            )
        if self.eos_token is not None and self.eos_token in ids[:-1]:
            end = self.vocab[self.eos_token]
            raise ValueError(
                f"{name}: expected nothing after the end token {end!r}; got {_short(text)}"
            )
        row = np.full(self.max_length, -1, dtype=np.int64)
        row[: len(ids)] = ids
        return row

    def prompt_id(self, text: str) -> int:
        """The id of a prompt text (exact match)."""
        if not isinstance(text, str):
            raise TypeError(f"prompt: expected a str; got {type(text).__name__}")
        if text not in self.prompts:
            raise ValueError(f"prompt: expected one of {list(self.prompts)!r}; got {brief(text)}")
        return self.prompts.index(text)

    # --------------------------------------------------------------------------------------
    # The hidden utility

    def utility(self, prompts: Any, responses: Any) -> np.ndarray:
        """The true utility u(x, y) of each (prompt, response) (see the module docstring).

        Parameters
        ----------
        prompts : int array, shape (B,)
        responses : int array, shape (B, W), padded with -1 after the end (W <= T is the
            usual width; wider rows are accepted if every response has at most T tokens)

        Returns
        -------
        np.ndarray, float64, shape (B,)
        """
        prompts = np.asarray(to_numpy(prompts))
        if prompts.ndim != 1 or not np.issubdtype(prompts.dtype, np.integer):
            raise ValueError(f"prompts: expected a 1-d int array; got {_describe(prompts)}")
        if prompts.size and (prompts.min() < 0 or prompts.max() >= self.num_prompts):
            raise ValueError(
                f"prompts: expected ids in [0, {self.num_prompts}); "
                f"got {int(prompts.min())}..{int(prompts.max())}"
            )
        responses = check_responses(responses, "responses", vocab_size=self.vocab_size,
                                    eos_token=self.eos_token, max_length=self.max_length)
        if responses.shape[0] != prompts.shape[0]:
            raise ValueError(
                f"responses: expected {prompts.shape[0]} rows, one per prompt; "
                f"got {responses.shape[0]}"
            )
        width = responses.shape[1]
        real = responses >= 0
        if self.eos_token is None:
            is_end = np.zeros_like(real)
        else:
            is_end = real & (responses == self.eos_token)
        content = real & ~is_end
        tokens = np.where(real, responses, 0)
        # a content word is a repeat when the same word stands at an earlier position
        both = content[:, :, None] & content[:, None, :]
        same = (tokens[:, :, None] == tokens[:, None, :]) & both  # (B, W, W)
        earlier = np.tri(width, width, k=-1, dtype=bool)  # [t, s]: s < t
        repeat = np.any(same & earlier, axis=2)  # (B, W)
        first = content & ~repeat
        word_scores = self.score_table[prompts[:, None], tokens]  # (B, W)
        u = np.sum(np.where(first, word_scores, 0.0), axis=1)
        u -= self.repeat_penalty * np.sum(repeat, axis=1)
        if self.eos_token is not None:
            ended = np.any(is_end, axis=1)
            u -= self.no_end_penalty * ~ended
            u -= self.empty_penalty * (ended & ~np.any(content, axis=1))
        return np.clip(u, -self.utility_bound, self.utility_bound)

    # --------------------------------------------------------------------------------------
    # The base (reference) policy

    def base_policy(
        self, *, backend: str = "numpy", dtype: str = "float64", features: str | int = "onehot"
    ) -> SoftmaxPolicy:
        """The base distribution to sample responses from (the reference policy).

        Parameters
        ----------
        backend : str
            Array library of the policy (``"numpy"``, ``"array_api_strict"``, ``"cupy"``...).
        dtype : "float64" or "float32"
        features : "onehot"
            The base logits are tabular; only ``"onehot"`` can hold them exactly.

        Returns
        -------
        SoftmaxPolicy
            Not frozen; call ``.copy()`` for a frozen reference.
        """
        if not (isinstance(features, str) and features == "onehot"):
            raise NotImplementedError(
                f"features: the toy's base policy is a table of logits and needs "
                f"features='onehot'; got {brief(features)}. Start a dense policy from its own "
                "initialisation, or sample data from the onehot base."
            )
        policy = SoftmaxPolicy(self.vocab_size, self.num_prompts, features="onehot",
                               backend=backend, dtype=dtype, eos_token=self.eos_token)
        xp = policy.xp
        policy.params.update({  # entry by entry: each keeps its checked shape and dtype
            "prompt": xp.asarray(np.asarray(self.base_prompt_logits), dtype=policy.dtype),
            "prev": xp.asarray(np.asarray(self.base_prev_logits), dtype=policy.dtype),
            "bias": xp.asarray(np.asarray(self.base_bias), dtype=policy.dtype),
        })
        return policy


# ------------------------------------------------------------------------------------------
# The two tasks

_WORDS = ("hello", "thanks", "great", "tasty", "food", "friend", "sorry", "late", "please",
          "awful", "whatever")

# What each request wants (the hidden truth). Words not listed score 0.
_WANTED = {
    "praise the food": {"great": 1.0, "tasty": 0.5, "food": 0.5,
                        "awful": -1.0, "whatever": -0.5, "late": -0.5, "sorry": -0.5},
    "complain politely about the delay": {"late": 1.0, "please": 0.5, "thanks": 0.5,
                                          "awful": -1.0, "whatever": -1.0, "great": -0.5},
    "thank a colleague": {"thanks": 1.0, "great": 0.5, "friend": 0.5,
                          "whatever": -1.0, "awful": -1.0, "sorry": -0.5},
    "greet a friend": {"hello": 1.0, "friend": 0.5, "great": 0.5,
                       "awful": -1.0, "whatever": -0.5, "sorry": -0.5},
    "apologise for the delay": {"sorry": 1.0, "late": 0.5, "please": 0.5,
                                "whatever": -1.0, "awful": -0.5, "great": -0.5},
}

# What the base model associates with each request: the topic, not the tone.
_BASE_TOPIC = {
    "praise the food": {"food": 1.5, "tasty": 1.0, "awful": 1.0, "great": 0.5},
    "complain politely about the delay": {"late": 1.5, "awful": 1.0, "whatever": 1.0,
                                          "sorry": 0.5},
    "thank a colleague": {"thanks": 1.5, "whatever": 0.5, "great": 0.5, "friend": 0.5},
    "greet a friend": {"hello": 1.5, "friend": 1.0, "whatever": 1.0},
    "apologise for the delay": {"sorry": 1.5, "late": 1.0, "whatever": 1.0},
}

# Bigram fluency of the base model: (previous word, next word) -> logit. "<s>" is BOS.
_BASE_BIGRAMS = {
    ("<s>", "."): -3.0,  # rarely says nothing
    ("great", "food"): 1.5, ("tasty", "food"): 1.5, ("awful", "food"): 1.5,
    ("hello", "friend"): 1.5, ("thanks", "friend"): 1.0, ("sorry", "late"): 1.0,
    ("food", "."): 1.0, ("friend", "."): 1.0, ("late", "."): 0.5, ("whatever", "."): 1.0,
}
_END_AFTER_WORD = 2.0  # every word is followed by "." a little more often than by a word
_REPEAT = -2.0  # the base model rarely says a word twice in a row
_BASE_BIAS = {"whatever": 0.5}  # its favourite filler


def default_task(max_length: int = 3) -> ToyTask:
    """The five-prompt, twelve-word task described in the module docstring (T = 3)."""
    vocab = (*_WORDS, ".")
    eos = vocab.index(".")
    prev = _table({}, (*vocab, "<s>"), vocab)
    for i in range(len(_WORDS)):  # rows of the content words
        prev[i, eos] += _END_AFTER_WORD
        prev[i, i] += _REPEAT
    index = {w: i for i, w in enumerate((*vocab, "<s>"))}
    for (before, after), logit in _BASE_BIGRAMS.items():
        prev[index[before], index[after]] += logit
    return _make_task("default", vocab, eos, max_length, prev)


def bandit_task() -> ToyTask:
    """The one-token version: responses are single words (T = 1, no end token).

    ``u(x, y) = score[x, y]``; the base policy is its topic association plus the bias.
    """
    prev = _table({}, (*_WORDS, "<s>"), _WORDS)
    return _make_task("bandit", _WORDS, None, 1, prev)


def _make_task(name: str, vocab: tuple[str, ...], eos: int | None, max_length: int,
               prev: np.ndarray) -> ToyTask:
    prompts = tuple(_WANTED)
    bias = _table({"bias": _BASE_BIAS}, ("bias",), vocab)[0]
    return ToyTask(
        name=name,
        vocab=vocab,
        prompts=prompts,
        eos_token=eos,
        max_length=max_length,
        scores=_rows(_table(_WANTED, prompts, vocab)),
        base_prompt_logits=_rows(_table(_BASE_TOPIC, prompts, vocab)),
        base_prev_logits=_rows(prev),
        base_bias=tuple(float(b) for b in bias),
    )


def _table(spec: Mapping[str, Mapping[str, float]], rows: Sequence[str],
           columns: Sequence[str]) -> np.ndarray:
    """A (len(rows), len(columns)) array from ``{row: {column: value}}``; missing entries 0."""
    out = np.zeros((len(rows), len(columns)))
    for r, row in enumerate(rows):
        for column, value in spec.get(row, {}).items():
            out[r, list(columns).index(column)] = value
    return out


def _rows(table: np.ndarray) -> tuple[tuple[float, ...], ...]:
    return tuple(tuple(float(v) for v in row) for row in table)


def _short(text: str, limit: int = 40) -> str:
    """``repr`` of a string, cut to ``limit`` characters for an error message."""
    return repr(text) if len(text) <= limit else repr(text[: limit - 3] + "...")


def _is_word(word: Any) -> bool:
    return isinstance(word, str) and word != "" and len(word.split()) == 1 and word.strip() == word
