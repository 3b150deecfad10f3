"""What ``bench_step.py`` reports besides its table, and its options (optional reading).

The speed targets and their verdicts, the random-direction gradient check of the large model,
the matmul rate and the peak memory of a size, the gradients' agreement with torch, the notes
printed along the way, and the JSON record.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any

import numpy as np
from harness import (
    fmt_bytes,
    gpu_peak,
    matmul_rate,
    rss_probe_available,
    run_child,
    wait_for_quiet,
)

from minikto.backend import to_numpy
from minikto.gradcheck import gradcheck
from minikto.objective import FlatObjective

#: (size, minimum speed-up over torch autograd) for both minikto ways, (a) and (b).
SPEED_TARGETS = {"tiny": 3.0, "small": 3.0, "medium": 2.0, "large": 2.0}
MATMUL_FRACTION_TARGET = 0.75  # at large: the step's matmul flops / step time vs matmul rate
GRADCHECK_LIMIT_S = 20.0  # the large random-direction gradcheck, float64, 10 directions
#: Peak RSS of the step at large: the block-wise path's, 584 MiB as reported (< 584.5 MiB).
MEMORY_LIMIT_BYTES = int(584.5 * 2**20)


def large_gradcheck(p: Any, args: argparse.Namespace) -> dict[str, Any]:
    """``gradcheck(mode="directions", n_directions=10)`` in float64 via ``FlatObjective``."""
    print("- gradcheck of the large model (float64, 10 random directions)", flush=True)
    quiet = wait_for_quiet(args.wait_quiet) if args.wait_quiet else None
    start = time.perf_counter()
    obj = FlatObjective(p.policy, p.reference, p.prompts, p.responses, p.desirable, z0="batch")
    built = time.perf_counter()
    report = gradcheck(obj, obj.x0, mode="directions", n_directions=10)
    done = time.perf_counter()
    return {
        "size": p.size.name,
        "parameters": int(obj.x0.size),
        "build_s": built - start,
        "check_s": done - built,
        "total_s": done - start,
        "evaluations": report.evaluations,
        "passed": report.passed,
        "max_rel_error": report.max_rel_error,
        "max_abs_error": report.max_abs_error,
        "met": done - start < GRADCHECK_LIMIT_S,
        "quiet_wait": quiet,
    }


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
        out.append(_target("large: peak memory <= 584 MiB", ratio, 1.0, fmt_bytes(rss["train"])))
    if check is not None:
        out.append(
            {
                "target": f"{check['size']}: random-direction gradcheck (float64) "
                f"< {GRADCHECK_LIMIT_S:.0f} s",
                "measured": f"{check['total_s']:.1f} s (passed={check['passed']})",
                "met": check["met"],
            }
        )
    return out


def _target(label: str, value: float, goal: float, fmt: str = "{:.2f}x") -> dict[str, Any]:
    return {"target": label, "measured": fmt.format(value), "value": value, "met": value >= goal}


# ------------------------------------------------------------------------------------------
# Peak memory of one step


def cpu_extras(script: str, size: Any, repeats: int, runs: dict, memory: bool) -> dict:
    """After the timing processes of one size (``runs``: way -> their outputs): how many
    rounds were retaken, the matmul rate (a process of its own), the tracemalloc peaks and,
    on Linux, each way's peak RSS in a fresh ``script --memory-probe WAY``."""
    timing = {
        way: {
            "rounds_dropped": sum(r["timing"]["rounds_dropped"] for r in rs),
            "all_clean": all(r["timing"]["all_clean"] for r in rs),
        }
        for way, rs in runs.items()
    }
    traced = {way: rs[-1]["tracemalloc_bytes"] for way, rs in runs.items() if way != "torch"}
    out: dict[str, Any] = {"timing": timing, "memory": {"tracemalloc_bytes": traced}}
    if size.features != "onehot":
        argv = ["--worker", "matmul", "--sizes", size.name, "-r", str(repeats)]
        out["matmul"] = run_child(script, argv)["matmul"]
    if memory and rss_probe_available():
        # glibc then maps every block of 128 KiB or more on its own and unmaps it when
        # freed: a step's arrays cannot hide in heap memory kept from the warm-up step.
        env = {"MALLOC_MMAP_THRESHOLD_": "131072"}
        argv = ["--memory-probe", "{way}", "--sizes", size.name]
        probes = {w: run_child(script, [a.format(way=w) for a in argv], env) for w in runs}
        rss = {w: (r or {}).get("rss_peak_bytes") for w, r in probes.items()}
        out["memory"]["rss_peak_bytes"] = rss
    return out


def gpu_extras(size: Any, repeats: int, fns: dict, stats: dict, memory: bool) -> dict:
    """On a GPU: the retaken rounds, the matmul rate and the caching allocators' peaks."""
    out: dict[str, Any] = {"timing": {"all": stats}}
    if size.features != "onehot":
        out["matmul"] = matmul_rate(size.tokens, int(size.features), size.vocab, "cupy", repeats)
    if memory:
        pool = {w: gpu_peak(fn, "torch" if w == "torch" else "cupy") for w, fn in fns.items()}
        out["memory"] = {"pool_peak_bytes": pool}
    return out


def agreement(ours: dict[str, Any], theirs: dict[str, Any]) -> float:
    """Largest norm-wise relative difference between minikto's and torch's gradients."""
    worst = 0.0
    for k in ours:
        a = to_numpy(ours[k]).astype(np.float64)
        b = np.asarray(theirs[k].detach().cpu().numpy(), dtype=np.float64)
        worst = max(worst, float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-30)))
    return worst


def memory_lines(results: list[dict[str, Any]]) -> list[str]:
    """The report's lines on peak memory, one per size measured."""
    lines = []
    for r in results:
        m, name = r.get("memory"), r["size"]["name"]
        if not m:
            continue
        if "pool_peak_bytes" in m:
            pool = m["pool_peak_bytes"]
            lines.append(
                f"{name:<7} GPU pool peak (a) {fmt_bytes(pool.get('train')):>9} "
                f"torch CUDA {fmt_bytes(pool.get('torch')):>9}"
            )
            continue
        tm, rss = m.get("tracemalloc_bytes", {}), m.get("rss_peak_bytes", {})
        lines.append(
            f"{name:<7} tracemalloc (a) {fmt_bytes(tm.get('train')):>9} "
            f"(b) {fmt_bytes(tm.get('hand')):>9}   peak RSS (a) {fmt_bytes(rss.get('train')):>9} "
            f"(b) {fmt_bytes(rss.get('hand')):>9} torch {fmt_bytes(rss.get('torch')):>9}"
        )
    return ["", "peak memory of one step:", *lines] if lines else []


# ------------------------------------------------------------------------------------------
# Options, notes and the record


def options(description: str, argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument(
        "--sizes",
        default=None,
        help="comma-separated rows of the grid (tiny,small,medium,large; xlarge on a GPU); "
        "default: all of them",
    )
    ap.add_argument("-r", "--repeats", type=int, default=None, help="timed steps per way")
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


def size_names(sizes: str | None, grid: list[str], gpu_free: int | None) -> list[str]:
    """The rows asked for (``--sizes``): all of the grid by default, xlarge too on a GPU."""
    names = sizes.split(",") if sizes else [*grid, *(["xlarge"] if gpu_free else [])]
    for name in names:
        if name not in grid and not (name == "xlarge" and gpu_free):
            raise SystemExit(
                f"--sizes: expected names from {sorted(grid)}, or xlarge with --backend cupy; "
                f"got {name!r}"
            )
    return names


def gpu_free_bytes() -> int:
    """Free bytes of the GPU; exits naming --backend when CuPy or a CUDA GPU is missing."""
    try:
        import cupy

        return cupy.cuda.runtime.memGetInfo()[0]
    except Exception as err:  # ImportError, or CUDA errors without a GPU
        raise SystemExit(
            f"--backend: expected CuPy with a CUDA GPU for 'cupy' (pip install '.[gpu]'); "
            f"got {type(err).__name__}: {err}"
        ) from err


def torch_missing(backend: str, info: dict[str, Any]) -> bool:
    """Print the header line (the machine) and any note; True when torch cannot run."""
    print(
        f"minikto step benchmark: backend {backend}, float32, {info['cpu']} "
        f"({info['cpu_count']} CPUs), numpy {info['numpy']} ({info['blas']}), "
        f"torch {info.get('torch')}" + (f", GPU {info['gpu']}" if "gpu" in info else "")
    )
    if backend == "numpy" and (info["env"]["OPENBLAS_CORETYPE"] or info["env"]["OPENBLAS_L2_SIZE"]):
        print(
            "note: OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE are set; they can slow NumPy's BLAS "
            "(run under `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE`)"
        )
    why = torch_status("cuda" if backend == "cupy" else "cpu")
    if why:
        print(f"note: {why}")
    return why is not None


def torch_status(device: str) -> str | None:
    """None when torch can run on ``device``; else why not."""
    try:
        import torch
    except ImportError:
        return "torch is not installed (pip install '.[bench]'): torch columns skipped"
    if device == "cuda" and not torch.cuda.is_available():
        return "torch has no CUDA device here: torch CUDA columns skipped"
    return None


def rounds_note(result: dict[str, Any]) -> str:
    timing = result["timing"].values()
    note = (
        f"  ({sum(t['rounds_dropped'] for t in timing)} rounds retaken because other jobs "
        f"used the CPUs; every kept round clean: {all(t['all_clean'] for t in timing)})"
    )
    if "quiet_wait" in result:
        q = result["quiet_wait"]
        note += f"\n  (waited {q['waited_s']:.0f} s for a quiet machine: quiet={q['quiet']})"
    return note


def finish(results: list[dict], check: dict | None, info: dict, args: argparse.Namespace) -> None:
    """Print the gradient check and the targets; write the JSON record when asked."""
    info["load_average_end"] = list(os.getloadavg()) if hasattr(os, "getloadavg") else None
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
        record = {"machine": info, "backend": args.backend, "results": results}
        with open(args.json, "w") as f:
            json.dump({**record, "gradcheck": check, "targets": goals}, f, indent=1)
        print(f"\nwrote {args.json}")
