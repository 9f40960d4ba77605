"""Render ``CARD.md`` for a trained ladder from its ``ladder.json`` and ``accuracy.json``."""

from __future__ import annotations

import json
from pathlib import Path

from .data import MIX

REPRODUCE = ("OMP_NUM_THREADS=1 HF_HUB_OFFLINE=1 HF_DATASETS_OFFLINE=1 \\\n"
             "  evalsuite train-ladder --out models/ladder --seed 0 --threads 1 "
             "--data-dir ../shared/data --eval")


def _fmt_tokens(n: int) -> str:
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.0f}K"


def render_card(root: str | Path) -> str:
    root = Path(root)
    m = json.loads((root / "ladder.json").read_text())
    acc_path = root / "accuracy.json"
    acc = json.loads(acc_path.read_text()) if acc_path.exists() else None
    s = m["settings"]
    steps = m["checkpoint_steps"]
    d = m["decontamination"]
    tok_file = root / m["sizes"][0]["label"] / f"step{steps[-1]}" / "tokenizer.json"
    vocab_size = len(json.loads(tok_file.read_text())["model"]["vocab"])
    lines = [
        "# The evalsuite reference ladder",
        "",
        "A GPT-NeoX checkpoint series trained by evalsuite itself (`evalsuite train-ladder`, "
        "code in `evalsuite/ladder/`): every size on the same generated arithmetic token "
        "stream in the same order, checkpoints at log-spaced steps, in the layout "
        "`<size>/step<N>/` (a complete Hugging Face folder each, with `trainer_state.json` "
        "giving `global_step` and `num_input_tokens_seen`). It is evalsuite's offline demo "
        "series and its emergence testbed.",
        "",
        "## Sizes",
        "",
        "| size | hidden | layers | heads | non-embedding params | total params | "
        "training wall time (s) | final answer-token loss |",
        "|---|---|---|---|---|---|---|---|",
    ]
    sizes = sorted(m["sizes"], key=lambda z: z["n_params"])
    for z in sizes:
        lines.append(f"| {z['label']} | {z['hidden_size']} | {z['num_layers']} | "
                     f"{z['num_heads']} | {z['n_params_nonembedding']:,} | {z['n_params']:,} | "
                     f"{z['train_wall_time_s']:.0f} | {z['final_loss']:.3f} |")
    lines += [
        "",
        "Architecture: GPT-NeoX (transformers), parallel residual, rotary embeddings on "
        f"{s.get('rotary_pct', 0.25):.0%} of each 16-wide head (Pythia: 25%), untied input/output "
        "embeddings, no dropout, fp32 weights.",
        "",
        "## Training",
        "",
        f"- Steps: {s['steps']} for every size; batch {s['batch_size']} sequences x "
        f"{s['seq_len']} tokens = {m['tokens_per_step']:,} tokens per step, "
        f"{_fmt_tokens(m['tokens_total'])} tokens in all ({m['examples']:,} examples, "
        f"{m['target_tokens']:,} non-padding target tokens).",
        f"- Checkpoints: steps {', '.join(map(str, steps))} (log-spaced, final included); "
        "`num_input_tokens_seen` = step x tokens per step (padding included, as HF Trainer "
        "counts).",
        f"- Optimiser: AdamW betas {tuple(s['betas'])}, weight decay {s['weight_decay']} on "
        f"matrices, lr {s['lr']} with {s['warmup_frac']:.0%} linear warmup and cosine decay "
        f"to {s['min_lr_frac']:.0%}, gradient clipping {s['grad_clip']}; seed {s['seed']}.",
        "- Loss: " + ("on the answer tokens and the end-of-text after them only (the operands "
                      "are random, so predicting them is noise that slowed learning)"
                      if s.get("loss_on", "all") == "answer" else "on every token") + ".",
        f"- Training wall time: {m['train_wall_time_s']:.0f} s for all sizes "
        f"({m['train_wall_time_s'] / 60:.1f} min; data generation {m['data_wall_time_s']:.0f} s) "
        f"on a {m['machine']['cpu_count']}-core CPU shared with other jobs, torch pinned to "
        f"{s['threads']} thread; torch {m['versions']['torch']}, transformers "
        f"{m['versions']['transformers']}.",
        "- Tokenizer: digit-level, built in code (`evalsuite/ladder/tokenizer.py`): each digit a "
        "token, a leading space joined to a number's first digit, the prompt words as whole "
        f"tokens ({vocab_size} tokens). Contexts tokenize as exact prefixes of context + answer.",
        "",
        "## Data",
        "",
        "Generated in code (`evalsuite/ladder/data.py`) in the exact shape lm-eval's "
        "`arithmetic_*` tasks give the model after their `process_docs`: "
        "`Question: What is 48 plus 76?\\nAnswer: 124`, each example followed by end-of-text, "
        "whole examples packed into each sequence. Mix (kind, operand digits, share): "
        + ", ".join(f"{k} {dg}: {w:.1%}" for k, dg, w in MIX)
        + " (`digitsum`: sum of the digits of a number below 10^4; `threeops`: one-digit "
        "`(a op b) op c`).",
        "",
    ]
    if d.get("decontaminated"):
        lines.append(
            f"Decontamination: every generated question was compared with the "
            f"{d['test_questions']:,} distinct questions of the 13 GPT-3 arithmetic test files "
            "(`benchmarks/gpt3_arithmetic_unscramble/`, normalised as lm-eval does); "
            f"**{d['removed']:,} generated items ({d['removed_distinct']:,} distinct questions) "
            f"were removed** and redrawn, out of {d['drawn']:,} drawn. No training item equals a "
            "test item (exact string match: `98 plus 45` is out, `45 plus 98` may be in).")
    else:
        lines.append("**Not decontaminated**: the GPT-3 arithmetic files were absent when this "
                     "ladder was trained.")
    lines += ["", "No BIG-bench file (canary) was read or trained on.", ""]
    if acc:
        by = {(r["size"], r["step"]): r for r in acc["rows"]}
        lines += [
            f"## Accuracy on `{acc['task']}` ({acc['rows'][0]['n']} real items)",
            "",
            f"lm-eval's `{acc['metric']}` (the answer is the greedy continuation), zero-shot, "
            f"{acc['harness']}'s own `{acc['task']}` task with its data file pointed at the local "
            f"`{acc['data_file']}` (`evalsuite/ladder/evaluate.py`). Rows: size; columns: step.",
            "",
            "| size | " + " | ".join(f"step {st}" for st in steps) + " |",
            "|---|" + "---|" * len(steps),
        ]
        for z in sizes:
            cells = [f"{100 * by[(z['label'], st)]['acc']:.1f}%" if (z["label"], st) in by else "-"
                     for st in steps]
            lines.append(f"| {z['label']} | " + " | ".join(cells) + " |")
        lines += ["", "Mean log-probability of the answer (nats, the continuous companion metric):",
                  "", "| size | " + " | ".join(f"step {st}" for st in steps) + " |",
                  "|---|" + "---|" * len(steps)]
        for z in sizes:
            cells = [f"{by[(z['label'], st)]['answer_logprob']:.2f}"
                     if (z["label"], st) in by else "-" for st in steps]
            lines.append(f"| {z['label']} | " + " | ".join(cells) + " |")
        lines += ["", f"Scoring all {len(acc['rows'])} checkpoints took "
                  f"{acc['wall_time_s']:.0f} s.", ""]
    if m.get("notes"):
        lines += ["## Notes", ""] + [f"- {n}" for n in m["notes"]] + [""]
    lines += [
        "## Reproduce",
        "",
        "```",
        REPRODUCE,
        "```",
        "",
        "Deterministic from the seed for a fixed thread count (float summation order depends "
        "on it); sizes train independently (each re-seeds), so `--sizes` picks a subset "
        "without changing any size's weights.",
        "",
        f"Recorded command of this run: {m.get('command')}.",
        "",
        "`ladder.json` holds the full settings, per-size parameter counts and wall times; "
        "`accuracy.json` the scores.",
        "",
    ]
    return "\n".join(lines)


def write_card(root: str | Path) -> Path:
    path = Path(root) / "CARD.md"
    path.write_text(render_card(root))
    return path
