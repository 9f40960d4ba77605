"""Train the reference ladder: every size on the same token stream, in the same order.

Deterministic from the seed: the data stream comes from ``random.Random(seed)`` and each
model's initialisation from ``torch.manual_seed(seed)``; CPU results are bit-identical for a
fixed thread count (float summation order depends on it, so the card names the count).

Recipe (measured on this 2-core machine, ../shared/NOTES.md): AdamW (0.9, 0.98), weight decay
0.1 on matrices, lr 3e-3 with 5% linear warmup and cosine decay to 10%, batch 64 x 64 tokens
packed with whole examples, 800 steps. Checkpoints at log-spaced steps, the final one included,
in the layout ``<out>/<size>/step<N>/`` with HF Trainer's ``trainer_state.json`` fields.
"""

from __future__ import annotations

import json
import math
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence

from .data import DecontaminationReport, iter_items, load_test_contexts, pack_sequences
from .sizes import LADDER_SIZES, LadderSize, build_config, count_model_params
from .tokenizer import build_digit_tokenizer


@dataclass(frozen=True)
class TrainSettings:
    """Everything that changes the weights. Stored in ``ladder.json`` next to the checkpoints."""

    seed: int = 0
    steps: int = 800
    batch_size: int = 64
    seq_len: int = 64
    lr: float = 3e-3
    warmup_frac: float = 0.05
    min_lr_frac: float = 0.1
    weight_decay: float = 0.1
    betas: tuple[float, float] = (0.9, 0.98)
    grad_clip: float = 1.0
    n_checkpoints: int = 7
    threads: int = 1
    #: Which tokens carry the loss: "answer" (the answer and its end-of-text; the random
    #: operands are unpredictable noise) or "all".
    loss_on: str = "answer"
    #: Fraction of each head rotated by RoPE (Pythia uses 0.25; 1.0 learned faster here:
    #: a 450K model reached a 0.035-nat lower loss at every step up to 450).
    rotary_pct: float = 1.0

    @property
    def tokens_per_step(self) -> int:
        return self.batch_size * self.seq_len


def checkpoint_steps(steps: int, n: int = 7, first_frac: float = 1 / 8) -> list[int]:
    """``n`` log-spaced steps from ``steps * first_frac`` to ``steps`` (included), deduplicated."""
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    lo = max(1.0, steps * first_frac)
    if n == 1 or lo >= steps:
        return [steps]
    ratio = (steps / lo) ** (1 / (n - 1))
    out = sorted({min(steps, max(1, round(lo * ratio ** i))) for i in range(n)} | {steps})
    return out


def lr_at(step: int, s: TrainSettings) -> float:
    """Learning rate for 0-based ``step``: linear warmup, then cosine to ``min_lr_frac``."""
    warm = max(1, round(s.warmup_frac * s.steps))
    if step < warm:
        return s.lr * (step + 1) / warm
    t = (step - warm) / max(1, s.steps - warm)
    return s.lr * (s.min_lr_frac + (1 - s.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * t)))


@dataclass
class TokenStream:
    """The packed training data shared by every size: ``input_ids``/``labels`` [steps, batch, T]."""

    input_ids: object
    labels: object
    n_examples: int
    n_target_tokens: int
    decontamination: DecontaminationReport = field(default_factory=DecontaminationReport)


def build_token_stream(settings: TrainSettings, data_dir: str | Path | None,
                       tokenizer=None) -> TokenStream:
    """Generate, decontaminate, tokenize and pack the stream for ``settings.steps`` steps."""
    import torch

    tokenizer = tokenizer or build_digit_tokenizer()
    exclude = load_test_contexts(data_dir) if data_dir is not None else None
    report = DecontaminationReport(test_questions=None if exclude is None else len(exclude))
    items = iter_items(settings.seed, exclude=exclude, report=report)
    n_seq = settings.steps * settings.batch_size

    backend = tokenizer.backend_tokenizer
    answer_counts: list[int] = []

    def token_lists():
        size = 64
        while True:  # tokenize in growing chunks with the Rust batch encoder
            chunk = [next(items) for _ in range(size)]
            enc = backend.encode_batch([x.text for x in chunk], add_special_tokens=False)
            ans = backend.encode_batch([x.completion for x in chunk], add_special_tokens=False)
            answer_counts.extend(len(e.ids) for e in ans)
            yield from (e.ids for e in enc)
            size = min(4096, size * 2)

    def target_counts():
        i = 0
        while True:
            yield answer_counts[i]
            i += 1

    if settings.loss_on not in ("answer", "all"):
        raise ValueError(f"loss_on must be 'answer' or 'all', got {settings.loss_on!r}")
    inputs, labels, used = pack_sequences(
        token_lists(), n_seq, settings.seq_len, tokenizer.eos_token_id,
        target_counts() if settings.loss_on == "answer" else None)
    # The chunked generator drew ahead of what was packed: count again over exactly the
    # items the sequences contain, so the report describes the shipped stream.
    report = DecontaminationReport(test_questions=report.test_questions)
    for _ in zip(range(used), iter_items(settings.seed, exclude=exclude, report=report)):
        pass
    shape = (settings.steps, settings.batch_size, settings.seq_len)
    ids = torch.tensor(inputs, dtype=torch.long).view(shape)
    lab = torch.tensor(labels, dtype=torch.long).view(shape)
    return TokenStream(ids, lab, used, int((lab != -100).sum()), report)


def train_size(size: LadderSize, stream: TokenStream, settings: TrainSettings, out: Path,
               tokenizer, log: Callable[[str], None] = print) -> dict:
    """Train one size on the stream; save checkpoints under ``out/<label>/step<N>/``."""
    import torch
    from transformers import GPTNeoXForCausalLM

    torch.set_num_threads(settings.threads)
    torch.manual_seed(settings.seed)
    config = build_config(size, vocab_size=len(tokenizer), eos_id=tokenizer.eos_token_id,
                          rotary_pct=settings.rotary_pct)
    model = GPTNeoXForCausalLM(config)
    model.train()
    n_total, n_nonemb = count_model_params(model)
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2]
    no_decay = [p for n, p in model.named_parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": settings.weight_decay},
                             {"params": no_decay, "weight_decay": 0.0}],
                            lr=settings.lr, betas=settings.betas)
    save_at = set(checkpoint_steps(settings.steps, settings.n_checkpoints))
    history: list[dict] = []
    t0 = time.perf_counter()
    running = 0.0
    for step in range(settings.steps):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, settings)
        out_ = model(input_ids=stream.input_ids[step], labels=stream.labels[step])
        out_.loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), settings.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
        running += float(out_.loss.detach())
        done = step + 1
        if done % 50 == 0 or done in save_at:
            n = 50 if done % 50 == 0 else 1
            history.append({"step": done, "loss": round(float(out_.loss.detach()), 5),
                            "learning_rate": lr_at(step, settings),
                            "elapsed_s": round(time.perf_counter() - t0, 2)})
            if done % 50 == 0:
                log(f"[{size.label}] step {done}/{settings.steps} loss {running / n:.4f} "
                    f"({time.perf_counter() - t0:.0f}s)")
                running = 0.0
        if done in save_at:
            model.eval()
            folder = out / size.label / f"step{done}"
            folder.mkdir(parents=True, exist_ok=True)
            model.save_pretrained(folder, safe_serialization=True)
            tokenizer.save_pretrained(folder)
            state = {"global_step": done, "max_steps": settings.steps,
                     "num_input_tokens_seen": done * settings.tokens_per_step,
                     "train_batch_size": settings.batch_size, "seq_len": settings.seq_len,
                     "seed": settings.seed, "log_history": history}
            (folder / "trainer_state.json").write_text(json.dumps(state, indent=1) + "\n")
            model.train()
    wall = time.perf_counter() - t0
    return {"label": size.label, "hidden_size": size.hidden_size, "num_layers": size.num_layers,
            "num_heads": size.num_heads, "n_params": n_total, "n_params_nonembedding": n_nonemb,
            "steps": sorted(save_at), "final_loss": history[-1]["loss"],
            "train_wall_time_s": round(wall, 1)}


def train_ladder(out: str | Path, *, settings: TrainSettings = TrainSettings(),
                 sizes: Sequence[LadderSize] = LADDER_SIZES,
                 data_dir: str | Path | None = None, command: str | None = None,
                 log: Callable[[str], None] = print) -> dict:
    """Train every size on one stream; write checkpoints and ``<out>/ladder.json``."""
    import torch
    import transformers

    transformers.utils.logging.disable_progress_bar()
    os.environ.setdefault("OMP_NUM_THREADS", str(settings.threads))
    torch.set_num_threads(settings.threads)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tokenizer = build_digit_tokenizer()
    t0 = time.perf_counter()
    stream = build_token_stream(settings, data_dir, tokenizer)
    data_s = time.perf_counter() - t0
    d = stream.decontamination
    log(f"data: {stream.n_examples} examples, {stream.n_target_tokens} target tokens, "
        f"{d.removed} generated items dropped as test questions ({d.removed_distinct} distinct)"
        + ("" if d.test_questions is not None else " [NOT decontaminated: no data folder]"))
    manifest = {
        "series": "ladder", "settings": asdict(settings),
        "checkpoint_steps": checkpoint_steps(settings.steps, settings.n_checkpoints),
        "tokens_per_step": settings.tokens_per_step,
        "tokens_total": settings.steps * settings.tokens_per_step,
        "examples": stream.n_examples, "target_tokens": stream.n_target_tokens,
        "decontamination": d.to_dict(), "data_wall_time_s": round(data_s, 1),
        "command": command, "sizes": [],
        "versions": {"torch": torch.__version__, "transformers": transformers.__version__,
                     "python": platform.python_version()},
        "machine": {"cpu_count": os.cpu_count(), "threads": settings.threads},
    }
    for size in sizes:
        manifest["sizes"].append(train_size(size, stream, settings, out, tokenizer, log))
        manifest["train_wall_time_s"] = round(sum(s["train_wall_time_s"]
                                                  for s in manifest["sizes"]), 1)
        (out / "ladder.json").write_text(json.dumps(manifest, indent=1) + "\n")
    return manifest
