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
random-direction gradient check of the large model in float64.

Usage (see docs/PERFORMANCE.md)::

    env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE python benchmarks/bench_step.py --json out.json
    python benchmarks/bench_step.py --sizes tiny,small --repeats 50
    python benchmarks/bench_step.py --backend cupy --sizes large,xlarge --json gpu.json

The benchmark never runs in CI's test command.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import statistics
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from minikto import SoftmaxPolicy
from minikto.backend import to_numpy
from minikto.gradcheck import gradcheck
from minikto.kto import kl_estimate, kto_loss, mismatched_indices
from minikto.objective import FlatObjective
from minikto.training.config import KTOConfig
from minikto.training.step import unpaired_step

BETA = 0.1
GRADCHECK_LIMIT_S = 30.0

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
        if self.features == "onehot":
            return 0
        return 4 * 2 * self.tokens * int(self.features) * self.vocab


SIZES = {
    "tiny": Size("tiny", 64, 1, 16, "onehot", 8),
    "small": Size("small", 64, 4, 32, 32, 16),
    "medium": Size("medium", 256, 16, 1024, 128, 64),
    "large": Size("large", 512, 32, 8192, 256, 256),
}

#: Targets of the issue: (size, minimum speed-up of minikto's step over torch autograd).
SPEED_TARGETS = {"tiny": 3.0, "small": 3.0, "medium": 1.2, "large": 1.2}
MATMUL_FRACTION_TARGET = 0.75  # at large: the step's matmul flops / step time vs matmul rate


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
    return Problem(size, policy, reference, prompts, responses, desirable, reference_logps, config)


# ------------------------------------------------------------------------------------------
# (a) and (b): minikto


def train_step(p: Problem) -> dict[str, Any]:
    """(a) The step ``train`` runs."""
    return unpaired_step(
        p.policy, p.reference, p.prompts, p.responses, p.desirable, p.reference_logps, p.config
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
            return torch.as_tensor(np.ascontiguousarray(to_numpy(x)), device=device, **kw)

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
# Timing


def synchronizer(backend: str) -> Callable[[], None]:
    """Wait for queued GPU work (CuPy and torch CUDA); a no-op on the CPU."""
    if backend != "cupy":
        return lambda: None
    import cupy

    def sync() -> None:
        cupy.cuda.Device().synchronize()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.synchronize()
        except ImportError:
            pass

    return sync


class OtherJobs:
    """CPU time that other processes used while this one ran (Linux ``/proc``; else nothing).

    ``/proc/stat`` counts the busy time of every CPU; ``/proc/self/stat`` this process's own
    (all its threads, BLAS and OpenMP workers included). The difference is the others'.
    """

    def __init__(self) -> None:
        self.hz = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
        self.cpus = os.cpu_count() or 1
        self.available = self._read() is not None

    def _read(self) -> tuple[int, int] | None:
        try:
            with open("/proc/stat") as f:
                fields = [int(v) for v in f.readline().split()[1:]]
            with open("/proc/self/stat") as f:
                own = f.read().rsplit(")", 1)[1].split()
        except (OSError, ValueError, IndexError):
            return None
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)
        return busy, int(own[11]) + int(own[12])  # utime + stime of this process

    def start(self) -> tuple[tuple[int, int] | None, float]:
        return self._read(), time.perf_counter()

    def share(self, mark: tuple[tuple[int, int] | None, float]) -> float:
        """The others' share of all CPUs since ``mark`` (0 when it cannot be told)."""
        before, t0 = mark
        after = self._read()
        if before is None or after is None:
            return 0.0
        seconds = time.perf_counter() - t0
        others = (after[0] - before[0]) - (after[1] - before[1])
        return max(0.0, others / self.hz / max(seconds * self.cpus, 1e-9))


#: A group of rounds during which other jobs used more than this share of the CPUs is retaken.
DISTURBED_SHARE = 0.10
#: Between two contenders, after a call longer than SETTLE_AFTER_S, wait SETTLE_S (untimed):
#: OpenBLAS's worker threads spin for up to ~0.1 s after a product (and OpenMP's for a
#: while), which would take a core from whichever contender runs next. (One contender
#: alone runs its steps back to back, as a training loop does.)
SETTLE_AFTER_S = 0.02
SETTLE_S = 0.15


def time_round_robin(
    fns: dict[str, Callable[[], Any]],
    repeats: int,
    warmup: int,
    sync: Callable[[], None],
    stats: dict[str, Any] | None = None,
) -> dict[str, list[float]]:
    """Seconds per call of each function, measured in turns (a, b, c, b, c, a, c, a, b, ...).

    Taking turns spreads any change of the machine's load evenly over the contenders, and
    rotating who goes first gives each the same predecessors: BLAS and OpenMP worker threads
    keep spinning for a while after a call, and a freed heap must be faulted in again, which
    would otherwise always fall on the same contender. On a
    shared machine the rounds are also taken in groups of about half a second: a group during
    which other processes used more than :data:`DISTURBED_SHARE` of the CPUs is thrown away
    and taken again, until three times the rounds asked for have been taken; after that every
    group is kept (``stats`` tells how many rounds were thrown away, and whether every kept
    group was clean).
    """
    for _ in range(warmup):
        for fn in fns.values():
            fn()
    sync()
    watch = OtherJobs()
    times: dict[str, list[float]] = {name: [] for name in fns}
    kept = dropped = taken = 0
    kept_disturbed = False
    per_group = 1
    while kept < repeats:
        mark = watch.start()
        group: dict[str, list[float]] = {name: [] for name in fns}
        for _ in range(min(per_group, repeats - kept)):
            turn = taken + len(next(iter(group.values())))
            names = list(fns)[turn % len(fns) :] + list(fns)[: turn % len(fns)]
            for name in names:
                fn = fns[name]
                sync()
                start = time.perf_counter()
                fn()
                sync()
                seconds = time.perf_counter() - start
                group[name].append(seconds)
                if len(fns) > 1 and seconds > SETTLE_AFTER_S:
                    time.sleep(SETTLE_S)  # not timed: let spinning worker threads sleep
        rounds = len(next(iter(group.values())))
        taken += rounds
        elapsed = time.perf_counter() - mark[1]
        if elapsed < 0.5 and per_group < 10_000:  # grow groups to ~0.5 s (clock ticks: 10 ms)
            per_group = max(per_group * 2, int(per_group * 0.5 / max(elapsed, 1e-6)))
        disturbed = watch.available and watch.share(mark) > DISTURBED_SHARE
        if disturbed and taken < 3 * repeats:
            dropped += rounds
            continue
        kept_disturbed = kept_disturbed or disturbed
        for name in fns:
            times[name].extend(group[name])
        kept += rounds
    if stats is not None:
        stats.update({"rounds_dropped": dropped, "all_clean": not kept_disturbed})
    return times


def summary(times: list[float]) -> dict[str, float]:
    """Median, quartiles, min and max in seconds."""
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return {
        "median": statistics.median(times),
        "q1": q[0],
        "q3": q[2],
        "min": min(times),
        "max": max(times),
        "n": len(times),
    }


def matmul_rate(size: Size, backend: str, repeats: int) -> dict[str, float] | None:
    """The plain float32 ``matmul`` rate of the step's shapes, measured now.

    ``(N, d) @ (d, V)`` (the forward) and ``(d, N) @ (N, V)`` (the weight gradient); the
    step does three of the first and one of the second, so the rate is weighted likewise.
    """
    if size.features == "onehot":
        return None
    if backend == "cupy":
        import cupy as nx
    else:
        nx = np
    n, d, v = size.tokens, int(size.features), size.vocab
    rng = np.random.default_rng(1)
    h = nx.asarray(rng.standard_normal((n, d), dtype=np.float32))
    w = nx.asarray(rng.standard_normal((d, v), dtype=np.float32))
    g = nx.empty((n, v), dtype=nx.float32)
    g[...] = 0.5
    sync = synchronizer(backend)
    times = time_round_robin(
        {"forward": lambda: h @ w, "weight_grad": lambda: h.T @ g},
        repeats=max(3, repeats),
        warmup=1,
        sync=sync,
    )
    fwd, bwd = statistics.median(times["forward"]), statistics.median(times["weight_grad"])
    return {
        "forward_s": fwd,
        "weight_grad_s": bwd,
        "step_matmul_s": 3 * fwd + bwd,
        "gflops": size.matmul_flops / (3 * fwd + bwd) / 1e9,
    }


def cpu_busy_fraction(seconds: float = 1.0) -> float | None:
    """Fraction of all CPUs busy over ``seconds`` (from ``/proc/stat``; None elsewhere)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat") as f:
            fields = [int(v) for v in f.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    return 1.0 - (idle1 - idle0) / max(1, total1 - total0)


def wait_for_quiet(max_wait_s: float, busy_below: float = 0.15) -> dict[str, Any]:
    """Wait (at most ``max_wait_s``) until other jobs leave the CPUs idle for 3 s in a row.

    On a shared machine other jobs take cores in bursts, and a matrix product whose threads
    wait for a busy core can take several times longer. This only waits: it changes nothing.
    """
    start = time.monotonic()
    calm, busy = 0, None
    while max_wait_s > 0 and time.monotonic() - start < max_wait_s:
        busy = cpu_busy_fraction(1.0)
        if busy is None:
            break
        calm = calm + 1 if busy < busy_below else 0
        if calm >= 3:
            break
    return {"waited_s": time.monotonic() - start, "busy_before": busy, "quiet": calm >= 3}


# ------------------------------------------------------------------------------------------
# Memory


def numpy_tracemalloc_peak(fn: Callable[[], Any]) -> int:
    """Peak bytes NumPy allocates during ``fn()`` beyond what was live before (tracemalloc).

    NumPy reports its array buffers to tracemalloc, so this counts every temporary array.
    """
    gc.collect()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        fn()
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return peak - before


def rss_probe_available() -> bool:
    """Linux lets a process reset its peak resident set size (``/proc/self/clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _status_kib(field: str) -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def rss_peak_in_this_process(fn: Callable[[], Any]) -> int:
    """Peak resident memory during ``fn()`` above the resident memory before it, in bytes.

    The kernel's high-water mark ``VmHWM`` is reset to the current ``VmRSS`` (write "5" to
    ``/proc/self/clear_refs``), ``fn`` runs, and ``VmHWM - VmRSS_before`` is what the call
    needed at its peak, whoever allocated it (NumPy, BLAS, torch's allocator).
    """
    gc.collect()
    before = _status_kib("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
    fn()
    return max(0, _status_kib("VmHWM") - before) * 1024


def rss_peak_in_subprocess(way: str, size: Size) -> int | None:
    """Run :func:`rss_peak_in_this_process` for one way in a fresh Python (clean heap)."""
    cmd = [sys.executable, os.path.abspath(__file__), "--memory-probe", way, "--sizes", size.name]
    # A fixed mmap threshold: glibc then maps every block of 128 KiB or more on its own and
    # unmaps it when freed, so a step's arrays cannot hide in heap memory kept from the
    # warm-up step (glibc's default threshold grows with the blocks freed, up to 32 MiB).
    env = dict(os.environ, MALLOC_MMAP_THRESHOLD_="131072")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    if out.returncode != 0:
        print(f"  memory probe {way}/{size.name} failed: {out.stderr.strip()[-300:]}")
        return None
    return int(json.loads(out.stdout.strip().splitlines()[-1])["rss_peak_bytes"])


def memory_probe(way: str, size: Size) -> None:
    """The child side of :func:`rss_peak_in_subprocess`: prints one JSON line."""
    p = make_problem(size, "numpy")
    fn = {"train": lambda: train_step(p), "hand": lambda: hand_step(p)}.get(way)
    if way == "torch":
        fn = TorchStep(p, "cpu")
    fn()  # warm-up: first-call allocations (BLAS buffers, torch's thread pool) not counted
    print(json.dumps({"rss_peak_bytes": rss_peak_in_this_process(fn)}))


def gpu_peak(fn: Callable[[], Any], library: str) -> int:
    """Bytes the caching allocator holds at the peak of ``fn()`` (CuPy pool or torch CUDA)."""
    if library == "torch":
        import torch

        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        before = torch.cuda.memory_reserved()
        torch.cuda.reset_peak_memory_stats()
        fn()
        torch.cuda.synchronize()
        return torch.cuda.max_memory_reserved() - before
    import cupy

    pool = cupy.get_default_memory_pool()
    cupy.cuda.Device().synchronize()
    pool.free_all_blocks()
    before = pool.total_bytes()
    fn()
    cupy.cuda.Device().synchronize()
    return pool.total_bytes() - before  # the pool only grows during fn: its high-water mark


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
# One size


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


def run_size(size: Size, args: argparse.Namespace, torch_why_not: str | None) -> dict[str, Any]:
    """Time, rate and memory of one size: on the CPU each way in its own process."""
    repeats = args.repeats or default_repeats(size)
    result: dict[str, Any] = {"size": asdict(size), "tokens": size.tokens, "repeats": repeats}
    if args.wait_quiet:
        result["quiet_wait"] = wait_for_quiet(args.wait_quiet)
    ways = ["train", "hand"] + ([] if torch_why_not else ["torch"])
    if args.backend == "numpy":
        # A fresh Python per way: one library's worker threads, allocator and page state
        # cannot then slow the next one down (measured here: a NumPy step right after a
        # torch step is 10-30 % slower, in the same process, even after a pause).
        # The repeats are split into BLOCKS turns of the three workers (a, b, c, b, c, a,
        # c, a, b), so that a change of the machine's load falls on all of them alike.
        times: dict[str, list[float]] = {way: [] for way in ways}
        timing: dict[str, dict[str, Any]] = {}
        tracemalloc_bytes: dict[str, int] = {}
        counts = [repeats // BLOCKS + (k < repeats % BLOCKS) for k in range(BLOCKS)]
        for k, count in enumerate(c for c in counts if c > 0):
            for way in ways[k % len(ways) :] + ways[: k % len(ways)]:
                run = run_worker(way, size, count)
                times[way] += run["times"]
                previous = timing.get(way, {"rounds_dropped": 0, "all_clean": True})
                timing[way] = {
                    "rounds_dropped": previous["rounds_dropped"] + run["timing"]["rounds_dropped"],
                    "all_clean": previous["all_clean"] and run["timing"]["all_clean"],
                }
                if "tracemalloc_bytes" in run:
                    tracemalloc_bytes[way] = run["tracemalloc_bytes"]
        rate = run_worker("matmul", size, repeats)["matmul"]
        result["time"] = {way: summary(t) for way, t in times.items()}
        result["timing"] = timing
        if not args.no_memory:
            memory: dict[str, Any] = {"tracemalloc_bytes": tracemalloc_bytes}
            if rss_probe_available():
                memory["rss_peak_bytes"] = {w: rss_peak_in_subprocess(w, size) for w in ways}
            result["memory"] = memory
        if torch_why_not is None:
            p = make_problem(size, "numpy")
            result["torch_grad_rel_diff"] = agreement(train_step(p), TorchStep(p, "cpu")())
    else:
        p = make_problem(size, args.backend)
        fns: dict[str, Callable[[], Any]] = {
            "train": lambda: train_step(p),
            "hand": lambda: hand_step(p),
        }
        if torch_why_not is None:
            fns["torch"] = TorchStep(p, "cuda")
            result["torch_grad_rel_diff"] = agreement(train_step(p), fns["torch"]())
        stats: dict[str, Any] = {}
        times = time_round_robin(
            fns,
            repeats,
            warmup=1 if size.tokens > 4096 else 5,
            sync=synchronizer("cupy"),
            stats=stats,
        )
        result["time"] = {name: summary(t) for name, t in times.items()}
        result["timing"] = {"all": stats}
        rate = matmul_rate(size, "cupy", repeats)
        if not args.no_memory:
            pool = {"train": gpu_peak(fns["train"], "cupy")}
            if "torch" in fns:
                pool["torch"] = gpu_peak(fns["torch"], "torch")
            result["memory"] = {"pool_peak_bytes": pool}

    result["matmul"] = rate
    if rate is not None:
        result["achieved_gflops"] = {
            name: size.matmul_flops / t["median"] / 1e9 for name, t in result["time"].items()
        }
        result["matmul_fraction"] = {
            name: g / rate["gflops"] for name, g in result["achieved_gflops"].items()
        }
    return result


#: On the CPU each way is timed in this many separate processes, taking turns.
BLOCKS = 3


def run_worker(way: str, size: Size, repeats: int) -> dict[str, Any]:
    """Run :func:`worker` in a fresh Python; its JSON line back as a dict."""
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        way,
        "--sizes",
        size.name,
        "--repeats",
        str(repeats),
    ]
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=1800)
    if out.returncode != 0:
        raise RuntimeError(f"worker {way}/{size.name} failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def worker(way: str, size: Size, repeats: int) -> None:
    """The child side of :func:`run_worker` (NumPy backend): prints one JSON line."""
    if way == "matmul":
        print(json.dumps({"matmul": matmul_rate(size, "numpy", repeats)}))
        return
    p = make_problem(size, "numpy")
    fn = {"train": lambda: train_step(p), "hand": lambda: hand_step(p)}.get(way)
    if way == "torch":
        fn = TorchStep(p, "cpu")
    stats: dict[str, Any] = {}
    times = time_round_robin(
        {way: fn}, repeats, warmup=1 if size.tokens > 4096 else 5, sync=lambda: None, stats=stats
    )
    out: dict[str, Any] = {"times": times[way], "timing": stats}
    if way != "torch":
        out["tracemalloc_bytes"] = numpy_tracemalloc_peak(fn)
    print(json.dumps(out))


# ------------------------------------------------------------------------------------------
# Targets, table, machine


def targets(results: list[dict[str, Any]], check: dict | None, backend: str) -> list[dict]:
    """Every target of the issue that this run can judge, met or not, with the measure."""
    out = []
    by = {r["size"]["name"]: r for r in results}
    for name, r in by.items():
        t = r["time"]
        if "torch" not in t:
            continue
        speedup = t["torch"]["median"] / t["train"]["median"]
        if backend == "numpy" and name in SPEED_TARGETS:
            goal = SPEED_TARGETS[name]
            out.append(_target(f"{name}: NumPy step >= {goal:g}x faster than torch", speedup, goal))
        if backend == "cupy" and name in ("large", "xlarge"):
            out.append(_target(f"{name}: CuPy step >= torch CUDA", speedup, 1.0))
    large = by.get("large")
    if large and backend == "numpy" and large.get("matmul_fraction"):
        fraction = large["matmul_fraction"]["train"]
        out.append(
            _target("large: step >= 75% of the measured matmul rate", fraction, 0.75, "{:.0%}")
        )
    rss = (large or {}).get("memory", {}).get("rss_peak_bytes", {})
    if rss.get("train") and rss.get("torch"):
        ratio = rss["torch"] / rss["train"]
        out.append(_target("large: peak memory no higher than torch's", ratio, 1.0, "{:.2f}x less"))
    if check is not None:
        out.append(
            {
                "target": f"{check['size']}: random-direction gradcheck (float64) < 30 s",
                "measured": f"{check['total_s']:.1f} s (passed={check['passed']})",
                "met": check["met"],
            }
        )
    return out


def _target(label: str, value: float, goal: float, fmt: str = "{:.2f}x") -> dict[str, Any]:
    return {"target": label, "measured": fmt.format(value), "value": value, "met": value >= goal}


def _or_dash(value: float | None, fmt: str) -> str:
    return "-" if value is None else fmt.format(value)


def fmt_time(seconds: float) -> str:
    if seconds < 1e-3:
        return f"{seconds * 1e6:.0f} us"
    if seconds < 1:
        return f"{seconds * 1e3:.1f} ms"
    return f"{seconds:.2f} s"


def fmt_bytes(n: int | None) -> str:
    if n is None:
        return "-"
    return f"{n / 2**10:.0f} KiB" if abs(n) < 2**20 else f"{n / 2**20:.0f} MiB"


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
        if "tracemalloc_bytes" in m:
            tm, rss = m["tracemalloc_bytes"], m.get("rss_peak_bytes", {})
            mem_lines.append(
                f"{r['size']['name']:<7} tracemalloc (a) {fmt_bytes(tm['train']):>9} "
                f"(b) {fmt_bytes(tm['hand']):>9}   peak RSS (a) {fmt_bytes(rss.get('train')):>9} "
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


def machine(backend: str) -> dict[str, Any]:
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "env": {
            k: os.environ.get(k)
            for k in (
                "OPENBLAS_CORETYPE",
                "OPENBLAS_L2_SIZE",
                "OPENBLAS_NUM_THREADS",
                "OMP_NUM_THREADS",
            )
        },
    }
    try:
        blas = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        info["blas"] = f"{blas.get('name')} {blas.get('version')}"
    except Exception:  # the layout of show_config changes between NumPy versions
        info["blas"] = None
    try:
        import threadpoolctl

        info["threadpools"] = threadpoolctl.threadpool_info()
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        if backend == "cupy" and torch.cuda.is_available():
            info["gpu"] = torch.cuda.get_device_name()
    except ImportError:
        info["torch"] = None
    if backend == "cupy":
        import cupy

        info["cupy"] = cupy.__version__
        props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
        info.setdefault("gpu", props["name"].decode())
    return info


def _cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


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
    if args.memory_probe:
        memory_probe(args.memory_probe, SIZES[args.sizes])
        return 0
    if args.worker:
        worker(args.worker, SIZES[args.sizes], args.repeats)
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
