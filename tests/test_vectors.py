"""Specifications of minikto.tools.vectors: the reference vectors file for people porting KTO."""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path

import numpy as np
import pytest

import minikto
from minikto.tools.vectors import (
    FORMAT,
    VERSION,
    compute_outputs,
    make_vectors,
    write_vectors,
)
from minikto.tools.vectors_check import check_vectors

VECTORS = make_vectors()
CASES = {case["name"]: case for case in VECTORS["cases"]}
DOC = Path(__file__).resolve().parents[1] / "docs" / "VECTORS.md"

INPUT_KEYS = {
    "kto_loss_from_token_logps": {
        "policy_token_logps",
        "reference_token_logps",
        "completion_mask",
        "desirable",
        "z0",
        "beta",
        "desirable_weight",
        "undesirable_weight",
    },
    "kto_loss": {
        "policy_logps",
        "reference_logps",
        "desirable",
        "z0",
        "beta",
        "desirable_weight",
        "undesirable_weight",
    },
    "kl_estimate": {"kl_policy_logps", "kl_reference_logps"},
    "dpo_loss": {
        "policy_chosen_logps",
        "policy_rejected_logps",
        "reference_chosen_logps",
        "reference_rejected_logps",
        "beta",
    },
}
OUTPUT_KEYS = {
    "kto_loss": {"loss", "losses", "rewards", "grad_policy_logps", "grad_z0"},
    "kto_loss_from_token_logps": {
        "policy_logps",
        "reference_logps",
        "loss",
        "losses",
        "rewards",
        "grad_policy_token_logps",
        "grad_z0",
    },
    "kl_estimate": {"z0", "grad_kl_policy_logps"},
    "dpo_loss": {
        "loss",
        "losses",
        "chosen_rewards",
        "rejected_rewards",
        "grad_policy_chosen_logps",
        "grad_policy_rejected_logps",
    },
}


def batch_size(case):
    return len(next(v for v in case["inputs"].values() if isinstance(v, list)))


# ------------------------------------------------------------------------------------------
# The file round-trips and recomputes


def test_written_file_recomputes_exactly_with_minikto(tmp_path):
    path = write_vectors(tmp_path / "vectors.json")
    assert check_vectors(path, rtol=0.0, atol=0.0) == []
    assert json.loads(path.read_text()) == VECTORS  # JSON floats round-trip exactly


def test_the_array_api_strict_backend_recomputes_the_file():
    assert check_vectors(VECTORS, backend="array_api_strict") == []


def test_vectors_are_deterministic(tmp_path):
    assert make_vectors() == make_vectors()
    a = write_vectors(tmp_path / "a.json").read_bytes()
    b = write_vectors(tmp_path / "b.json").read_bytes()
    assert a == b


def test_file_has_every_documented_key():
    assert list(VECTORS) == ["format", "version", "minikto_version", "conventions", "cases"]
    assert VECTORS["format"] == FORMAT == "minikto-vectors"
    assert VECTORS["version"] == VERSION == 1
    assert VECTORS["minikto_version"] == minikto.__version__
    assert len(CASES) == len(VECTORS["cases"])  # names are unique
    for case in VECTORS["cases"]:
        assert list(case) == ["name", "function", "description", "inputs", "outputs",
                              "tolerances"]
        assert set(case["tolerances"]) == set(case["outputs"]), case["name"]
        for key, value in case["outputs"].items():
            assert np.shape(case["tolerances"][key]) == np.shape(value), (case["name"], key)
            assert np.all(np.asarray(case["tolerances"][key]) > 0), (case["name"], key)
        function, batch = case["function"], batch_size(case)
        assert set(case["inputs"]) == INPUT_KEYS[function], case["name"]
        assert set(case["outputs"]) == OUTPUT_KEYS[function], case["name"]
        for key, value in {**case["inputs"], **case["outputs"]}.items():
            if key in ("policy_token_logps", "reference_token_logps", "completion_mask",
                       "grad_policy_token_logps"):
                width = len(value[0])
                assert len(value) == batch and all(len(row) == width for row in value), key
                kind = bool if key == "completion_mask" else float
                assert all(type(v) is kind for row in value for v in row), key
            elif key == "desirable":
                assert len(value) == batch and all(isinstance(v, bool) for v in value)
            elif isinstance(value, list):
                assert len(value) == batch and all(type(v) is float for v in value), key
                assert all(math.isfinite(v) for v in value), (case["name"], key)
            else:
                assert type(value) is float and math.isfinite(value), (case["name"], key)


# ------------------------------------------------------------------------------------------
# The edge cases are present and are what they claim


def test_every_listed_edge_case_is_present():
    kto = [c for c in VECTORS["cases"] if c["function"].startswith("kto_loss")]
    dpo = [c for c in VECTORS["cases"] if c["function"] == "dpo_loss"]
    assert any(all(c["inputs"]["desirable"]) for c in kto)  # only desirable
    assert any(not any(c["inputs"]["desirable"]) for c in kto)  # only undesirable
    assert any(0 < sum(c["inputs"]["desirable"]) < batch_size(c) for c in kto)  # mixed
    kl = [c["outputs"]["z0"] for c in VECTORS["cases"] if c["function"] == "kl_estimate"]
    assert 0.0 in kl and any(z > 0 for z in kl)  # z0 clamped and z0 positive
    assert any(c["inputs"]["z0"] == 0.0 for c in kto) and any(c["inputs"]["z0"] > 0 for c in kto)
    weights = {c["inputs"][w] for c in kto for w in ("desirable_weight", "undesirable_weight")}
    assert {13.33, 0.0} <= weights
    for family in (kto, dpo):
        betas = {c["inputs"]["beta"] for c in family}
        assert {1e-6, 1e3} <= betas
    assert {
        "kl_positive",
        "kl_clamped",
        "kl_at_zero",
        "kto_at_initialisation",
        "kto_mixed",
        "kto_only_desirable",
        "kto_only_undesirable",
        "kto_z0_clamped",
        "kto_z0_positive",
        "kto_saturated",
        "kto_extreme_weights",
        "kto_imbalanced",
        "kto_tiny_beta",
        "kto_large_beta",
        "kto_batch_of_one",
        "kto_tokens_summed",
        "dpo_policy_equals_reference",
        "dpo_mixed",
        "dpo_saturated",
        "dpo_tiny_beta",
        "dpo_large_beta",
        "dpo_batch_of_one",
    } <= set(CASES)


def test_at_initialisation_the_loss_is_one_half_and_every_gradient_beta_over_4b():
    case = CASES["kto_at_initialisation"]
    beta, batch = case["inputs"]["beta"], batch_size(case)
    assert case["inputs"]["policy_logps"] == case["inputs"]["reference_logps"]
    assert case["outputs"]["loss"] == pytest.approx(0.5, rel=1e-15)
    np.testing.assert_allclose(np.abs(case["outputs"]["grad_policy_logps"]), beta / (4 * batch))


def test_dpo_at_the_reference_costs_log_2():
    assert CASES["dpo_policy_equals_reference"]["outputs"]["loss"] == pytest.approx(math.log(2))


def test_reference_point_cases_show_the_clamp():
    positive, clamped, at_zero = CASES["kl_positive"], CASES["kl_clamped"], CASES["kl_at_zero"]
    assert positive["outputs"]["z0"] > 0
    assert clamped["outputs"]["z0"] == 0.0 == at_zero["outputs"]["z0"]
    assert set(positive["outputs"]["grad_kl_policy_logps"]) == {1 / batch_size(positive)}
    assert set(clamped["outputs"]["grad_kl_policy_logps"]) == {0.0}
    assert set(at_zero["outputs"]["grad_kl_policy_logps"]) == {1 / batch_size(at_zero)}
    assert CASES["kto_z0_clamped"]["inputs"]["z0"] == clamped["outputs"]["z0"]
    assert CASES["kto_z0_positive"]["inputs"]["z0"] == positive["outputs"]["z0"]


@pytest.mark.parametrize("name", ["kto_saturated", "kto_large_beta", "dpo_saturated"])
def test_saturated_cases_reach_past_exp_overflow(name):
    inputs = CASES[name]["inputs"]
    if "policy_logps" in inputs:
        z = inputs["beta"] * np.subtract(inputs["policy_logps"], inputs["reference_logps"])
    else:
        z = inputs["beta"] * (
            np.subtract(inputs["policy_chosen_logps"], inputs["reference_chosen_logps"])
            - np.subtract(inputs["policy_rejected_logps"], inputs["reference_rejected_logps"])
        )
    assert np.max(np.abs(z)) > 745  # exp(-z) underflows, exp(z) overflows
    assert all(v <= 0 for k, v in inputs.items() if k.endswith("logps") for v in v)


def test_stored_sums_do_not_depend_on_the_summation_order():
    # grad_z0 = -sum_i grad_i and z0 = mean_j r_j are sums of signed terms. Summed in another
    # order (another framework) they may differ by up to B * eps * sum|terms|; every case keeps
    # that below its stored tolerance, so a correct port always passes.
    eps = np.finfo(np.float64).eps
    for case in VECTORS["cases"]:
        inputs, outputs, tolerances = case["inputs"], case["outputs"], case["tolerances"]
        if case["function"] == "kto_loss_from_token_logps":
            grads = np.asarray(outputs["grad_policy_token_logps"])
            mask = np.asarray(inputs["completion_mask"])
            for key in ("policy_token_logps", "reference_token_logps"):  # the masked sums
                allowed = tolerances[key.replace("_token", "")]
                for row, keep, limit in zip(np.asarray(inputs[key]), mask, allowed,
                                            strict=True):
                    assert keep.sum() * eps * np.sum(np.abs(row[keep])) <= limit, case["name"]
            terms = np.array([g[m][0] for g, m in zip(grads, mask, strict=True)])
            total, limit = outputs["grad_z0"], tolerances["grad_z0"]
        elif case["function"].startswith("kto_loss"):
            terms, total = np.asarray(outputs["grad_policy_logps"]), outputs["grad_z0"]
            limit = tolerances["grad_z0"]
        elif case["function"] == "kl_estimate":
            terms = np.subtract(inputs["kl_policy_logps"], inputs["kl_reference_logps"])
            terms = terms / terms.shape[0]
            total = np.sum(terms)  # the mean before the clamp: its sign must be robust too
            limit = min(tolerances["z0"], abs(total)) if total else tolerances["z0"]
        else:
            continue
        assert terms.shape[0] * eps * np.sum(np.abs(terms)) <= limit, case["name"]


# ------------------------------------------------------------------------------------------
# Every stored gradient agrees with finite differences of the stored function


def _per_example_differences(case, key, eps):
    """(losses(x + eps) - losses(x - eps)) / (2 eps B): each loss depends on its own x_i."""
    inputs = case["inputs"]
    x = np.asarray(inputs[key])
    up, down = x + eps, x - eps  # the steps actually taken are up - down
    l_up = np.asarray(compute_outputs(case["function"], {**inputs, key: list(up)})["losses"])
    l_down = np.asarray(compute_outputs(case["function"], {**inputs, key: list(down)})["losses"])
    noise = 1e-14 * np.maximum(1.0, np.abs(l_up)) / (up - down)
    return (l_up - l_down) / (up - down) / x.shape[0], noise / x.shape[0]


def _assert_close(analytic, numeric, noise):
    analytic = np.asarray(analytic)
    tolerance = 1e-6 * np.abs(analytic) + 1e-8 * np.max(np.abs(analytic)) + noise
    assert np.all(np.abs(analytic - numeric) <= tolerance), (analytic, numeric)


@pytest.mark.parametrize("name", [c["name"] for c in VECTORS["cases"]])
def test_gradients_agree_with_finite_differences_of_the_losses(name):
    case = CASES[name]
    inputs, outputs = case["inputs"], case["outputs"]
    if case["function"] == "kl_estimate":
        # z0 is piecewise linear: a FORWARD difference is exact on each piece and gives the
        # right derivative at the kink (mean exactly 0), the convention the file records
        x = np.asarray(inputs["kl_policy_logps"])
        base = compute_outputs("kl_estimate", inputs)["z0"]
        numeric = []
        for j in range(x.shape[0]):
            up = x.copy()
            up[j] += 1e-4
            moved = compute_outputs("kl_estimate", {**inputs, "kl_policy_logps": list(up)})
            numeric.append((moved["z0"] - base) / (up[j] - x[j]))
        _assert_close(outputs["grad_kl_policy_logps"], np.asarray(numeric), 1e-10)
        return
    if case["function"] == "kto_loss_from_token_logps":
        # every token, masked or not: central differences of the batch loss
        x = np.asarray(inputs["policy_token_logps"])
        eps, numeric = 1e-4, np.zeros_like(x)
        for index in np.ndindex(x.shape):
            moved = []
            for step in (eps, -eps):
                y = x.copy()
                y[index] += step
                moved_inputs = {**inputs, "policy_token_logps": y.tolist()}
                moved.append(compute_outputs(case["function"], moved_inputs)["loss"])
            numeric[index] = (moved[0] - moved[1]) / (2 * eps)
        _assert_close(outputs["grad_policy_token_logps"], numeric, 1e-10)
        assert np.all(numeric[~np.asarray(inputs["completion_mask"])] == 0.0)
        return

    eps = 1e-5 / inputs["beta"]
    wrt = {
        "kto_loss": {"policy_logps": "grad_policy_logps"},
        "dpo_loss": {
            "policy_chosen_logps": "grad_policy_chosen_logps",
            "policy_rejected_logps": "grad_policy_rejected_logps",
        },
    }[case["function"]]
    for key, grad_key in wrt.items():
        numeric, noise = _per_example_differences(case, key, eps)
        _assert_close(outputs[grad_key], numeric, noise)

    if case["function"] == "kto_loss":
        z0 = inputs["z0"]
        up = compute_outputs("kto_loss", {**inputs, "z0": z0 + eps})["loss"]
        down = compute_outputs("kto_loss", {**inputs, "z0": z0 - eps})["loss"]
        numeric = (up - down) / ((z0 + eps) - (z0 - eps))
        _assert_close([outputs["grad_z0"]], [numeric], 1e-14 * max(1.0, abs(up)) / eps)


# ------------------------------------------------------------------------------------------
# check_vectors reports disagreements; write_vectors is atomic


def test_check_vectors_names_the_case_output_and_index_of_a_wrong_value():
    tampered = json.loads(json.dumps(VECTORS))
    case = next(c for c in tampered["cases"] if c["name"] == "kto_mixed")
    case["outputs"]["grad_policy_logps"][3] *= 1 + 1e-9
    failures = check_vectors(tampered)
    assert len(failures) == 1
    assert failures[0].startswith("kto_mixed: grad_policy_logps[3]: stored ")


def test_check_vectors_reports_missing_outputs_and_unknown_functions():
    tampered = json.loads(json.dumps(VECTORS))
    del tampered["cases"][0]["outputs"]["z0"]
    tampered["cases"][1]["function"] = "ipo_loss"
    failures = check_vectors(tampered)
    assert failures[0] == "kl_positive: output 'z0' is missing from the file"
    assert failures[1].startswith("kl_clamped: function: expected one of [")
    assert failures[1].endswith("got string 'ipo_loss'")


def test_check_vectors_refuses_another_format():
    (failure,) = check_vectors({"format": "something-else", "version": 1, "cases": []})
    assert failure.startswith("file: expected format 'minikto-vectors' version 1")


def test_write_vectors_replaces_the_file_and_leaves_no_temporary_file(tmp_path):
    path = tmp_path / "vectors.json"
    path.write_text("old")
    write_vectors(path)
    assert json.loads(path.read_text()) == VECTORS
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vectors.json"]


def test_write_vectors_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "vectors.json"
    path.write_text("old")

    def fail(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", fail)
    with pytest.raises(OSError, match="disk full"):
        write_vectors(path)
    assert path.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["vectors.json"]


def test_write_vectors_refuses_nan_and_a_missing_folder(tmp_path):
    with pytest.raises(ValueError, match="path: expected a file in an existing folder"):
        write_vectors(tmp_path / "no" / "such.json")
    with pytest.raises(ValueError):
        write_vectors(tmp_path / "nan.json", {"format": FORMAT, "loss": float("nan")})
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------
# The PyTorch snippet of docs/VECTORS.md runs and passes (when torch is installed; run with
# torch 2.14.1 and JAX 0.10.2, the versions the page's measurements name)


def _documented_snippet():
    blocks = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)
    (snippet,) = [b for b in blocks if "import torch" in b]
    return snippet


def _run_snippet(snippet, tmp_path, monkeypatch):
    write_vectors(tmp_path / "minikto_vectors.json")
    monkeypatch.chdir(tmp_path)
    namespace = {"__name__": "__main__"}
    exec(compile(snippet, str(DOC), "exec"), namespace)
    return namespace


def _z0_gradient_count():
    names = set(VECTORS["conventions"]["z0_gradient_outputs"])
    return sum(len(names & set(case["outputs"])) for case in VECTORS["cases"])


def test_the_documented_pytorch_check_passes_with_z0_detached_as_trl_does(tmp_path,
                                                                         monkeypatch):
    pytest.importorskip("torch")
    snippet = _documented_snippet()
    assert "DETACH_Z0 = True" in snippet and "return mean.detach().clamp(min=0)" in snippet
    namespace = _run_snippet(snippet, tmp_path, monkeypatch)
    assert namespace["checked"] == len(VECTORS["cases"])
    assert namespace["skipped"] == _z0_gradient_count() > 0


def test_the_documented_pytorch_check_passes_with_the_gradient_through_z0(tmp_path,
                                                                         monkeypatch):
    pytest.importorskip("torch")
    snippet = _documented_snippet().replace("DETACH_Z0 = True", "DETACH_Z0 = False")
    namespace = _run_snippet(snippet, tmp_path, monkeypatch)
    assert namespace["checked"] == len(VECTORS["cases"]) and namespace["skipped"] == 0


@pytest.mark.parametrize(
    ("wrong", "right", "case"),
    [
        # averaging the tokens instead of summing them
        ("return (token_logps * completion_mask).sum(-1)",
         "return (token_logps * completion_mask).sum(-1) / completion_mask.sum(-1)",
         "kto_tokens_summed"),
        # torch.clamp passes no gradient at exactly 0
        ("return torch.where(mean >= 0, mean, 0.0)", "return mean.clamp(min=0)", "kl_at_zero"),
    ],
)
def test_the_documented_check_catches_a_port_that_averages_tokens_or_clamps_with_torch(
        tmp_path, monkeypatch, wrong, right, case):
    pytest.importorskip("torch")
    snippet = _documented_snippet().replace("DETACH_Z0 = True", "DETACH_Z0 = False")
    assert wrong in snippet
    with pytest.raises(AssertionError, match=case):
        _run_snippet(snippet.replace(wrong, right), tmp_path, monkeypatch)


def test_the_documented_check_passes_a_port_written_as_w_times_sigmoid_of_minus_z(
        tmp_path, monkeypatch):
    """The table's own form, differentiated by autodiff, loses digits in s (1 - s) near
    s = 1 (2.96e-12 relative on kto_large_beta, measured with torch 2.14.1): within the
    tolerance's absolute term, so it passes."""
    pytest.importorskip("torch")
    snippet = _documented_snippet()
    chosen = "    chosen = w_desirable * (1 - torch.sigmoid(beta * (logratios - z0)))\n"
    rejected = "    rejected = w_undesirable * (1 - torch.sigmoid(beta * (z0 - logratios)))\n"
    assert chosen in snippet and rejected in snippet
    snippet = snippet.replace(chosen, "    chosen = w_desirable * torch.sigmoid(-beta * "
                                      "(logratios - z0))\n")
    snippet = snippet.replace(rejected, "    rejected = w_undesirable * torch.sigmoid(-beta * "
                                        "(z0 - logratios))\n")
    namespace = _run_snippet(snippet, tmp_path, monkeypatch)
    assert namespace["checked"] == len(VECTORS["cases"])


def test_the_clamp_gradients_at_zero_are_as_documented_for_the_measured_torch_version():
    """The table of docs/VECTORS.md was measured with torch 2.14.1; clamp's gradient at 0 has
    changed between releases, so it is rerun on that version only."""
    torch = pytest.importorskip("torch")
    if not torch.__version__.startswith("2.14."):
        pytest.skip(f"the table was measured with torch 2.14.1; this is {torch.__version__}")
    doc = DOC.read_text(encoding="utf-8")
    assert "PyTorch 2.14.1" in doc
    zero = torch.zeros((), dtype=torch.float64)
    ways = {
        "torch.where(m >= 0, m, 0.0)": (lambda m: torch.where(m >= 0, m, 0.0), 1.0),
        "torch.clamp(m, min=0)": (lambda m: torch.clamp(m, min=0), 0.0),
        "torch.clamp_min(m, 0)": (lambda m: torch.clamp_min(m, 0), 0.0),
        "torch.relu(m)": (torch.relu, 0.0),
        "torch.maximum(m, zero)": (lambda m: torch.maximum(m, zero), 0.5),
        "torch.clamp(m, min=zero_tensor)": (lambda m: torch.clamp(m, min=zero), 0.5),
    }
    batch = 4
    for text, (clamp, share) in ways.items():
        assert f"`{text}`" in doc, text
        x = torch.zeros(batch, dtype=torch.float64, requires_grad=True)
        clamp(x.mean()).backward()
        assert x.grad.tolist() == [share / batch] * batch, text


def test_the_clamp_gradients_at_zero_are_as_documented_for_the_measured_jax_version():
    jax = pytest.importorskip("jax")
    if not jax.__version__.startswith("0.10."):
        pytest.skip(f"the table was measured with JAX 0.10.2; this is {jax.__version__}")
    jax.config.update("jax_enable_x64", True)
    jnp = jax.numpy
    doc = DOC.read_text(encoding="utf-8")
    ways = {
        "jnp.where(m >= 0, m, 0.0)": (lambda m: jnp.where(m >= 0, m, 0.0), 1.0),
        "jax.nn.relu(m)": (jax.nn.relu, 0.0),
        "jnp.maximum(m, 0)": (lambda m: jnp.maximum(m, 0), 0.5),
        "jnp.clip(m, 0)": (lambda m: jnp.clip(m, 0), 0.5),
    }
    batch = 4
    for text, (clamp, share) in ways.items():
        assert f"`{text}`" in doc, text
        grad = jax.grad(lambda x, c=clamp: c(jnp.mean(x)))(jnp.zeros(batch))
        assert [float(g) for g in grad] == [share / batch] * batch, text


# ------------------------------------------------------------------------------------------
# The conventions object and the token-level case


def test_the_conventions_object_states_every_rule_a_port_needs():
    conventions = VECTORS["conventions"]
    assert set(conventions) == {
        "dtype", "units", "logps", "logratio", "rewards", "loss", "gradients", "z0",
        "z0_detached", "z0_gradient_outputs", "clamp_gradient_at_zero", "tolerances",
    }
    assert conventions["z0_gradient_outputs"] == ["grad_z0", "grad_kl_policy_logps"]
    assert "SUM" in conventions["logps"] and "float64" in conventions["dtype"]
    assert "batch-grad" in conventions["z0_detached"]
    assert "where(m >= 0, m, 0)" in conventions["clamp_gradient_at_zero"]
    outputs = {key for case in VECTORS["cases"] for key in case["outputs"]}
    assert set(conventions["z0_gradient_outputs"]) <= outputs


def test_the_token_case_sums_over_the_mask_and_averaging_would_change_every_output():
    case = CASES["kto_tokens_summed"]
    inputs, outputs = case["inputs"], case["outputs"]
    tokens = np.asarray(inputs["policy_token_logps"])
    mask = np.asarray(inputs["completion_mask"])
    lengths = mask.sum(axis=1)
    assert (~mask[:, 0]).all() and (~mask).sum(axis=1).min() >= 1  # prompt tokens masked
    assert len(set(lengths.tolist())) >= 3  # completions of different lengths
    np.testing.assert_allclose(outputs["policy_logps"], np.where(mask, tokens, 0).sum(axis=1),
                               rtol=1e-15)
    averaged = {**inputs}
    for key in ("policy_token_logps", "reference_token_logps"):
        rows = np.asarray(inputs[key])
        averaged[key] = (rows / lengths[:, None]).tolist()
    wrong = compute_outputs(case["function"], averaged)
    assert abs(wrong["loss"] - outputs["loss"]) > 1e-6
    ignored = {**inputs, "completion_mask": np.ones_like(mask).tolist()}
    assert abs(compute_outputs(case["function"], ignored)["loss"] - outputs["loss"]) > 1e-6


def test_a_new_vectors_file_gets_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        path = write_vectors(tmp_path / "vectors.json")
    finally:
        os.umask(old)
    assert path.stat().st_mode & 0o777 == 0o644


# ------------------------------------------------------------------------------------------
# The modules are layered: cases -> compute/write -> check, the version in its own module


def _imports(module: str) -> set[str]:
    import ast

    path = Path(minikto.__file__).parent.joinpath(*module.split(".")[1:]).with_suffix(".py")
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            names.add("." * node.level + (node.module or ""))
            names.update("." * node.level + (node.module or "") + ":" + a.name
                         for a in node.names)
    return names


def test_the_vectors_modules_import_only_downwards_and_not_the_package_for_its_version():
    cases, vectors, check = (_imports(f"minikto.tools.{m}")
                             for m in ("vectors_cases", "vectors", "vectors_check"))
    assert not {".vectors", ".vectors_check"} & cases
    assert ".vectors_cases" in vectors and ".vectors_check" not in vectors
    assert ".vectors" in check
    for names in (cases, vectors, check):
        assert "..:__version__" not in names  # the version comes from minikto._version
    assert ".vectors_cases" in _imports("minikto.tools.check_cases")
    assert ".vectors" not in _imports("minikto.tools.check_cases")  # the inputs, not the file
