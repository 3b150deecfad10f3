"""Time one full KTO training step: minikto's hand-written gradients against PyTorch autograd.

One step, as ``minikto.training.train`` runs it with ``z0="batch"``: the policy's log-probs of the
matched pairs (kept for the backward), both policies' log-probs of the mismatched pairs (x_i with
y_{i-1}) for the batch estimate of z0, the KTO loss, and the gradient of every parameter (the
reference log-probs of the matched pairs are computed once before training, as ``train`` does).

Three ways to write that step, timed in turns on the same data over a grid of sizes: (a) the
step ``train`` runs; (b) the same composed from the public pieces by hand; (c) the same math in
PyTorch with autograd. On the CPU each way runs in processes of its own, taking turns. The
measuring on a shared machine is in ``harness.py``; the targets, the large gradient check, the
memory report and the options in ``report.py``. Usage (see docs/PERFORMANCE.md)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_step.py --json out.json
    python benchmarks/bench_step.py --sizes tiny,small --repeats 50
    python benchmarks/bench_step.py --backend cupy --sizes large,xlarge --json gpu.json
"""

from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness  # noqa: E402  (the benchmarks are a folder of scripts)
import report  # noqa: E402
from report import targets  # noqa: E402, F401  (tests/test_benchmark_ways.py reads it here)

from minikto import SoftmaxPolicy  # noqa: E402
from minikto.backend import to_numpy  # noqa: E402
from minikto.kto import kl_estimate, kto_loss, mismatched_indices  # noqa: E402
from minikto.training.config import KTOConfig  # noqa: E402
from minikto.training.step import unpaired_step  # noqa: E402

BETA = 0.1

# ------------------------------------------------------------------------------------------
# The grid


@dataclass(frozen=True)
class Size:
    """One row of the grid."""

    name: str
    batch: int  # B, examples per step
    length: int  # T, tokens per response (fixed length: no end token, no padding)
    vocab: int  # V
    features: str | int  # "onehot" or the embedding width d
    prompts: int  # P, prompt ids

    @property
    def tokens(self) -> int:
        return self.batch * self.length

    @property
    def matmul_flops(self) -> int:
        """Flops of the step's (tokens x d x V) products: 3 forwards and 1 weight gradient."""
        return 0 if self.features == "onehot" else 8 * self.tokens * int(self.features) * self.vocab


SIZES = {  # B, T, V, features, P
    "tiny": Size("tiny", 64, 1, 16, "onehot", 8),
    "small": Size("small", 64, 4, 32, 32, 16),
    "medium": Size("medium", 256, 16, 1024, 128, 64),
    "large": Size("large", 512, 32, 8192, 256, 256),
}


def xlarge_for_device(free_bytes: int) -> Size:
    """The GPU-only row: as big as fits comfortably (torch keeps about five (N, V) arrays)."""
    batch, length, vocab, width = 1024, 64, 16384, 512
    while batch > 64 and 6 * batch * length * vocab * 4 > 0.6 * free_bytes:
        batch //= 2
    return Size("xlarge", batch, length, vocab, width, 1024)


# ------------------------------------------------------------------------------------------
# The problem: a policy a few steps away from its reference, a random batch


@dataclass
class Problem:
    size: Size
    policy: SoftmaxPolicy
    reference: SoftmaxPolicy
    prompts: Any
    responses: Any
    desirable: Any
    reference_logps: Any
    config: KTOConfig
    tokens: Any = None  # the batch checked once, as ``train`` checks its data when loaded


def make_problem(size: Size, backend: str, dtype: str = "float32", seed: int = 0) -> Problem:
    rng = np.random.default_rng(seed)
    reference = SoftmaxPolicy(
        size.vocab, size.prompts, features=size.features, seed=seed, backend=backend, dtype=dtype
    ).copy(frozen=True)
    policy = reference.copy(frozen=False)
    xp = policy.xp
    for name, value in policy.params.items():  # as if a few optimizer steps had been taken
        noise = 0.05 * rng.standard_normal(tuple(value.shape))
        policy.params[name] = value + xp.asarray(noise, dtype=policy.dtype)
    prompts = xp.asarray(rng.integers(0, size.prompts, size=size.batch))
    responses = xp.asarray(rng.integers(0, size.vocab, size=(size.batch, size.length)))
    desirable = xp.asarray(rng.random(size.batch) < 0.5)
    reference_logps = reference.sequence_logps(prompts, responses)  # once, before training
    config = KTOConfig(beta=BETA, z0="batch", batch_size=size.batch, dtype=dtype)
    tokens = policy.token_batch(prompts, responses)
    return Problem(
        size, policy, reference, prompts, responses, desirable, reference_logps, config, tokens
    )


# ------------------------------------------------------------------------------------------
# (a) and (b): minikto


def train_step(p: Problem) -> dict[str, Any]:
    """(a) The step ``train`` runs."""
    return unpaired_step(
        p.policy, p.reference, p.tokens, p.desirable, p.reference_logps, p.config
    ).grads


def hand_step(p: Problem) -> dict[str, Any]:
    """(b) The same step composed from the public pieces."""
    xp = p.policy.xp
    logps, cache = p.policy.sequence_logps(p.prompts, p.responses, return_cache=True)
    kl_responses = xp.take(p.responses, mismatched_indices(p.size.batch, xp), axis=0)
    estimate = kl_estimate(
        p.policy.sequence_logps(p.prompts, kl_responses),  # no cache: z0 is detached
        p.reference.sequence_logps(p.prompts, kl_responses),
    )
    out = kto_loss(logps, p.reference_logps, p.desirable, estimate.z0, beta=BETA)
    return p.policy.sequence_logps_backward(
        p.prompts, p.responses, out.grad_policy_logps, cache=cache
    )


# ------------------------------------------------------------------------------------------
# (c): PyTorch autograd, same math


class TorchStep:
    """The step in PyTorch: forward with autograd, ``torch.autograd.grad`` for the backward."""

    def __init__(self, p: Problem, device: str) -> None:
        import torch

        self.torch = torch
        f32 = torch.float32

        def tensor(x: Any, **kw: Any) -> Any:
            return torch.as_tensor(np.array(to_numpy(x)), device=device, **kw)  # a writable copy

        self.params = {
            k: tensor(v, dtype=f32).requires_grad_(True) for k, v in p.policy.params.items()
        }
        self.ref_params = {k: tensor(v, dtype=f32) for k, v in p.reference.params.items()}
        self.onehot = p.size.features == "onehot"
        if not self.onehot:
            self.e_prompt = tensor(p.policy.features.prompt_embedding, dtype=f32)
            self.e_state = tensor(p.policy.features.state_embedding, dtype=f32)
        self.prompts = tensor(p.prompts, dtype=torch.int64)
        self.responses = tensor(p.responses, dtype=torch.int64)
        self.desirable = tensor(p.desirable, dtype=torch.bool)
        self.reference_logps = tensor(p.reference_logps, dtype=f32)
        batch, length = p.size.batch, p.size.length
        self.flat_prompts = self.prompts[:, None].expand(batch, length).reshape(-1)
        self.bos = torch.full((batch, 1), p.size.vocab, dtype=torch.int64, device=device)

    def logits(self, params: dict, states: Any) -> Any:
        x = self.flat_prompts
        if self.onehot:
            return params["prompt"][x] + params["prev"][states] + params["bias"]
        hidden = self.e_prompt[x] + self.e_state[states]
        return self.torch.addmm(params["bias"], hidden, params["weight"])

    def sequence_logps(self, params: dict, responses: Any) -> Any:
        torch = self.torch
        states = torch.cat([self.bos, responses[:, :-1]], dim=1).reshape(-1)
        logp = torch.log_softmax(self.logits(params, states), dim=-1)
        token = logp.gather(1, responses.reshape(-1, 1))
        return token.view(responses.shape).sum(dim=1)

    def __call__(self) -> dict[str, Any]:
        torch = self.torch
        logps = self.sequence_logps(self.params, self.responses)
        with torch.no_grad():  # z0 is detached: no graph for the mismatched pairs
            kl_responses = torch.roll(self.responses, 1, dims=0)
            ratio = self.sequence_logps(self.params, kl_responses) - self.sequence_logps(
                self.ref_params, kl_responses
            )
            z0 = ratio.mean().clamp(min=0)
        logratio = logps - self.reference_logps
        z = torch.where(self.desirable, BETA * (logratio - z0), BETA * (z0 - logratio))
        loss = torch.sigmoid(-z).mean()  # lambda_D = lambda_U = 1
        grads = torch.autograd.grad(loss, list(self.params.values()))
        return dict(zip(self.params, grads, strict=True))


# ------------------------------------------------------------------------------------------
# Alternating rounds: on the CPU each way in fresh processes, in one process on a GPU

BLOCKS = 3  # on the CPU each way is timed in this many processes, taking turns
REPEATS = {"tiny": 200, "small": 200, "medium": 20, "large": 5}  # default timed steps


def step_of(way: str, p: Problem, device: str = "cpu") -> Any:
    """The function that runs one step of ``way``: "train", "hand" or "torch"."""
    if way == "torch":
        return TorchStep(p, device)
    return {"train": lambda: train_step(p), "hand": lambda: hand_step(p)}[way]


def run_size(size: Size, args: Any, ways: list[str]) -> dict[str, Any]:
    """Times (and matmul rate, memory, agreement with torch) of the ways at one size."""
    repeats = args.repeats or REPEATS.get(size.name, 5)
    r: dict[str, Any] = {"size": asdict(size), "tokens": size.tokens, "repeats": repeats}
    if args.wait_quiet:
        r["quiet_wait"] = harness.wait_for_quiet(args.wait_quiet)
    if args.backend == "numpy":
        times: dict[str, list[float]] = {way: [] for way in ways}
        runs: dict[str, list[dict]] = {way: [] for way in ways}
        for k in range(min(BLOCKS, repeats)):
            count = str(repeats // BLOCKS + (k < repeats % BLOCKS))
            for way in ways[k % len(ways) :] + ways[: k % len(ways)]:  # a b c, b c a, c a b
                run = harness.run_child(
                    __file__, ["--worker", way, "--sizes", size.name, "-r", count]
                )
                times[way] += run["times"]
                runs[way].append(run)
        r.update(report.cpu_extras(__file__, size, repeats, runs, memory=not args.no_memory))
        device = "cpu"
    else:
        p, device = make_problem(size, args.backend), "cuda"
        fns = {way: step_of(way, p, device) for way in ways}
        stats: dict[str, Any] = {}
        sync = harness.synchronizer("cupy")
        times = harness.time_round_robin(fns, repeats, 1 if size.tokens > 4096 else 5, sync, stats)
        r.update(report.gpu_extras(size, repeats, fns, stats, memory=not args.no_memory))
    r["time"] = {way: harness.summary(t) for way, t in times.items()}
    if "torch" in ways:
        p = make_problem(size, args.backend)
        r["torch_grad_rel_diff"] = report.agreement(train_step(p), TorchStep(p, device)())
    if r.get("matmul"):
        gflops = {w: size.matmul_flops / t["median"] / 1e9 for w, t in r["time"].items()}
        r["achieved_gflops"] = gflops
        r["matmul_fraction"] = {w: g / r["matmul"]["gflops"] for w, g in gflops.items()}
    return r


# ------------------------------------------------------------------------------------------
# The table


def cell(s: dict[str, float]) -> str:
    """A median time and half the interquartile range, in percent."""
    return f"{harness.fmt_time(s['median'])} ±{(s['q3'] - s['q1']) / s['median'] * 50:.0f}%"


def table(results: list[dict[str, Any]], backend: str) -> str:
    other = "torch CUDA" if backend == "cupy" else "torch"
    lines = [
        f"{'size':<7} {'tokens':>7} {'(a) train':>16} {'(b) by hand':>16} {f'(c) {other}':>16} "
        f"{'speed-up a':>10} {'GFLOP/s a|c':>13} {'matmul':>8} {'mm %':>9}"
    ]
    for r in results:
        t, gf, frac = r["time"], r.get("achieved_gflops"), r.get("matmul_fraction")
        cells = [cell(t[w]) if w in t else "-" for w in ("train", "hand", "torch")]
        speed = f"{t['torch']['median'] / t['train']['median']:.2f}x" if "torch" in t else "-"
        rates = f"{'n/a':>13} {'-':>8} {'-':>9}"
        if gf:
            c_gf = f"{gf['torch']:.0f}" if "torch" in gf else "-"
            c_frac = f"{frac['torch']:.0%}" if "torch" in frac else "-"
            rates = (
                f"{gf['train']:>6.0f}|{c_gf:<6} {r['matmul']['gflops']:>8.0f} "
                f"{frac['train']:>4.0%}|{c_frac:<4}"
            )
        lines.append(
            f"{r['size']['name']:<7} {r['tokens']:>7} {cells[0]:>16} {cells[1]:>16} "
            f"{cells[2]:>16} {speed:>10} {rates}"
        )
    lines += [
        "",
        "median ±half the interquartile range; speed-up = (c) / (a); GFLOP/s counts "
        "the (tokens x d x V) products only; mm % = that rate / the plain matmul rate",
    ]
    return "\n".join(lines + report.memory_lines(results))


# ------------------------------------------------------------------------------------------
# Command line


def main(argv: list[str] | None = None) -> int:
    args = report.options(__doc__.split("\n\n")[0], argv)
    if args.memory_probe or args.worker:  # a fresh process: time one way or probe its memory
        size = SIZES[args.sizes]
        harness.child(args, size, lambda way: step_of(way, make_problem(size, "numpy")))
        return 0
    free = report.gpu_free_bytes() if args.backend == "cupy" else None
    names = report.size_names(args.sizes, list(SIZES), free)
    info = harness.machine(args.backend)
    ways = ["train", "hand"] + ([] if report.torch_missing(args.backend, info) else ["torch"])
    results = []
    for size in [xlarge_for_device(free) if n == "xlarge" else SIZES[n] for n in names]:
        print(
            f"- {size.name}: B={size.batch} T={size.length} V={size.vocab} "
            f"features={size.features} prompts={size.prompts}",
            flush=True,
        )
        results.append(run_size(size, args, ways))
        print(report.rounds_note(results[-1]))
    check = None
    if not args.no_gradcheck and "large" in names:
        check = report.large_gradcheck(make_problem(SIZES["large"], args.backend, "float64"), args)
    print("\n" + table(results, args.backend))
    report.finish(results, check, info, args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
