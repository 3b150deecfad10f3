"""Time one full KTO training step: minikto's hand-written gradients against PyTorch autograd.

One step, as ``minikto.training.train`` runs it with ``z0="batch"``: the policy's log-probs of the
matched pairs (kept for the backward), the policy's and the reference's log-probs of the
mismatched pairs (x_i with y_{i-1}) for the batch estimate of z0, the KTO loss, and the
gradient of every trainable parameter. The reference log-probs of the matched pairs are
computed once before training, as ``train`` does, and are not part of the step.

Three ways to write that step, timed in the same run, round-robin, on the same data:

(a) ``train``     - ``minikto.training.step.unpaired_step`` (which calls ``kto_objective``);
(b) ``by hand``   - composed from the public pieces as a learner would write it:
                    ``sequence_logps`` (with ``return_cache=True`` on the matched pairs, so
                    the backward reuses the probabilities instead of paying the forward
                    twice), ``kl_estimate``, ``kto_loss``, ``sequence_logps_backward``;
(c) ``torch``     - the same math in PyTorch with autograd (benchmark-only dependency): fixed
                    embeddings, trainable (d, V) weight and bias; for ``onehot`` a per-prompt
                    table, a per-previous-token table and a bias.

Also measured: the rate of the (tokens x d x V) matrix products of the step against the
plain float32 ``matmul`` rate of the same shapes, the peak memory of each way, and the
random-direction gradient check of the large model in float64. On the CPU each way runs in
processes of its own, taking turns. How that is measured on a shared machine (load
accounting, quiet-machine waits, memory probes, the machine's description) is in
``harness.py``.

Usage (see docs/PERFORMANCE.md)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_step.py --json out.json
    python benchmarks/bench_step.py --sizes tiny,small --repeats 50
    python benchmarks/bench_step.py --backend cupy --sizes large,xlarge --json gpu.json

The benchmark never runs in CI's test command.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from harness import (  # noqa: E402  (the benchmarks are a folder of scripts)
    fmt_bytes,
    fmt_time,
    gpu_peak,
    machine,
    matmul_rate,
    numpy_tracemalloc_peak,
    rss_peak_in_this_process,
    rss_probe_available,
    run_child,
    summary,
    synchronizer,
    time_round_robin,
    wait_for_quiet,
)

from minikto import SoftmaxPolicy  # noqa: E402
from minikto.backend import to_numpy  # noqa: E402
from minikto.gradcheck import gradcheck  # noqa: E402
from minikto.kto import kl_estimate, kto_loss, mismatched_indices  # noqa: E402
from minikto.objective import FlatObjective  # noqa: E402
from minikto.training.config import KTOConfig  # noqa: E402
from minikto.training.step import unpaired_step  # noqa: E402

BETA = 0.1

# ------------------------------------------------------------------------------------------
# The grid and the speed targets


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
        if self.features == "onehot":
            return 0
        return 4 * 2 * self.tokens * int(self.features) * self.vocab


SIZES = {
    "tiny": Size("tiny", 64, 1, 16, "onehot", 8),
    "small": Size("small", 64, 4, 32, 32, 16),
    "medium": Size("medium", 256, 16, 1024, 128, 64),
    "large": Size("large", 512, 32, 8192, 256, 256),
}

#: (size, minimum speed-up over torch autograd) for both minikto ways, (a) and (b).
SPEED_TARGETS = {"tiny": 3.0, "small": 3.0, "medium": 2.0, "large": 2.0}
MATMUL_FRACTION_TARGET = 0.75  # at large: the step's matmul flops / step time vs matmul rate
GRADCHECK_LIMIT_S = 20.0  # the large random-direction gradcheck, float64, 10 directions
#: Peak RSS of the step at large: the block-wise path's, 584 MiB as reported (< 584.5 MiB).
MEMORY_LIMIT_BYTES = int(584.5 * 2**20)


def xlarge_for_device(free_bytes: int) -> Size:
    """The GPU-only row: as big as fits comfortably (torch keeps about five (N, V) arrays)."""
    batch, length, vocab, width = 1024, 64, 16384, 512
    while batch > 64 and 6 * batch * length * vocab * 4 > 0.6 * free_bytes:
        batch //= 2
    return Size("xlarge", batch, length, vocab, width, 1024)


# ------------------------------------------------------------------------------------------
# The problem: a policy one step away from its reference, a random batch


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
        self.vocab = p.size.vocab
        self.prompts = tensor(p.prompts, dtype=torch.int64)
        self.responses = tensor(p.responses, dtype=torch.int64)
        self.desirable = tensor(p.desirable, dtype=torch.bool)
        self.reference_logps = tensor(p.reference_logps, dtype=f32)
        batch, length = p.size.batch, p.size.length
        self.flat_prompts = self.prompts[:, None].expand(batch, length).reshape(-1)
        self.bos = torch.full((batch, 1), self.vocab, dtype=torch.int64, device=device)

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


def torch_status(device: str) -> str | None:
    """None when torch can run on ``device``; else why not."""
    try:
        import torch
    except ImportError:
        return "torch is not installed (pip install '.[bench]'): torch columns skipped"
    if device == "cuda" and not torch.cuda.is_available():
        return "torch has no CUDA device here: torch CUDA columns skipped"
    return None


# ------------------------------------------------------------------------------------------
# Gradient check of the large model


def large_gradcheck(size: Size, backend: str) -> dict[str, Any]:
    """``gradcheck(mode="directions", n_directions=10)`` in float64 via ``FlatObjective``."""
    p = make_problem(size, backend, dtype="float64")
    start = time.perf_counter()
    obj = FlatObjective(p.policy, p.reference, p.prompts, p.responses, p.desirable, z0="batch")
    built = time.perf_counter()
    report = gradcheck(obj, obj.x0, mode="directions", n_directions=10)
    done = time.perf_counter()
    return {
        "size": size.name,
        "parameters": int(obj.x0.size),
        "build_s": built - start,
        "check_s": done - built,
        "total_s": done - start,
        "evaluations": report.evaluations,
        "passed": report.passed,
        "max_rel_error": report.max_rel_error,
        "max_abs_error": report.max_abs_error,
        "met": done - start < GRADCHECK_LIMIT_S,
    }


# ------------------------------------------------------------------------------------------
# One size: each way in its own processes (CPU), or in turns in this one (GPU)


def agreement(ours: dict[str, Any], theirs: dict[str, Any]) -> float:
    """Largest norm-wise relative difference between two gradient dicts."""
    worst = 0.0
    for k in ours:
        a = to_numpy(ours[k]).astype(np.float64)
        b = np.asarray(theirs[k].detach().cpu().numpy(), dtype=np.float64)
        worst = max(worst, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)))
    return worst


def default_repeats(size: Size) -> int:
    return {"tiny": 200, "small": 200, "medium": 20, "large": 5}.get(size.name, 5)


#: On the CPU each way is timed in this many separate processes, taking turns.
BLOCKS = 3


def step_of(way: str, p: Problem, device: str = "cpu") -> Callable[[], Any]:
    """The function that runs one step of ``way``: "train", "hand" or "torch"."""
    if way == "torch":
        return TorchStep(p, device)
    return {"train": lambda: train_step(p), "hand": lambda: hand_step(p)}[way]


def run_size(size: Size, args: argparse.Namespace, torch_why_not: str | None) -> dict[str, Any]:
    """Time, matmul rate and memory of one size."""
    repeats = args.repeats or default_repeats(size)
    result: dict[str, Any] = {"size": asdict(size), "tokens": size.tokens, "repeats": repeats}
    if args.wait_quiet:
        result["quiet_wait"] = wait_for_quiet(args.wait_quiet)
    ways = ["train", "hand"] + ([] if torch_why_not else ["torch"])
    me = [__file__]
    if args.backend == "numpy":  # turns of fresh processes: a, b, c, then b, c, a, ...
        times: dict[str, list[float]] = {way: [] for way in ways}
        timing: dict[str, dict[str, Any]] = {}
        traced: dict[str, int] = {}
        counts = [c for k in range(BLOCKS) if (c := repeats // BLOCKS + (k < repeats % BLOCKS))]
        for k, count in enumerate(counts):
            for way in ways[k % len(ways) :] + ways[: k % len(ways)]:
                argv = ["--worker", way, "--sizes", size.name, "--repeats", str(count)]
                run = run_child(*me, argv)
                times[way] += run["times"]
                old = timing.get(way, {"rounds_dropped": 0, "all_clean": True})
                timing[way] = {
                    "rounds_dropped": old["rounds_dropped"] + run["timing"]["rounds_dropped"],
                    "all_clean": old["all_clean"] and run["timing"]["all_clean"],
                }
                if "tracemalloc_bytes" in run:
                    traced[way] = run["tracemalloc_bytes"]
        result["time"] = {way: summary(t) for way, t in times.items()}
        result["timing"] = timing
        if size.features != "onehot":
            argv = ["--worker", "matmul", "--sizes", size.name, "--repeats", str(repeats)]
            result["matmul"] = run_child(*me, argv)["matmul"]
        result["memory"] = {"tracemalloc_bytes": traced}
        if not args.no_memory and rss_probe_available():
            # glibc then maps every block of 128 KiB or more on its own and unmaps it when
            # freed: a step's arrays cannot hide in heap memory kept from the warm-up step.
            env = {"MALLOC_MMAP_THRESHOLD_": "131072"}
            probe = {w: run_child(*me, ["--memory-probe", w, "--sizes", size.name], env)
                     for w in ways}
            result["memory"]["rss_peak_bytes"] = {
                w: (r or {}).get("rss_peak_bytes") for w, r in probe.items()
            }
        device = "cpu"
    else:
        p = make_problem(size, args.backend)
        fns = {way: step_of(way, p, "cuda") for way in ways}
        stats: dict[str, Any] = {}
        warmup = 1 if size.tokens > 4096 else 5
        times = time_round_robin(fns, repeats, warmup, synchronizer("cupy"), stats)
        result["time"] = {name: summary(t) for name, t in times.items()}
        result["timing"] = {"all": stats}
        if size.features != "onehot":
            d = int(size.features)
            result["matmul"] = matmul_rate(size.tokens, d, size.vocab, "cupy", repeats)
        if not args.no_memory:
            pool = {way: gpu_peak(fns[way], "torch" if way == "torch" else "cupy") for way in ways}
            result["memory"] = {"pool_peak_bytes": pool}
        device = "cuda"
    if torch_why_not is None:
        p = make_problem(size, args.backend)
        result["torch_grad_rel_diff"] = agreement(train_step(p), TorchStep(p, device)())
    if result.get("matmul"):
        rate = result["matmul"]["gflops"]
        result["achieved_gflops"] = {
            name: size.matmul_flops / t["median"] / 1e9 for name, t in result["time"].items()
        }
        result["matmul_fraction"] = {k: g / rate for k, g in result["achieved_gflops"].items()}
    return result


def child(args: argparse.Namespace) -> None:
    """A fresh process: time one way (``--worker``) or probe its memory (``--memory-probe``)."""
    size = SIZES[args.sizes]
    way = args.worker or args.memory_probe
    if way == "matmul":
        d = int(size.features)
        rate = matmul_rate(size.tokens, d, size.vocab, "numpy", args.repeats)
        print(json.dumps({"matmul": rate}))
        return
    fn = step_of(way, make_problem(size, "numpy"))
    if args.memory_probe:
        fn()  # warm-up: first-call allocations (BLAS buffers, torch's thread pool) not counted
        print(json.dumps({"rss_peak_bytes": rss_peak_in_this_process(fn)}))
        return
    stats: dict[str, Any] = {}
    warmup = 1 if size.tokens > 4096 else 5
    times = time_round_robin({way: fn}, args.repeats, warmup, lambda: None, stats)
    out: dict[str, Any] = {"times": times[way], "timing": stats}
    if way != "torch":
        out["tracemalloc_bytes"] = numpy_tracemalloc_peak(fn)
    print(json.dumps(out))


# ------------------------------------------------------------------------------------------
# Targets and table


def targets(results: list[dict[str, Any]], check: dict | None, backend: str) -> list[dict]:
    """Every speed target this run can judge, met or not, with the measure."""
    out = []
    by = {r["size"]["name"]: r for r in results}
    for name, r in by.items():
        t = r["time"]
        if "torch" not in t:
            continue
        for way, label in (("train", "(a) train step"), ("hand", "(b) step by hand")):
            speedup = t["torch"]["median"] / t[way]["median"]
            if backend == "numpy" and name in SPEED_TARGETS:
                goal = SPEED_TARGETS[name]
                out.append(_target(f"{name}: {label} >= {goal:g}x torch", speedup, goal))
            if backend == "cupy" and name in ("large", "xlarge") and way == "train":
                out.append(_target(f"{name}: CuPy step >= torch CUDA", speedup, 1.0))
    large = by.get("large", {})
    if backend == "numpy" and large.get("matmul_fraction"):
        fraction = large["matmul_fraction"]["train"]
        label = f"large: step >= {MATMUL_FRACTION_TARGET:.0%} of the measured matmul rate"
        out.append(_target(label, fraction, MATMUL_FRACTION_TARGET, "{:.0%}"))
    rss = large.get("memory", {}).get("rss_peak_bytes", {})
    if rss.get("train"):
        ratio = MEMORY_LIMIT_BYTES / rss["train"]
        label = "large: peak memory <= 584 MiB"
        out.append(_target(label, ratio, 1.0, f"{fmt_bytes(rss['train'])}"))
    if check is not None:
        out.append({
            "target": f"{check['size']}: random-direction gradcheck (float64) "
                      f"< {GRADCHECK_LIMIT_S:.0f} s",
            "measured": f"{check['total_s']:.1f} s (passed={check['passed']})",
            "met": check["met"],
        })
    return out


def _target(label: str, value: float, goal: float, fmt: str = "{:.2f}x") -> dict[str, Any]:
    return {"target": label, "measured": fmt.format(value), "value": value, "met": value >= goal}


def _or_dash(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def table(results: list[dict[str, Any]], backend: str) -> str:
    other = "torch CUDA" if backend == "cupy" else "torch"
    lines = [
        f"{'size':<7} {'tokens':>7} {'(a) train':>16} {'(b) by hand':>16} {f'(c) {other}':>16} "
        f"{'speed-up a':>10} {'GFLOP/s a|c':>13} {'matmul':>8} {'mm %':>9}"
    ]
    for r in results:
        t = r["time"]

        def cell(way: str, t: dict = t) -> str:
            if way not in t:
                return "-"
            s = t[way]
            spread = (s["q3"] - s["q1"]) / s["median"] * 50
            return f"{fmt_time(s['median'])} ±{spread:.0f}%"

        speed = f"{t['torch']['median'] / t['train']['median']:.2f}x" if "torch" in t else "-"
        gf = r.get("achieved_gflops")
        mm = r.get("matmul")
        frac = r.get("matmul_fraction")
        lines.append(
            f"{r['size']['name']:<7} {r['tokens']:>7} {cell('train'):>16} {cell('hand'):>16} "
            f"{cell('torch'):>16} {speed:>10} "
            + (
                f"{gf['train']:>6.0f}|{_or_dash(gf.get('torch'), '{:.0f}'):<6} "
                f"{mm['gflops']:>8.0f} "
                f"{frac['train']:>4.0%}|{_or_dash(frac.get('torch'), '{:.0%}'):<4}"
                if gf
                else f"{'n/a':>13} {'-':>8} {'-':>9}"
            )
        )
    lines.append("")
    lines.append(
        "median ±half the interquartile range; speed-up = (c) / (a); GFLOP/s counts the "
        "(tokens x d x V) products only; mm % = that rate / the plain matmul rate"
    )
    mem_lines = []
    for r in results:
        m = r.get("memory")
        if not m:
            continue
        if "pool_peak_bytes" not in m:
            tm, rss = m.get("tracemalloc_bytes", {}), m.get("rss_peak_bytes", {})
            mem_lines.append(
                f"{r['size']['name']:<7} tracemalloc (a) {fmt_bytes(tm.get('train')):>9} "
                f"(b) {fmt_bytes(tm.get('hand')):>9}   "
                f"peak RSS (a) {fmt_bytes(rss.get('train')):>9} "
                f"(b) {fmt_bytes(rss.get('hand')):>9} torch {fmt_bytes(rss.get('torch')):>9}"
            )
        else:
            pool = m["pool_peak_bytes"]
            mem_lines.append(
                f"{r['size']['name']:<7} GPU pool peak (a) {fmt_bytes(pool.get('train')):>9} "
                f"torch CUDA {fmt_bytes(pool.get('torch')):>9}"
            )
    if mem_lines:
        lines += ["", "peak memory of one step:"] + mem_lines
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# Command line


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--sizes",
        default=None,
        help="comma-separated rows of the grid (tiny,small,medium,large; xlarge on a GPU); "
        "default: all of them",
    )
    ap.add_argument(
        "--repeats", type=int, default=None, help="timed steps per way (default: by size)"
    )
    ap.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    ap.add_argument("--json", default=None, help="write every number to this file")
    ap.add_argument("--no-memory", action="store_true", help="skip the peak-memory measures")
    ap.add_argument("--no-gradcheck", action="store_true", help="skip the large gradcheck")
    ap.add_argument(
        "--wait-quiet",
        type=float,
        default=0.0,
        metavar="S",
        help="before each size, wait up to S seconds for other jobs to leave the CPUs idle "
        "(a shared machine); default 0: do not wait",
    )
    ap.add_argument("--memory-probe", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.memory_probe or args.worker:
        child(args)
        return 0
    if args.backend == "cupy":
        try:
            import cupy

            cupy.cuda.runtime.getDeviceCount()
        except Exception as err:  # ImportError, or CUDA errors without a GPU
            raise SystemExit(
                f"--backend: expected CuPy with a CUDA GPU for 'cupy' (pip install '.[gpu]'); "
                f"got {type(err).__name__}: {err}"
            ) from err
    names = args.sizes.split(",") if args.sizes else list(SIZES)
    sizes = []
    for name in names:
        if name == "xlarge":
            if args.backend != "cupy":
                raise SystemExit("--sizes: expected xlarge only with --backend cupy; got numpy")
            import cupy

            sizes.append(xlarge_for_device(cupy.cuda.runtime.memGetInfo()[0]))
        elif name in SIZES:
            sizes.append(SIZES[name])
        else:
            raise SystemExit(
                f"--sizes: expected names from {sorted(SIZES)} or xlarge; got {name!r}"
            )
    if args.backend == "cupy" and args.sizes is None:
        import cupy

        sizes.append(xlarge_for_device(cupy.cuda.runtime.memGetInfo()[0]))

    info = machine(args.backend)
    print(
        f"minikto step benchmark: backend {args.backend}, float32, {info['cpu']} "
        f"({info['cpu_count']} CPUs), numpy {info['numpy']} ({info['blas']}), "
        f"torch {info.get('torch')}" + (f", GPU {info['gpu']}" if "gpu" in info else "")
    )
    if args.backend == "numpy" and (
        info["env"]["OPENBLAS_CORETYPE"] or info["env"]["OPENBLAS_L2_SIZE"]
    ):
        print(
            "note: OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set; they can slow NumPy's BLAS "
            "(run under `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`)"
        )
    torch_why_not = torch_status("cuda" if args.backend == "cupy" else "cpu")
    if torch_why_not:
        print(f"note: {torch_why_not}")

    results = []
    for size in sizes:
        print(
            f"- {size.name}: B={size.batch} T={size.length} V={size.vocab} "
            f"features={size.features} prompts={size.prompts}",
            flush=True,
        )
        results.append(run_size(size, args, torch_why_not))
        timing = results[-1]["timing"].values()
        print(
            f"  ({sum(t['rounds_dropped'] for t in timing)} rounds retaken because other jobs "
            f"used the CPUs; every kept round clean: {all(t['all_clean'] for t in timing)})"
        )
        if "quiet_wait" in results[-1]:
            q = results[-1]["quiet_wait"]
            print(f"  (waited {q['waited_s']:.0f} s for a quiet machine: quiet={q['quiet']})")
    check = None
    if not args.no_gradcheck and any(s.name == "large" for s in sizes):
        print("- gradcheck of the large model (float64, 10 random directions)", flush=True)
        quiet = wait_for_quiet(args.wait_quiet) if args.wait_quiet else None
        check = large_gradcheck(SIZES["large"], args.backend)
        check["quiet_wait"] = quiet
    info["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None

    print()
    print(table(results, args.backend))
    if check:
        print(
            f"\ngradcheck {check['size']} ({check['parameters']} parameters, float64, "
            f"{check['evaluations']} evaluations): {check['total_s']:.1f} s "
            f"(objective {check['build_s']:.1f} s + check {check['check_s']:.1f} s), "
            f"passed={check['passed']}, max rel error {check['max_rel_error']:.1e}"
        )
    goals = targets(results, check, args.backend)
    if goals:
        print("\ntargets:")
        for g in goals:
            print(f"  [{'met' if g['met'] else 'NOT met'}] {g['target']}: {g['measured']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": info,
                    "backend": args.backend,
                    "results": results,
                    "gradcheck": check,
                    "targets": goals,
                },
                f,
                indent=1,
            )
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
