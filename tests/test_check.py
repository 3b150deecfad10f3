"""minikto.check_kto: a correct KTO passes, each known mistake is named, the report fits a screen.

The "user" implementations here are written from the KTO formulas in plain NumPy, one flag per
mistake, independently of minikto's catalogue (minikto.tools.check_variants).
"""

from __future__ import annotations

import numpy as np
import pytest

import minikto
from minikto.tools.check_variants import LOSS_VARIANTS, SEQUENCE_VARIANTS


def _sigmoid(x):
    return np.exp(-np.logaddexp(0.0, -x))


def user_kto(mistake: str | None = None, *, estimated: bool = False):
    """A user's NumPy KTO loss with one known mistake (None: correct)."""

    def z0_from_pairs(p, r, kp, kr):
        ratios = kp - kr
        if mistake == "clamp_before_mean":
            return np.mean(np.maximum(ratios, 0.0))
        if mistake == "kl_self_paired":
            return max(0.0, np.mean(p - r))
        if mistake == "kl_reversed_pairs" and len(p) % 2:
            m = (len(p) - 1) // 2  # reversing puts (x_m, y_m) where the rotation had (x_m+1, y_m)
            ratios = ratios.copy()
            ratios[(m + 1) % len(p)] = p[m] - r[m]
        return max(0.0, np.mean(ratios))

    def fn(p, r, d, *rest, beta, desirable_weight, undesirable_weight):
        z0 = z0_from_pairs(p, r, *rest) if estimated else rest[0]
        if mistake == "z0_clamped":
            z0 = max(0.0, z0)
        sign = 1.0 if mistake == "undesirable_sign_flipped" else np.where(d, 1.0, -1.0)
        z = sign * beta * (p - r - z0)
        dpo = mistake == "dpo_style_log_sigmoid"
        unweighted = np.logaddexp(0.0, -z) if dpo else 1 - _sigmoid(z)
        if mistake == "beta_outside_sigmoid":
            unweighted = 1 - beta * _sigmoid(z / beta)
        w = np.where(d, desirable_weight, undesirable_weight)
        if mistake == "weights_swapped":
            w = np.where(d, undesirable_weight, desirable_weight)
        if mistake == "desirable_weight_everywhere":
            w = np.full(len(p), desirable_weight)
        losses = w * unweighted
        if mistake == "separate_means_sum":
            loss = sum(losses[m].mean() for m in (d, ~d) if m.any())
        elif mistake == "separate_means_average":
            loss = np.mean([losses[m].mean() for m in (d, ~d) if m.any()])
        elif mistake == "weights_after_mean":
            loss = unweighted.mean() * w.mean()
        elif mistake in ("nan_one_label", "separate_means_sum+nan"):
            with np.errstate(invalid="ignore"):  # 0 / 0 when a kind is absent: the mistake
                means = [losses[m].sum() / m.sum() for m in (d, ~d)]
            fractions = [1.0, 1.0] if mistake.endswith("+nan") else [d.mean(), (~d).mean()]
            loss = means[0] * fractions[0] + means[1] * fractions[1]
        else:
            loss = losses.mean()
        rewards = (p - r) if mistake == "beta_missing_from_rewards" else beta * (p - r)
        return {"loss": loss, "losses": losses, "rewards": rewards}

    return fn


def _check(fn, **kwargs):
    kwargs.setdefault("num_random", 100)
    return minikto.check_kto(fn, **kwargs)


# ------------------------------------------------------------------------------------------
# A correct loss passes


@pytest.mark.parametrize("z0", ["given", "estimated"])
def test_a_correct_numpy_kto_passes_with_no_diagnosis(z0):
    report = minikto.check_kto(user_kto(estimated=z0 == "estimated"), z0=z0)
    assert report.passed, str(report)
    assert report.diagnosis is None and report.smallest_failing_case is None
    assert {r.property.split(" (")[0] for r in report.rows} >= {
        "loss on the reference vectors", "loss on extreme batches",
        "loss on random float64 batches", "per-example losses", "gradient wrt policy_logps",
    }
    random_row = next(r for r in report.rows if r.property.startswith("loss on random"))
    assert random_row.cases == 200 and random_row.passed


def test_minikto_own_kto_loss_returned_as_its_named_tuple_passes():
    report = _check(minikto.kto_loss)
    assert report.passed and report.diagnosis is None, str(report)


# ------------------------------------------------------------------------------------------
# Every known mistake is named


_NUMPY_CASES = [
    (v.name, mode) for v in LOSS_VARIANTS for mode in v.modes if v.name != "z0_not_detached"
]


@pytest.mark.parametrize(("mistake", "z0"), _NUMPY_CASES)
def test_every_known_mistake_is_diagnosed_by_name(mistake, z0):
    report = _check(user_kto(mistake, estimated=z0 == "estimated"), z0=z0)
    assert not report.passed
    assert report.variants == [mistake], str(report)
    assert report.diagnosis.startswith(mistake + ": ")
    assert report.smallest_failing_case is None


def test_two_mistakes_at_once_separate_means_and_nan_on_one_label_are_both_named():
    report = _check(user_kto("separate_means_sum+nan"))
    assert report.variants == ["separate_means_sum", "nan_one_label"], str(report)


def test_an_unknown_mistake_shows_the_smallest_case_that_differs():
    correct = user_kto()

    def slightly_off(*args, **kwargs):
        return 1.001 * correct(*args, **kwargs)["loss"]

    report = _check(slightly_off)
    assert not report.passed and report.diagnosis is None and report.variants == []
    assert report.smallest_failing_case.startswith("smallest case that differs:")
    assert "(B = 1," in report.smallest_failing_case  # the batch of one is the smallest


def test_a_diagnosis_needs_the_user_to_differ_from_the_correct_loss():
    """A correct loss matches several variants on most cases; none of them is named."""
    report = _check(user_kto(estimated=True), z0="estimated")
    assert report.passed and report.variants == []


# ------------------------------------------------------------------------------------------
# The report


def test_the_report_fits_one_screen():
    report = _check(user_kto("clamp_before_mean", estimated=True), z0="estimated",
                    sequence_fn=lambda t, m: np.mean(np.where(m, t, 0.0), axis=1))
    text = str(report)
    assert len(text.splitlines()) <= 40
    assert max(len(line) for line in text.splitlines()) <= 100
    slightly_off = _check(lambda *a, **k: 1.001 * user_kto()(*a, **k)["loss"])
    lines = str(slightly_off).splitlines()
    assert len(lines) <= 40 and max(map(len, lines)) <= 100


def test_each_row_reports_its_worst_difference():
    report = _check(user_kto("dpo_style_log_sigmoid"))
    loss_rows = [r for r in report.rows if r.property.startswith("loss on")]
    assert all(not r.passed and r.worst_difference > 1e-3 for r in loss_rows)


# ------------------------------------------------------------------------------------------
# The sequence level


def _seq(mistake=None):
    def fn(token_logps, mask):
        kept = np.where(mask, token_logps, 0.0)
        if mistake == "token_logps_averaged":
            return kept.sum(axis=1) / mask.sum(axis=1)
        if mistake == "padding_counted":
            return token_logps.sum(axis=1)
        if mistake in ("last_token_dropped", "first_token_dropped"):
            lengths = mask.sum(axis=1)
            drop = np.arange(mask.shape[0]), (lengths - 1 if mistake[0] == "l" else 0)
            kept = kept.copy()
            kept[drop] = 0.0
        return kept.sum(axis=1)

    return fn


def test_a_correct_sequence_function_passes():
    report = _check(user_kto(), num_random=20, sequence_fn=_seq())
    seq_rows = [r for r in report.rows if r.property.startswith("sequence_fn")]
    assert len(seq_rows) == 2 and all(r.passed for r in seq_rows)
    assert report.passed and report.diagnosis is None


@pytest.mark.parametrize("mistake", [v.name for v in SEQUENCE_VARIANTS])
def test_every_sequence_mistake_is_diagnosed_by_name(mistake):
    report = _check(user_kto(), num_random=20, sequence_fn=_seq(mistake))
    assert not report.passed
    assert report.diagnosis is not None and report.diagnosis.startswith(mistake + ": ")


def test_a_loss_that_is_wrong_only_on_one_label_batches_is_not_blamed_on_a_variant():
    correct = user_kto()

    def zero_on_one_label(p, r, d, z0, **kwargs):
        return 0.0 if d.all() or not d.any() else correct(p, r, d, z0, **kwargs)["loss"]

    report = _check(zero_on_one_label)
    assert not report.passed and report.variants == []
    assert "(B = 1," in report.smallest_failing_case  # a batch of one is of one label


def test_a_nan_everywhere_loss_is_named_with_its_fix():
    report = _check(lambda *args, **kwargs: float("nan"), z0="estimated", num_random=5)
    assert not report.passed and report.variants == ["nan_loss"]
    assert "Fix: " in report.diagnosis
    assert all(not r.passed for r in report.rows if r.property.startswith("loss on"))


def test_a_loss_that_raises_on_one_label_batches_is_diagnosed_and_the_error_noted():
    correct = user_kto()

    def refuses_one_label(p, r, d, z0, **kwargs):
        if d.all() or not d.any():
            raise ValueError("need both kinds of example")
        return correct(p, r, d, z0, **kwargs)["loss"]

    report = _check(refuses_one_label)
    assert report.variants == ["nan_one_label"], str(report)
    assert report.notes[0].startswith("fn raised on ")
    assert "ValueError: need both kinds of example" in report.notes[0]
    assert "note: fn raised on" in str(report)


def test_a_function_of_the_wrong_signature_is_refused_naming_the_expected_one():
    def wrong_signature(p, r, d):
        return 0.0

    with pytest.raises(TypeError, match=r"^fn: expected fn\(policy_logps, reference_logps, "
                                        r"desirable, z0, \*, beta.*got wrong_signature\(p, r, d\)"):
        _check(wrong_signature, num_random=3)


def test_a_function_that_raises_on_every_case_raises_its_own_error():
    def broken(p, r, d, z0, **kwargs):
        return {}["loss"]

    with pytest.raises(KeyError, match="loss"):
        _check(broken, num_random=3)


def test_vector_cases_of_another_shape_or_new_top_level_keys_are_skipped(monkeypatch):
    from minikto.tools import check_cases

    before = check_cases.loss_cases(0, 0, estimated=True)
    original = check_cases.vector_inputs

    def with_more():
        return [*original(),
                {"name": "tokens", "function": "kto_loss",
                 "inputs": {"token_logps": [[-1.0]], "mask": [[True]]}},
                {"name": "seq", "function": "sequence_logps", "inputs": {}}]

    monkeypatch.setattr(check_cases, "vector_inputs", with_more)
    after = check_cases.loss_cases(0, 0, estimated=True)
    assert [c.name for c in after] == [c.name for c in before]
    assert sum(c.group == "vectors" for c in after) == 18


def test_a_long_report_is_cut_to_one_screen():
    from minikto.tools.check import KTOCheckReport

    rows = [minikto.tools.check.CheckRow(f"row {i}", False, 1.0, 1) for i in range(9)]
    long_case = "\n".join(f"  line {i}" for i in range(40))
    text = str(KTOCheckReport(False, "x " * 200, rows, long_case, "f", "settings"))
    lines = text.splitlines()
    assert len(lines) == 40 and lines[-1].endswith("report.smallest_failing_case)")
    assert max(map(len, lines)) <= 100


def test_the_smallest_case_shows_per_example_losses_when_the_function_returns_them():
    correct = user_kto()

    def off_weight(p, r, d, z0, *, beta, desirable_weight, undesirable_weight):
        return correct(p, r, d, z0, beta=beta, desirable_weight=desirable_weight,
                       undesirable_weight=undesirable_weight + 0.25)  # not a known mistake

    report = _check(off_weight)
    assert report.variants == [] and "losses yours" in report.smallest_failing_case
    assert "(B = 1," in report.smallest_failing_case  # the vectors' batch of one is undesirable


@pytest.mark.parametrize("result", ["nope", True])
def test_a_loss_that_is_not_a_number_is_refused_naming_fn(result):
    with pytest.raises(TypeError, match=r"^fn: expected the loss \(a scalar\)"):
        minikto.check_kto(lambda *args, **kwargs: result)
