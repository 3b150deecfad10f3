"""Specification of the feedback datasets sampled from the toy task's hidden utility."""

from __future__ import annotations

import numpy as np
import pytest

from minikto.data.feedback import (
    PairedDataset,
    UnpairedDataset,
    sample_paired,
    sample_unpaired,
    unpair,
)
from minikto.data.toy import bandit_task, default_task
from minikto.policy import SoftmaxPolicy

TASK = default_task()


def assert_same(a: UnpairedDataset, b: UnpairedDataset) -> None:
    np.testing.assert_array_equal(a.prompts, b.prompts)
    np.testing.assert_array_equal(a.responses, b.responses)
    np.testing.assert_array_equal(a.desirable, b.desirable)


# ------------------------------------------------------------------------------------------
# Unpaired sampling


def test_sample_unpaired_is_a_function_of_the_seed():
    assert_same(sample_unpaired(TASK, 300, seed=4), sample_unpaired(TASK, 300, seed=4))
    other = sample_unpaired(TASK, 300, seed=5)
    assert not np.array_equal(other.responses, sample_unpaired(TASK, 300, seed=4).responses)


def test_sampled_responses_are_valid_padded_responses_of_width_t():
    data = sample_unpaired(TASK, 500, seed=0)
    assert data.responses.shape == (500, TASK.max_length) and data.responses.dtype == np.int64
    assert data.prompts.dtype == np.int64 and data.desirable.dtype == np.bool_
    assert set(np.unique(data.prompts)) == set(range(TASK.num_prompts))
    for row in data.responses:
        TASK.encode_response(TASK.decode(row))  # raises on a malformed response


def test_threshold_rule_marks_desirable_exactly_the_responses_above_it():
    for threshold in (0.0, 0.75):
        data = sample_unpaired(TASK, 400, seed=1, threshold=threshold)
        u = TASK.utility(data.prompts, data.responses)
        np.testing.assert_array_equal(data.desirable, u > threshold)


def test_bernoulli_rule_is_desirable_with_probability_sigmoid_of_utility_over_temperature():
    n, temperature = 4000, 0.5
    data = sample_unpaired(TASK, n, seed=2, rule="bernoulli", temperature=temperature)
    u = TASK.utility(data.prompts, data.responses)
    p = 1.0 / (1.0 + np.exp(-u / temperature))
    assert abs(data.desirable.mean() - p.mean()) < 4 * np.sqrt(0.25 / n)
    assert data.desirable[u >= 1.0].mean() > 0.8 and data.desirable[u <= -1.0].mean() < 0.2


@pytest.mark.parametrize("noise", [0.1, 0.25, 1 / 3, 1.0])
def test_label_noise_flips_exactly_round_noise_times_n_labels(noise):
    n = 999
    clean = sample_unpaired(TASK, n, seed=3)
    noisy = sample_unpaired(TASK, n, seed=3, label_noise=noise)
    np.testing.assert_array_equal(noisy.responses, clean.responses)  # same draws
    assert np.sum(noisy.desirable != clean.desirable) == round(noise * n)


def test_desirable_fraction_keeps_that_fraction_of_desirable_and_every_undesirable_example():
    full = sample_unpaired(TASK, 1000, seed=6)
    kept = sample_unpaired(TASK, 1000, seed=6, desirable_fraction=0.1)
    assert kept.num_desirable == round(0.1 * full.num_desirable)
    assert kept.num_undesirable == full.num_undesirable
    # the kept rows are rows of the full sample, in order
    full_rows = {(x, tuple(y), d) for x, y, d in zip(full.prompts, full.responses,
                                                     full.desirable, strict=True)}
    for x, y, d in zip(kept.prompts, kept.responses, kept.desirable, strict=True):
        assert (x, tuple(y), d) in full_rows


def test_noise_is_applied_before_the_desirable_fraction():
    noisy = sample_unpaired(TASK, 1000, seed=7, label_noise=0.2)
    both = sample_unpaired(TASK, 1000, seed=7, label_noise=0.2, desirable_fraction=0.5)
    assert both.num_desirable == round(0.5 * noisy.num_desirable)


def test_one_per_prompt_keeps_one_of_the_two_responses_of_each_paired_instance():
    n, seed = 400, 8
    pairs = sample_paired(TASK, n, seed=seed)
    single = sample_unpaired(TASK, n, seed=seed, one_per_prompt=True)
    assert len(pairs) == len(single) == n  # no pair stayed tied
    np.testing.assert_array_equal(single.prompts, pairs.prompts)
    is_chosen = np.all(single.responses == pairs.chosen, axis=1)
    is_rejected = np.all(single.responses == pairs.rejected, axis=1)
    assert np.all(is_chosen | is_rejected)
    assert 0.4 < is_chosen.mean() < 0.6  # a fair coin picks the side
    u = TASK.utility(single.prompts, single.responses)
    np.testing.assert_array_equal(single.desirable, u > 0.0)  # labelled by the rule


def test_sampling_from_another_policy_uses_that_policy():
    sharp = TASK.base_policy()
    best = TASK.encode_response("hello friend .")
    sharp.params["prompt"] = sharp.params["prompt"] * 0.0
    sharp.params["prev"] = sharp.params["prev"] * 0.0
    sharp.params["prev"][TASK.vocab_size, best[0]] = 50.0  # BOS -> hello
    sharp.params["prev"][best[0], best[1]] = 50.0  # hello -> friend
    sharp.params["prev"][best[1], best[2]] = 50.0  # friend -> .
    data = sample_unpaired(TASK, 50, seed=0, policy=sharp)
    assert np.all(data.responses == best)


def test_a_policy_that_does_not_match_the_task_is_refused():
    with pytest.raises(ValueError, match="policy: expected"):
        sample_unpaired(TASK, 10, policy=SoftmaxPolicy(12, 5))  # no end token


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [({"rule": "majority"}, ValueError, "rule: expected"),
     ({"temperature": 0.0}, ValueError, "temperature"),
     ({"label_noise": 1.5}, ValueError, "label_noise"),
     ({"desirable_fraction": -0.1}, ValueError, "desirable_fraction"),
     ({"seed": -1}, ValueError, "seed"),
     ({"one_per_prompt": "yes"}, TypeError, "one_per_prompt")],
)
def test_sample_unpaired_rejects_bad_arguments(kwargs, error, message):
    with pytest.raises(error, match=message):
        sample_unpaired(TASK, 10, **kwargs)


def test_sample_unpaired_rejects_a_non_positive_count():
    with pytest.raises(ValueError, match="n: expected a positive int"):
        sample_unpaired(TASK, 0)


# ------------------------------------------------------------------------------------------
# Paired sampling and unpairing


def test_sample_paired_chosen_has_strictly_higher_utility():
    pairs = sample_paired(TASK, 500, seed=9)
    assert len(pairs) == 500
    assert np.all(TASK.utility(pairs.prompts, pairs.chosen)
                  > TASK.utility(pairs.prompts, pairs.rejected))


def test_sample_paired_is_a_function_of_the_seed():
    a, b = sample_paired(TASK, 200, seed=10), sample_paired(TASK, 200, seed=10)
    np.testing.assert_array_equal(a.chosen, b.chosen)
    np.testing.assert_array_equal(a.rejected, b.rejected)


@pytest.mark.parametrize("noise", [0.1, 0.3])
def test_paired_label_noise_swaps_exactly_round_noise_times_n_pairs(noise):
    clean = sample_paired(TASK, 501, seed=11)
    noisy = sample_paired(TASK, 501, seed=11, label_noise=noise)
    swapped = np.all(noisy.chosen == clean.rejected, axis=1) & np.all(
        noisy.rejected == clean.chosen, axis=1)
    kept = np.all(noisy.chosen == clean.chosen, axis=1)
    assert np.all(swapped | kept)
    assert swapped.sum() == round(noise * len(clean))


def test_pairs_still_tied_after_the_resamples_are_dropped():
    # in the bandit task many words share a score, so two draws often tie
    pairs = sample_paired(bandit_task(), 300, seed=12, max_resamples=0)
    assert len(pairs) < 300
    assert np.all(bandit_task().utility(pairs.prompts, pairs.chosen)
                  > bandit_task().utility(pairs.prompts, pairs.rejected))


def test_unpair_makes_each_chosen_desirable_and_each_rejected_undesirable():
    pairs = sample_paired(TASK, 100, seed=13)
    data = unpair(pairs)
    assert len(data) == 200 and data.num_desirable == data.num_undesirable == 100
    np.testing.assert_array_equal(data.prompts[0::2], pairs.prompts)
    np.testing.assert_array_equal(data.prompts[1::2], pairs.prompts)
    np.testing.assert_array_equal(data.responses[0::2], pairs.chosen)
    np.testing.assert_array_equal(data.responses[1::2], pairs.rejected)
    assert data.desirable[0::2].all() and not data.desirable[1::2].any()


# ------------------------------------------------------------------------------------------
# The dataset types


def test_a_dataset_copies_its_arrays_and_subsets_by_ids_or_mask():
    prompts = np.array([0, 1, 2])
    data = UnpairedDataset(prompts, np.array([[0, 11, -1], [1, -1, -1], [2, 3, 4]]),
                           np.array([True, False, True]))
    prompts[0] = 4
    assert data.prompts[0] == 0
    assert_same(data.subset([2, 0]), data.subset(np.array([2, 0])))
    np.testing.assert_array_equal(data.subset(np.array([True, False, True])).prompts, [0, 2])
    assert len(data.subset(np.array([], dtype=np.int64))) == 0


@pytest.mark.parametrize(
    ("prompts", "responses", "desirable", "message"),
    [([0], [[0, 11, -1]], [1], "desirable: expected a 1-d bool array"),
     ([0, 1], [[0, 11, -1]], [True, False], "responses: expected 2 rows"),
     ([0], [[0, -1, 3]], [True], "padding only after"),
     ([-1], [[0, 11, -1]], [True], "prompt ids >= 0"),
     ([0], [0, 11, -1], [True], "2-d int array")],
)
def test_an_unpaired_dataset_refuses_malformed_arrays(prompts, responses, desirable, message):
    with pytest.raises(ValueError, match=message):
        UnpairedDataset(np.array(prompts), np.array(responses), np.array(desirable))


def test_a_paired_dataset_refuses_chosen_and_rejected_of_different_widths():
    with pytest.raises(ValueError, match="rejected: expected width T = 3"):
        PairedDataset(np.array([0]), np.array([[0, 11, -1]]), np.array([[0, 11]]))


def test_subset_refuses_ids_out_of_range():
    data = sample_unpaired(TASK, 5, seed=0)
    with pytest.raises(ValueError, match=r"indices: expected ids in \[0, 5\)"):
        data.subset([5])
