"""Benchmark: the Ray executor with 2 workers against the local executor, side by side.

    python benchmarks/bench_ray.py [--workers 2] [--limit 400] [--address HOST:PORT] [--json]
    pytest benchmarks/bench_ray.py     a small version under pytest-benchmark

Builds a 4-checkpoint series of tiny GPT-NeoX models (hidden 64, 4 layers, byte tokenizer) and
runs ``evalsuite run`` on it three times, each in a fresh process and an empty results folder: on
the local executor (one process, torch's default threads: one per core), on the local executor
with one torch thread (``OMP_NUM_THREADS=1``), and with ``--executor ray --workers 2`` (a local
Ray instance on 127.0.0.1; two workers, one torch thread each), or on the cluster at
``--address``. Each group (one checkpoint, all tasks) takes several seconds.

Reported, from one run of each:

- ``local_wall_s``, ``ray_wall_s``: wall time of the whole command (imports included);
- ``local_1thread_wall_s``: the local executor held to one torch thread, the yardstick for how
  well the Ray workers scale as processes (``ratio_vs_1thread``); the local executor's own
  threads already spread each forward pass over the cores, which is what Ray must beat;
- ``ratio``: local / Ray wall time;
- ``startup_s``: Ray's fixed cost, from the ``ray.init`` call to the first group starting on a
  worker (starting or joining the cluster, starting worker processes); ``worker_setup_s``: what
  a worker's first group then spends on imports and building tasks (the local run pays its own
  imports inside its wall time too);
- ``ratio_without_startup``: local / (Ray wall - startup_s), what a longer series approaches;
- ``values_equal``: every row equal between the two runs apart from timing fields;
- the load average before and after: on a shared machine other work moves wall times.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TIMING = {"wall_time_s", "timestamp"}


def build_series(root: Path, n_checkpoints: int, hidden: int, layers: int) -> Path:
    from evalsuite.testing import build_tiny_series

    steps = tuple(100 * i for i in range(n_checkpoints))
    return build_tiny_series(root / "bench", sizes=(("b", hidden, layers),), steps=steps,
                             tokens_per_step=1024)


def run_cli(series: Path, results: Path, args, extra: list[str], **env_extra) -> tuple[float, dict]:
    cmd = [sys.executable, "-m", "evalsuite", "run", str(series), "--tasks", args.tasks,
           "--limit", str(args.limit), "--results", str(results), "--json", *extra]
    if args.data_dir:
        cmd += ["--data-dir", str(args.data_dir)]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
           "HF_UPDATE_DOWNLOAD_COUNTS": "0", "TOKENIZERS_PARALLELISM": "false", **env_extra}
    t0 = time.perf_counter()
    out = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{out.stderr[-3000:]}")
    return wall, json.loads(out.stdout)


def rows(results: Path) -> dict:
    out = {}
    for line in (results / "rows.jsonl").read_text().splitlines():
        r = json.loads(line)
        out[(r["cell_key"], r["metric"])] = {k: v for k, v in r.items() if k not in TIMING}
    return out


def run_benchmark(args) -> dict:
    load_before = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="bench-ray-") as tmp:
        tmp = Path(tmp)
        series = build_series(tmp, args.checkpoints, args.hidden, args.layers)
        local_wall, local = run_cli(series, tmp / "local", args, [])
        one_wall, _ = run_cli(series, tmp / "local1", args, [], OMP_NUM_THREADS="1")
        ray_extra = ["--executor", "ray"] + (["--address", args.address] if args.address
                                             else ["--workers", str(args.workers)])
        ray_wall, ray = run_cli(series, tmp / "ray", args, ray_extra)
        equal = rows(tmp / "local") == rows(tmp / "ray") == rows(tmp / "local1")
    stats = ray["executor"]
    startup = stats.get("startup_s", 0.0)
    return {
        "series": f"{args.checkpoints} checkpoints, hidden {args.hidden}, {args.layers} layers",
        "tasks": args.tasks, "limit": args.limit, "cells": local["completed"],
        "workers": args.workers if not args.address else None, "address": args.address or "local",
        "local_wall_s": round(local_wall, 2), "local_1thread_wall_s": round(one_wall, 2),
        "ray_wall_s": round(ray_wall, 2), "ratio": round(local_wall / ray_wall, 2),
        "ratio_vs_1thread": round(one_wall / ray_wall, 2),
        "startup_s": startup, "ready_s": stats.get("ready_s"),
        "worker_setup_s": stats.get("worker_setup_s"),
        "ratio_without_startup": round(local_wall / max(1e-9, ray_wall - startup), 2),
        "groups_by_worker": stats.get("groups_by_worker"), "values_equal": equal,
        "cpu_count": os.cpu_count(),
        "load_avg_before": [round(x, 2) for x in load_before],
        "load_avg_after": [round(x, 2) for x in os.getloadavg()],
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=2, help="Ray workers (local instance)")
    p.add_argument("--address", default=None, help="an existing Ray cluster instead")
    p.add_argument("--checkpoints", type=int, default=4)
    p.add_argument("--hidden", type=int, default=64)
    p.add_argument("--layers", type=int, default=4)
    p.add_argument("--tasks", default="arc_easy,piqa")
    p.add_argument("--limit", type=int, default=400, help="items per task")
    p.add_argument("--data-dir", default=None,
                   help="benchmark data (default: ../shared/data/benchmarks beside the repo)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.data_dir is None:
        default = ROOT.parent / "shared" / "data" / "benchmarks"
        if not default.is_dir():
            raise SystemExit(f"{default} is absent: pass --data-dir with benchmark data laid out "
                             "like ../shared/data/benchmarks")
        args.data_dir = default
    r = run_benchmark(args)
    if args.json:
        print(json.dumps(r, indent=1))
        return 0
    print(f"series: {r['series']}; tasks {r['tasks']} x {r['limit']} items; {r['cells']} cells; "
          f"{r['cpu_count']} CPUs; load average {r['load_avg_before']} -> {r['load_avg_after']}")
    cols = ["local_wall_s", "local_1thread_wall_s", "ray_wall_s", "ratio", "ratio_vs_1thread",
            "startup_s", "worker_setup_s", "ratio_without_startup", "values_equal"]
    width = max(len(c) for c in cols)
    for c in cols:
        print(f"  {c.ljust(width)}  {r[c]}")
    print(f"  groups by worker: {r['groups_by_worker']}")
    return 0


def test_bench_ray(benchmark):
    """pytest-benchmark entry: the same comparison at a small size."""
    args = argparse.Namespace(workers=2, address=None, checkpoints=4, hidden=32, layers=2,
                              tasks="arc_easy", limit=50,
                              data_dir=ROOT.parent / "shared" / "data" / "benchmarks")
    r = benchmark.pedantic(run_benchmark, args=(args,), rounds=1)
    assert r["values_equal"] and r["cells"] == 4


if __name__ == "__main__":
    sys.exit(main())
