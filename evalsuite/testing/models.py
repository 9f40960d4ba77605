"""Tiny real models built in code, for tests, benchmarks and the offline demo.

A byte-level tokenizer (256 byte tokens, no merges, so any text encodes and a context always
tokenizes as an exact prefix of context + continuation) and randomly initialised GPT-NeoX models
saved as ordinary Hugging Face folders (config.json, model.safetensors, tokenizer files).
Nothing here touches the network.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Sequence

EOS = "<|endoftext|>"


def build_byte_tokenizer():
    """A PreTrainedTokenizerFast over the 256 byte symbols plus an end-of-text token."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {sym: i for i, sym in enumerate(alphabet)}
    vocab[EOS] = len(vocab)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS,
                                   unk_token=EOS, pad_token=EOS, model_max_length=4096)


def build_bpe_tokenizer(texts: Iterable[str], *, vocab_size: int = 16384):
    """A byte-level BPE tokenizer trained on ``texts`` (deterministic for the same texts).

    Real small models use a BPE vocabulary of 10k-50k tokens, which makes English text about 4x
    shorter than bytes; the engine benchmark uses one so its models look like real ones.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(list(texts), trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token=EOS, bos_token=EOS,
                                   unk_token=EOS, pad_token=EOS, model_max_length=4096)


def build_tiny_model(path: str | Path, *, hidden_size: int = 32, num_layers: int = 2,
                     num_heads: int = 2, seed: int = 0, tokenizer=None,
                     max_positions: int = 4096, dtype: str = "float32") -> Path:
    """Save a randomly initialised GPT-NeoX model and its tokenizer (default: bytes) to ``path``."""
    import torch
    from transformers import GPTNeoXConfig, GPTNeoXForCausalLM

    path = Path(path)
    path.mkdir(parents=True, exist_ok=True)
    tokenizer = tokenizer or build_byte_tokenizer()
    config = GPTNeoXConfig(
        vocab_size=len(tokenizer), hidden_size=hidden_size, num_hidden_layers=num_layers,
        num_attention_heads=num_heads, intermediate_size=4 * hidden_size,
        max_position_embeddings=max_positions, rotary_pct=0.25, use_parallel_residual=True,
        tie_word_embeddings=False, bos_token_id=tokenizer.eos_token_id,
        eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.eos_token_id)
    torch.manual_seed(seed)
    model = GPTNeoXForCausalLM(config)
    model.eval()
    if dtype != "float32":
        model = model.to(getattr(torch, dtype))
    model.save_pretrained(path, safe_serialization=True)
    tokenizer.save_pretrained(path)
    return path


def perturb_model(src: str | Path, dst: str | Path, *, scale: float, seed: int) -> Path:
    """Copy a model folder, adding Gaussian noise of relative size ``scale`` to every weight.

    Stands in for "the same model later in training" in tests: same architecture and
    tokenizer, different weights (so a different weight hash and different scores).
    """
    import shutil

    import torch
    from safetensors.torch import load_file, save_file

    src, dst = Path(src), Path(dst)
    dst.mkdir(parents=True, exist_ok=True)
    for f in src.iterdir():
        if f.is_file() and f.name != "model.safetensors":
            shutil.copy2(f, dst / f.name)
    tensors = load_file(src / "model.safetensors")
    gen = torch.Generator().manual_seed(seed)
    out = {k: (v + scale * v.float().std().clamp_min(1e-3) * torch.randn(v.shape, generator=gen)
               ).to(v.dtype).contiguous() for k, v in tensors.items()}
    save_file(out, dst / "model.safetensors", metadata={"format": "pt"})
    return dst


def write_trainer_state(folder: str | Path, *, step: int, tokens_seen: int | None) -> None:
    state = {"global_step": step}
    if tokens_seen is not None:
        state["num_input_tokens_seen"] = tokens_seen
    Path(folder, "trainer_state.json").write_text(json.dumps(state))


def build_tiny_series(root: str | Path, *, name: str = "tiny",
                      sizes: Sequence[tuple[str, int, int]] = (("s", 16, 1), ("m", 32, 2)),
                      steps: Iterable[int] = (0, 100, 200), tokens_per_step: int | None = 2048,
                      duplicate: tuple[str, int, int] | None = None, seed: int = 0) -> Path:
    """A Pythia-style folder ``root/<name>-<size>/step<N>/`` of tiny GPT-NeoX checkpoints.

    ``sizes`` holds (label, hidden_size, num_layers). Later steps are noisier copies of the
    step-0 weights. ``duplicate=(size, step_a, step_b)`` makes step_b a byte copy of step_a's
    weights, the way some published step branches are.
    """
    import shutil

    root = Path(root)
    steps = list(steps)
    for i, (label, hidden, layers) in enumerate(sizes):
        base = root / f"{name}-{label}"
        first = base / f"step{steps[0]}"
        build_tiny_model(first, hidden_size=hidden, num_layers=layers,
                         num_heads=max(1, hidden // 16), seed=seed + i)
        for j, step in enumerate(steps[1:], 1):
            perturb_model(first, base / f"step{step}", scale=0.5 * j, seed=seed + 100 * i + j)
        for step in steps:
            write_trainer_state(base / f"step{step}", step=step,
                                tokens_seen=None if tokens_per_step is None else step * tokens_per_step)
    if duplicate is not None:
        label, a, b = duplicate
        base = root / f"{name}-{label}"
        shutil.copy2(base / f"step{a}" / "model.safetensors", base / f"step{b}" / "model.safetensors")
    return root
