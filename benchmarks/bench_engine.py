"""Engine benchmark: a 4-checkpoint series scored three ways, side by side, in one command.

    python benchmarks/bench_engine.py                      # issue sizes: 300 / 300 / 500 items
    python benchmarks/bench_engine.py --scale 0.1          # a tenth of the items (quick)
    python benchmarks/bench_engine.py --repeat 2           # 2 interleaved rounds, medians

Variants (each in its own subprocess, so peak memory is measured per variant):

- ``evalsuite``: one process; the runner itself (``run_series`` over the task folder as an
  ``--include-path``): tasks and requests built once, the model object reused across checkpoints,
  rows and per-sample files written to a scratch results folder.
- ``api``: one process; lm-eval's ``HFLM`` + ``simple_evaluate`` per checkpoint, with one
  ``TaskManager`` built once (over the local task folder only: the strongest form of the API loop).
- ``cli``: the ``lm_eval`` command once per checkpoint (``--include_path`` to the local tasks).

Tasks: arc_easy 5-shot, hellaswag, lambada_openai: the bundled tasks over the real items in
``../shared/data/benchmarks``, exported as plain lm-eval YAML (``TaskRegistry.export_lm_eval_yaml``)
so every variant, the ``lm_eval`` command included, reads the same task files. Models: random
GPT-NeoX models from ``evalsuite.testing``, about 5M parameters: by default hidden 128, 4 layers
and a 16k byte-level BPE vocabulary trained on LAMBADA's passages (``--tokenizer byte``: hidden
256, 6 layers, 257 byte tokens), fp32 on CPU. Printed: wall-clock per variant and ratios, tokens fed to
the model against the minimum (every distinct context once plus every continuation once),
peak resident memory per variant, and whether the metrics agree.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA = Path(os.environ.get("EVALSUITE_SHARED_DATA", REPO.parent / "shared" / "data"))
TASKS = ("es_arc_easy_5shot", "es_hellaswag", "es_lambada_openai")
PRIMARY = {"es_arc_easy_5shot": "acc,none", "es_hellaswag": "acc,none",
           "es_lambada_openai": "acc,none"}
OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1",
               "HF_UPDATE_DOWNLOAD_COUNTS": "0", "TOKENIZERS_PARALLELISM": "false"}


# ---------------------------------------------------------------------- setup (parent)
def build_tokenizer(kind: str, data: Path, vocab_size: int):
    """``bpe``: a byte-level BPE vocabulary trained on LAMBADA's 5,153 passages of novel prose
    (the text the benchmark's models would see), as real small models have; ``byte``: 257 tokens."""
    from evalsuite.testing import build_bpe_tokenizer, build_byte_tokenizer

    if kind == "byte":
        return build_byte_tokenizer()
    corpus = data / "lambada_openai" / "lambada_openai_test.llmfoundry.jsonl"
    texts = []
    for line in corpus.read_text().splitlines():
        doc = json.loads(line)
        texts.append(doc["context"] + doc["continuation"])
    return build_bpe_tokenizer(texts, vocab_size=vocab_size)


def build_series(root: Path, n: int, hidden: int, layers: int, tokenizer) -> list[Path]:
    from evalsuite.testing import build_tiny_model, perturb_model

    first = build_tiny_model(root / "step0", hidden_size=hidden, num_layers=layers,
                             num_heads=max(1, hidden // 64) if hidden >= 256 else 4, seed=0,
                             tokenizer=tokenizer)
    out = [first]
    for i in range(1, n):
        out.append(perturb_model(first, root / f"step{i}", scale=0.05 * i, seed=i))
    return out


def peak_rss_mb(who=resource.RUSAGE_SELF) -> float:
    return resource.getrusage(who).ru_maxrss / 1024.0  # Linux reports KiB


def primary_metrics(results: dict) -> dict:
    return {t: results["results"][t][PRIMARY[t]] for t in TASKS}


# ---------------------------------------------------------------------- variants (children)
def run_evalsuite(ckpts, task_dir, args) -> dict:
    """The evalsuite runner itself (``run_series``), as ``evalsuite run --include-path`` runs it:
    tasks built once, requests reused, the engine's model object reused across checkpoints, rows
    and per-sample files written to a scratch results folder."""
    from evalsuite import run as runner
    from evalsuite.engine import lm as engine_lm
    from evalsuite.records import RunConfig
    from evalsuite.tasks.registry import TaskRegistry
    from evalsuite.series import discover_series
    from evalsuite.store import ResultStore

    scan = discover_series(Path(ckpts[0]).parent)
    order = {str(Path(c)): i for i, c in enumerate(ckpts)}
    series = sorted((c for c in scan.checkpoints if str(Path(c.source)) in order),
                    key=lambda c: order[str(Path(c.source))])
    assert len(series) == len(ckpts), (scan.problems, [c.source for c in scan.checkpoints])
    registry = TaskRegistry(include_paths=[task_dir])
    specs = [registry.get(t) for t in TASKS]
    config = RunConfig(tasks=TASKS, engine="evalsuite", device="cpu", batch_size=args.batch_size,
                       bootstrap_iters=args.bootstrap_iters, include_path=str(task_dir))
    store = ResultStore(Path(tempfile.mkdtemp(prefix="bench_engine_results_")))

    # instrumentation only: each LM's work counters (read before the next checkpoint's load
    # resets the shared scorer), and the minimum tokens counted on the first checkpoint
    lms, stats, minimum = [], [], [0]
    counting = [0.0, 0.0]  # wall and CPU seconds spent counting the minimum (not evalsuite's work)
    original_create = engine_lm.create_lm

    def create(*a, **k):
        if lms:
            stats.append(lms[-1][0].stats.as_dict())
        lm = original_create(*a, **k)
        if not lms:
            original = lm.loglikelihood

            def counted(requests, disable_tqdm=False, _orig=original, _lm=lm):
                out = _orig(requests, disable_tqdm)
                # counted after scoring, from the LM's token cache, so that the time subtracted
                # below is the counting alone and never evalsuite's own tokenization
                w0, c0 = time.perf_counter(), time.process_time()
                minimum[0] += _lm.minimum_tokens(requests)
                counting[0] += time.perf_counter() - w0
                counting[1] += time.process_time() - c0
                return out

            lm.loglikelihood = counted
        lms.append((lm, lm.reused_model, lm.reused_tokens))
        return lm

    import evalsuite.engine as engine_pkg
    engine_lm.create_lm = engine_pkg.create_lm = create
    t_start = time.perf_counter()
    finished: dict[str, float] = {}  # checkpoint id -> when its last cell was written
    runner.run_series(series, specs, registry, store, config,
                      on_event=lambda msg: finished.__setitem__(msg.split(" ")[0],
                                                                time.perf_counter()))
    stats.append(lms[-1][0].stats.as_dict())
    rows = store.read_rows()
    per_ckpt, prev = [], t_start
    for ck, (_lm, reused_model, reused_tokens), st in zip(series, lms, stats):
        metrics = {r.task: r.value for r in rows if r.checkpoint_id == ck.id
                   and f"{r.metric},none" == PRIMARY.get(r.task)}
        end = finished.get(ck.id, prev)
        per_ckpt.append({"checkpoint": ck.source,
                         "wall_s": end - prev - (counting[0] if not per_ckpt else 0.0),
                         "metrics": {t: metrics.get(t) for t in TASKS},
                         "minimum_tokens": minimum[0] if not per_ckpt else None,
                         "tokens_real": st["tokens_forwarded"],
                         "tokens_with_padding": st["tokens_forwarded"] + st["tokens_padded"],
                         "reused_model": reused_model, "reused_tokens": reused_tokens})
        prev = end
    # The driver subtracts the counting from this variant's wall and CPU time.
    return {"checkpoints": per_ckpt, "instrumentation_s": counting[0],
            "instrumentation_cpu_s": counting[1]}


def run_api(ckpts, task_dir, args) -> dict:
    import lm_eval
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    tm = TaskManager(include_path=str(task_dir), include_defaults=False)
    per_ckpt = []
    for ckpt in ckpts:
        t0 = time.perf_counter()
        lm = HFLM(pretrained=str(ckpt), device="cpu", batch_size=args.batch_size,
                  dtype="float32")
        counts = {"padded": 0}
        original = lm._model_call

        def counted(inps, *a, _orig=original, **k):
            counts["padded"] += int(inps.numel())
            return _orig(inps, *a, **k)

        lm._model_call = counted
        res = lm_eval.simple_evaluate(model=lm, tasks=list(TASKS), log_samples=False,
                                      bootstrap_iters=args.bootstrap_iters, task_manager=tm)
        per_ckpt.append({"checkpoint": str(ckpt), "wall_s": time.perf_counter() - t0,
                         "metrics": primary_metrics(res),
                         "tokens_with_padding": counts["padded"]})
        del lm
    return {"checkpoints": per_ckpt}


def run_cli(ckpts, task_dir, args) -> dict:
    per_ckpt = []
    out_root = Path(tempfile.mkdtemp(prefix="bench_engine_cli_"))
    exe = Path(sys.executable).with_name("lm_eval")
    for i, ckpt in enumerate(ckpts):
        t0 = time.perf_counter()
        out = out_root / f"ckpt{i}"
        cmd = [str(exe) if exe.exists() else "lm_eval", "--model", "hf", "--model_args",
               f"pretrained={ckpt},dtype=float32", "--tasks", ",".join(TASKS),
               "--include_path", str(task_dir), "--device", "cpu",
               "--batch_size", str(args.batch_size), "--output_path", str(out)]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={
            **os.environ, **OFFLINE_ENV, "OMP_NUM_THREADS": str(args.threads),
            "MKL_NUM_THREADS": str(args.threads)})
        if proc.returncode != 0:
            raise RuntimeError(f"lm_eval CLI failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        files = sorted(out.rglob("results_*.json"))
        res = json.loads(files[-1].read_text())
        per_ckpt.append({"checkpoint": str(ckpt), "wall_s": time.perf_counter() - t0,
                         "metrics": primary_metrics(res)})
    return {"checkpoints": per_ckpt, "children_peak_rss_mb": peak_rss_mb(resource.RUSAGE_CHILDREN)}


VARIANTS = {"evalsuite": run_evalsuite, "api": run_api, "cli": run_cli}


def child_main(args) -> None:
    """Run one variant and print its JSON report on the last line of stdout."""
    os.environ.update(OFFLINE_ENV)
    import torch

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    ckpts = [Path(p) for p in args.checkpoints]
    report = VARIANTS[args.variant](ckpts, Path(args.task_dir), args)
    report["in_process_wall_s"] = time.perf_counter() - t0
    report["peak_rss_mb"] = max(peak_rss_mb(), report.get("children_peak_rss_mb", 0.0))
    print("BENCH_JSON " + json.dumps(report))


# ---------------------------------------------------------------------- driver
def fmt_ratio(a: float, b: float) -> str:
    return f"{a / b:.2f}x" if b else "n/a"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--scale", type=float, default=1.0,
                   help="fraction of the issue's item counts (300 arc, 300 hellaswag, 500 lambada)")
    p.add_argument("--checkpoints", type=int, default=4)
    p.add_argument("--tokenizer", choices=("bpe", "byte"), default="bpe",
                   help="bpe: a 16k BPE vocabulary, as real models have (default); byte: 257 "
                        "byte tokens, 4x longer sequences, attention-bound")
    p.add_argument("--vocab-size", type=int, default=16384, help="BPE vocabulary size")
    p.add_argument("--hidden-size", type=int, default=None,
                   help="default 128 with bpe, 256 with byte (both about 5M parameters)")
    p.add_argument("--num-layers", type=int, default=None, help="default 4 with bpe, 6 with byte")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--bootstrap-iters", type=int, default=100000,
                   help="for the in-process variants; the lm_eval CLI has no such option and "
                        "always uses lm-eval's default, 100000, so that is the default here too")
    p.add_argument("--variants", default="evalsuite,api,cli")
    p.add_argument("--repeat", type=int, default=1,
                   help="rounds of all variants, interleaved (evalsuite, api, cli, evalsuite, ...); "
                        "times are the median over rounds, so a slow spell of a shared machine "
                        "does not land on one variant only")
    p.add_argument("--threads", type=int, default=1,
                   help="torch/OpenMP threads for every variant (1 holds up best on shared cores)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA / "benchmarks")
    p.add_argument("--workdir", type=Path, default=None)
    p.add_argument("--json-out", type=Path, default=None)
    # internal: run one variant in this process
    p.add_argument("--variant", help=argparse.SUPPRESS)
    p.add_argument("--task-dir", help=argparse.SUPPRESS)
    p.add_argument("--checkpoint", dest="checkpoints_list", action="append",
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.variant:
        args.checkpoints = args.checkpoints_list
        child_main(args)
        return 0

    os.environ.update(OFFLINE_ENV)
    if not args.data.is_dir():
        print(f"benchmark data not found at {args.data} (expected ../shared/data/benchmarks; "
              "set EVALSUITE_SHARED_DATA or --data)", file=sys.stderr)
        return 2
    from evalsuite.tasks import TaskRegistry

    work = args.workdir or Path(tempfile.mkdtemp(prefix="bench_engine_"))
    counts = {"es_arc_easy_5shot": round(300 * args.scale), "es_hellaswag": round(300 * args.scale),
              "es_lambada_openai": round(500 * args.scale)}
    task_dir = work / "tasks"
    registry = TaskRegistry(data_dir=args.data)
    for task, n in counts.items():  # one folder, each task capped at its own item count
        bundled = task.removeprefix("es_").removesuffix("_5shot")
        registry.export_lm_eval_yaml(bundled, task_dir, task_name=task, max_items=max(1, n),
                                     overrides={"num_fewshot": 5} if task.endswith("_5shot") else None)
    if args.hidden_size is None:
        args.hidden_size = 128 if args.tokenizer == "bpe" else 256
    if args.num_layers is None:
        args.num_layers = 4 if args.tokenizer == "bpe" else 6
    tokenizer = build_tokenizer(args.tokenizer, args.data, args.vocab_size)
    ckpts = build_series(work / "series", args.checkpoints, args.hidden_size, args.num_layers,
                         tokenizer)
    n_params = _count_params(ckpts[0])
    print(f"series: {len(ckpts)} checkpoints of {n_params / 1e6:.2f}M parameters "
          f"(hidden {args.hidden_size}, {args.num_layers} layers, {args.tokenizer} tokenizer of "
          f"{len(tokenizer)} tokens), fp32, CPU, "
          f"{args.threads} torch thread(s) per variant, {os.cpu_count()} cores, load average "
          f"{os.getloadavg()[0]:.1f} at start")
    print("items: " + ", ".join(f"{t} {n}" for t, n in counts.items())
          + f" (scale {args.scale}); batch size {args.batch_size}; "
          f"bootstrap_iters {args.bootstrap_iters}")

    runs: dict[str, list[dict]] = {}
    variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for variant in [v for _ in range(max(1, args.repeat)) for v in variants]:
        cmd = [sys.executable, __file__, "--variant", variant, "--task-dir", str(task_dir),
               "--threads", str(args.threads), "--batch-size", str(args.batch_size),
               "--bootstrap-iters", str(args.bootstrap_iters)]
        for c in ckpts:
            cmd += ["--checkpoint", str(c)]
        t0 = time.perf_counter()
        cpu0 = _children_cpu_s()
        proc = subprocess.run(cmd, capture_output=True, text=True,
                              env={**os.environ, **OFFLINE_ENV,
                                   "OMP_NUM_THREADS": str(args.threads)})
        wall = time.perf_counter() - t0
        cpu = _children_cpu_s() - cpu0
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("BENCH_JSON ")]
        if proc.returncode != 0 or not lines:
            print(f"{variant}: FAILED\n{proc.stderr[-3000:]}", file=sys.stderr)
            return 1
        rep = json.loads(lines[-1][len("BENCH_JSON "):])
        # the benchmark's own instrumentation (counting the minimum tokens) is not timed
        extra = rep.get("instrumentation_s", 0.0)
        rep["wall_s"], rep["cpu_s"] = wall - extra, cpu - rep.get("instrumentation_cpu_s", 0.0)
        runs.setdefault(variant, []).append(rep)
        note = f"  (less {extra:.1f} s counting the minimum tokens)" if extra else ""
        print(f"  {variant:10s} {rep['wall_s']:8.1f} s wall  {rep['cpu_s']:8.1f} s CPU   peak RSS "
              f"{rep['peak_rss_mb']:8.0f} MiB{note}", flush=True)

    reports = {v: median_report(rs) for v, rs in runs.items()}
    if args.repeat > 1:
        print(f"\n(median of {args.repeat} interleaved rounds; per-round walls: "
              + "; ".join(f"{v} " + ", ".join(f"{r['wall_s']:.1f}" for r in rs)
                          for v, rs in runs.items()) + ")")
    print_summary(reports, counts)
    if args.json_out:
        args.json_out.write_text(json.dumps({"items": counts, "params": n_params,
                                             "args": {k: str(v) for k, v in vars(args).items()},
                                             "reports": reports, "rounds": runs}, indent=2))
    return 0


def median_report(reps: list[dict]) -> dict:
    """The round with the median wall time (its own per-checkpoint figures, tokens, metrics),
    with wall, CPU and peak memory replaced by their medians / maximum over the rounds."""
    import statistics

    ordered = sorted(reps, key=lambda r: r["wall_s"])
    out = dict(ordered[(len(ordered) - 1) // 2])
    out["wall_s"] = statistics.median(r["wall_s"] for r in reps)
    out["cpu_s"] = statistics.median(r["cpu_s"] for r in reps)
    out["peak_rss_mb"] = max(r["peak_rss_mb"] for r in reps)
    out["rounds_wall_s"] = [r["wall_s"] for r in reps]
    return out


def print_summary(reports: dict, counts: dict) -> None:
    print("\n=== time for the whole series (variant process start to end) ===")
    for v, r in reports.items():
        per = ", ".join(f"{c['wall_s']:.1f}" for c in r["checkpoints"])
        print(f"  {v:10s} {r['wall_s']:8.1f} s wall  {r['cpu_s']:8.1f} s CPU   "
              f"wall per checkpoint: {per}")
    if "evalsuite" in reports:
        base = reports["evalsuite"]
        for other in ("cli", "api"):
            if other in reports:
                o = reports[other]
                print(f"  evalsuite vs {other}: {fmt_ratio(o['wall_s'], base['wall_s'])} faster "
                      f"(wall clock), {fmt_ratio(o['cpu_s'], base['cpu_s'])} less CPU time")

    print("\n=== tokens fed to the model, per checkpoint (first checkpoint) ===")
    if "evalsuite" in reports:
        c = reports["evalsuite"]["checkpoints"][0]
        mn = c["minimum_tokens"]
        print(f"  minimum (each distinct context once + each continuation once): {mn}")
        print(f"  evalsuite: {c['tokens_real']} real ({fmt_ratio(c['tokens_real'], mn)}), "
              f"{c['tokens_with_padding']} with padding ({fmt_ratio(c['tokens_with_padding'], mn)})")
        if "api" in reports:
            a = reports["api"]["checkpoints"][0]["tokens_with_padding"]
            print(f"  HFLM (api): {a} with padding ({fmt_ratio(a, mn)})")

    print("\n=== peak resident memory per variant process ===")
    for v, r in reports.items():
        print(f"  {v:10s} {r['peak_rss_mb']:8.0f} MiB")

    print("\n=== primary metrics agree across variants? ===")
    names = list(reports)
    ref = reports[names[0]]["checkpoints"]
    ok = True
    for v in names[1:]:
        for a, b in zip(ref, reports[v]["checkpoints"]):
            if a["metrics"] != b["metrics"]:
                ok = False
                print(f"  MISMATCH {names[0]} vs {v} at {a['checkpoint']}: {a['metrics']} vs {b['metrics']}")
    print("  identical" if ok else "  (see mismatches above)")
    for c in ref:
        print(f"  {Path(c['checkpoint']).name}: {c['metrics']}")


def _children_cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def _count_params(path: Path) -> int:
    from safetensors.torch import load_file

    return sum(t.numel() for t in load_file(path / "model.safetensors").values())


if __name__ == "__main__":
    sys.exit(main())
