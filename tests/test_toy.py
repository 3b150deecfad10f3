"""Specification of the toy task: its vocabulary, its hidden utility, its base policy."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from minikto.backend import to_numpy
from minikto.data.toy import ToyTask, bandit_task, default_task

TASK = default_task()


def all_responses(task: ToyTask) -> np.ndarray:
    """Every response of length <= T, written independently of minikto.exact."""
    v, t, eos = task.vocab_size, task.max_length, task.eos_token
    rows = []
    for length in range(1, t + 1):
        for seq in itertools.product(range(v), repeat=length):
            ends_early = eos is not None and eos in seq[:-1]
            stops_short = length < t and (eos is None or seq[-1] != eos)
            if not ends_early and not stops_short:
                rows.append(list(seq) + [-1] * (t - length))
    return np.array(rows, dtype=np.int64)


def utility_of(task: ToyTask, prompt: str, text: str) -> float:
    row = task.encode_response(text)
    return float(task.utility(np.array([task.prompt_id(prompt)]), row[None, :])[0])


def base_distribution(task: ToyTask, prompt: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(responses, base probabilities, utilities) over the whole response space of a prompt."""
    responses = all_responses(task)
    prompts = np.full(len(responses), prompt)
    probs = np.exp(to_numpy(task.base_policy().sequence_logps(prompts, responses)))
    return responses, probs, task.utility(prompts, responses)


# ------------------------------------------------------------------------------------------
# Vocabulary and text


def test_default_task_is_small_enough_to_enumerate_and_ends_at_a_dot():
    assert TASK.vocab_size <= 12
    assert TASK.max_length == 3
    assert TASK.vocab[TASK.eos_token] == "."
    assert len(all_responses(TASK)) == 1 + 11 + 11**2 + 11**3  # "." / "w ." / "w w ." / "w w w"


@settings(max_examples=60, deadline=None)
@given(st.lists(st.integers(0, TASK.vocab_size - 1), min_size=0, max_size=6))
def test_decode_then_encode_gives_back_the_ids(ids):
    assert TASK.encode(TASK.decode(ids)) == ids


def test_encode_then_decode_gives_back_the_text():
    assert TASK.decode(TASK.encode("hello friend .")) == "hello friend ."


def test_decode_stops_at_the_padding():
    assert TASK.decode(np.array([0, 11, -1])) == "hello ."


def test_an_unknown_word_raises_naming_it_and_is_never_dropped():
    with pytest.raises(ValueError, match="unknown word 'yummy'"):
        TASK.encode("great yummy food")


def test_encode_response_pads_with_minus_one():
    np.testing.assert_array_equal(TASK.encode_response("hello ."), [0, 11, -1])
    np.testing.assert_array_equal(TASK.encode_response("great tasty food"), [2, 3, 4])


@pytest.mark.parametrize(
    ("text", "message"),
    [("", "at least one word"), ("hello friend great .", "at most T = 3"),
     ("hello . friend", "after the end token")],
)
def test_encode_response_rejects_what_is_not_a_response(text, message):
    with pytest.raises(ValueError, match=message):
        TASK.encode_response(text)


def test_an_unknown_prompt_raises_listing_the_known_ones():
    with pytest.raises(ValueError, match="greet a friend"):
        TASK.prompt_id("insult a friend")


# ------------------------------------------------------------------------------------------
# The hidden utility


def test_every_prompt_has_best_responses_of_utility_1_5_that_end_after_two_words():
    responses = all_responses(TASK)
    for x in range(TASK.num_prompts):
        u = TASK.utility(np.full(len(responses), x), responses)
        assert u.max() == 1.5
        for best in responses[u == u.max()]:
            assert best[2] == TASK.eos_token and best[1] != TASK.eos_token


@pytest.mark.parametrize(
    ("prompt", "good", "bad"),
    [("praise the food", "great tasty .", "awful food ."),
     ("complain politely about the delay", "late please .", "whatever ."),
     ("thank a colleague", "thanks friend .", "whatever ."),
     ("greet a friend", "hello friend .", "sorry ."),
     ("apologise for the delay", "sorry late .", "whatever .")],
)
def test_a_polite_on_topic_response_beats_an_off_tone_one(prompt, good, bad):
    assert utility_of(TASK, prompt, good) == 1.5
    assert utility_of(TASK, prompt, bad) < 0


def test_the_same_words_score_differently_for_different_prompts():
    assert utility_of(TASK, "greet a friend", "hello .") == 1.0
    assert utility_of(TASK, "praise the food", "hello .") == 0.0


def test_repeats_rambling_and_empty_responses_are_penalised():
    p = "praise the food"
    assert utility_of(TASK, p, "great great .") == utility_of(TASK, p, "great .") - 0.5
    assert utility_of(TASK, p, "great tasty food") == 1.0 + 0.5 + 0.5 - 1.0  # never ends
    assert utility_of(TASK, p, ".") == -0.5


def test_utility_ignores_word_order():
    assert utility_of(TASK, "greet a friend", "friend hello .") == utility_of(
        TASK, "greet a friend", "hello friend ."
    )


def test_utility_lies_in_minus_two_two_and_is_float64():
    responses = all_responses(TASK)
    for x in range(TASK.num_prompts):
        u = TASK.utility(np.full(len(responses), x), responses)
        assert u.dtype == np.float64 and u.shape == (len(responses),)
        assert -2.0 <= u.min() and u.max() <= 2.0


@pytest.mark.parametrize(
    ("responses", "message"),
    [([[0, -1, 5]], "padding only after"), ([[0, 11, 5]], "after the end token"),
     ([[-1, -1, -1]], "at least one token"), ([[0, 12, -1]], "token ids in"),
     ([[0, 1, 2, 11]], "at most T = 3")],
)
def test_utility_rejects_malformed_responses(responses, message):
    with pytest.raises(ValueError, match=message):
        TASK.utility(np.zeros(len(responses), dtype=np.int64), np.array(responses))


def test_utility_rejects_prompt_ids_out_of_range():
    with pytest.raises(ValueError, match=r"prompts: expected ids in \[0, 5\)"):
        TASK.utility(np.array([5]), np.array([[11, -1, -1]]))


# ------------------------------------------------------------------------------------------
# The base policy


def test_base_policy_probabilities_sum_to_one_over_the_response_space():
    for x in range(TASK.num_prompts):
        _, probs, _ = base_distribution(TASK, x)
        assert probs.sum() == pytest.approx(1.0, abs=1e-12)


def test_base_policy_leaves_room_to_improve_on_every_prompt():
    for x in range(TASK.num_prompts):
        _, probs, u = base_distribution(TASK, x)
        expected = probs @ u
        assert -0.7 < expected < 0.0  # best is 1.5: far from optimal
        assert 0.15 < probs[u > 0].sum() < 0.5  # both kinds of feedback are common
        assert probs[u <= -1.0].sum() > 0.15  # substantial mass on bad responses


def test_base_policy_mostly_ends_its_phrases():
    for x in range(TASK.num_prompts):
        responses, probs, _ = base_distribution(TASK, x)
        ended = np.any(responses == TASK.eos_token, axis=1)
        assert probs[ended].sum() > 0.5
        assert TASK.eos_token in responses[np.argmax(probs)]


def test_base_policy_is_the_same_distribution_on_every_backend(backend):
    responses = all_responses(TASK)
    prompts = np.arange(len(responses)) % TASK.num_prompts
    reference = to_numpy(TASK.base_policy().sequence_logps(prompts, responses))
    policy = TASK.base_policy(backend=backend)
    xp = policy.xp
    got = policy.sequence_logps(xp.asarray(prompts), xp.asarray(responses))
    np.testing.assert_allclose(to_numpy(got), reference, rtol=0, atol=1e-12)


def test_base_policy_with_dense_features_is_not_implemented():
    with pytest.raises(NotImplementedError, match="features='onehot'"):
        TASK.base_policy(features=8)


# ------------------------------------------------------------------------------------------
# The bandit variant and validation


def test_bandit_task_has_single_word_responses_scored_by_the_table():
    task = bandit_task()
    assert task.max_length == 1 and task.eos_token is None and "." not in task.vocab
    responses = all_responses(task)
    assert len(responses) == task.vocab_size
    for x in range(task.num_prompts):
        u = task.utility(np.full(len(responses), x), responses)
        np.testing.assert_array_equal(u, task.score_table[x])
    probs = np.exp(to_numpy(task.base_policy().sequence_logps(np.zeros(11, int), responses)))
    assert probs.sum() == pytest.approx(1.0)


def test_a_task_with_duplicate_words_is_refused():
    fields = {**TASK.__dict__, "vocab": ("hello",) * TASK.vocab_size}
    with pytest.raises(ValueError, match="vocab: expected distinct"):
        ToyTask(**fields)
