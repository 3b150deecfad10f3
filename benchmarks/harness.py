"""Measuring on a shared machine: the plumbing of ``bench_step.py`` (optional reading).

- :func:`time_round_robin`: timing several functions in turns, retaking the groups of rounds
  during which other processes used the CPUs (:class:`OtherJobs` reads ``/proc``);
- :func:`wait_for_quiet`: waiting for a quiet machine before a measurement;
- :func:`matmul_rate`: the plain float32 matrix-product rate of a step's shapes;
- peak memory: :func:`numpy_tracemalloc_peak`, :func:`rss_peak_in_this_process` (Linux),
  :func:`gpu_peak`; a fresh Python per measure: :func:`run_child`, which runs :func:`child`;
- :func:`machine`: what the numbers were measured on; :func:`fmt_time`, :func:`fmt_bytes`.
"""

from __future__ import annotations

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
from typing import Any

import numpy as np

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


def matmul_rate(n: int, d: int, v: int, backend: str, repeats: int) -> dict[str, float]:
    """The plain float32 ``matmul`` rate of a step's shapes, measured now.

    ``(n, d) @ (d, v)`` (a forward) and ``(d, n) @ (n, v)`` (the weight gradient); a KTO
    step does three of the first and one of the second, so the rate is weighted likewise.
    """
    if backend == "cupy":
        import cupy as nx
    else:
        nx = np
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
        "gflops": 4 * 2 * n * d * v / (3 * fwd + bwd) / 1e9,
    }


def wait_for_quiet(max_wait_s: float, busy_below: float = 0.15) -> dict[str, Any]:
    """Wait (at most ``max_wait_s``) until other jobs leave the CPUs idle for 3 s in a row.

    On a shared machine other jobs take cores in bursts, and a matrix product whose threads
    wait for a busy core can take several times longer. This only waits: it changes nothing.
    """
    watch, start = OtherJobs(), time.monotonic()
    calm, busy = 0, None
    while watch.available and time.monotonic() - start < max_wait_s:
        mark = watch.start()
        time.sleep(1.0)
        busy = watch.share(mark)  # this process sleeps: the others' share is all the load
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


def run_child(script: str, args: list[str], env: dict | None = None) -> dict[str, Any] | None:
    """Run ``python script *args`` in a fresh process; the last line of its output, as JSON.

    A fresh Python per measure: one library's worker threads, allocator and page state
    cannot then slow the next one down. None (and the error printed) when the child fails.
    """
    out = subprocess.run(
        [sys.executable, os.path.abspath(script), *args],
        capture_output=True,
        text=True,
        timeout=1800,
        env=None if env is None else dict(os.environ, **env),
    )
    if out.returncode != 0:
        print(f"  child {' '.join(args)} failed: {out.stderr.strip()[-500:]}")
        return None
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(args: Any, size: Any, step_of: Callable[[str], Callable[[], Any]]) -> None:
    """The fresh process of ``run_child``: print, as JSON, the times of ``args.repeats`` steps
    of the way ``args.worker`` (with NumPy's tracemalloc peak), its peak RSS
    (``args.memory_probe``), or the matmul rate of ``size`` (``--worker matmul``)."""
    way = args.worker or args.memory_probe
    if way == "matmul":
        rate = matmul_rate(size.tokens, int(size.features), size.vocab, "numpy", args.repeats)
        print(json.dumps({"matmul": rate}))
        return
    fn = step_of(way)
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
# Reporting


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


#: the environment variables that change how NumPy's BLAS runs, recorded with the numbers
THREAD_VARIABLES = (
    "OPENBLAS_CORETYPE",
    "OPENBLAS_L2_SIZE",
    "OPENBLAS_NUM_THREADS",
    "OMP_NUM_THREADS",
)


def machine(backend: str) -> dict[str, Any]:
    """What the numbers were measured on: Python, CPU, NumPy and its BLAS, torch, the GPU."""
    info: dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "cpu": _cpu_name(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "load_average_start": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "env": {k: os.environ.get(k) for k in THREAD_VARIABLES},
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
