"""Loading checkpoints: fresh loads, weight swaps into a reused model, devices and dtypes.

A series is many checkpoints of one architecture. ``from_pretrained`` rebuilds the module tree,
re-runs initialisation and re-reads the config every time; when the architecture matches, the
engine instead copies the new checkpoint's tensors into the model it already holds
(``swap_weights``), which costs one read of the safetensors files.

Everything CUDA-specific (device placement, bf16 weights or autocast, the batch-size search) is
behind ``device.type == "cuda"`` checks, so CPU runs never initialise CUDA.
"""

from __future__ import annotations

import json
from pathlib import Path

# ignored when comparing configs: they differ between checkpoints of one architecture
from ..series import VOLATILE_CONFIG_KEYS as _VOLATILE_CONFIG_KEYS

DTYPES = {"float32": "float32", "fp32": "float32", "bfloat16": "bfloat16", "bf16": "bfloat16",
          "float16": "float16", "fp16": "float16"}



def resolve_dtype(dtype: str, device) -> tuple[object, object | None]:
    """(weight dtype, autocast dtype or None) for a dtype name.

    ``"autocast-bfloat16"`` keeps fp32 weights and runs matmuls in bf16 (CUDA only);
    ``"bfloat16"`` stores the weights in bf16.
    """
    import torch

    name = dtype.lower()
    if name.startswith("autocast-"):
        inner = DTYPES.get(name[len("autocast-"):])
        if inner is None:
            raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)} or "
                             "'autocast-bfloat16'")
        if device.type != "cuda":
            raise ValueError(f"dtype={dtype!r} needs a CUDA device; on CPU use 'float32' "
                             "(bf16 on CPU is slower and moves log-likelihoods)")
        return torch.float32, getattr(torch, inner)
    if name not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; use one of {sorted(DTYPES)}")
    return getattr(torch, DTYPES[name]), None


def resolve_device(device: str):
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device!r} was asked for but CUDA is not available here")
    return dev


def comparable_config(config) -> dict:
    """The config as a dict without the fields that vary between checkpoints of one model."""
    data = config.to_dict()
    return {k: v for k, v in data.items() if k not in _VOLATILE_CONFIG_KEYS}


def load_config(source: str, trust_remote_code: bool):
    from transformers import AutoConfig

    return AutoConfig.from_pretrained(source, trust_remote_code=trust_remote_code)


def load_tokenizer(source: str, trust_remote_code: bool):
    from lm_eval.models.utils import configure_pad_token
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(source, trust_remote_code=trust_remote_code,
                                              use_fast=True)
    return configure_pad_token(tokenizer)


def load_model(source: str, *, device, weight_dtype, trust_remote_code: bool):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(source, dtype=weight_dtype,
                                                 trust_remote_code=trust_remote_code)
    model.eval()
    if device.type == "cuda":
        model = model.to(device)
    return model


def read_state_dict(source: str | Path) -> dict | None:
    """All tensors of a checkpoint folder (safetensors, sharded or not); None if none found."""
    from safetensors.torch import load_file

    folder = Path(source)
    single = folder / "model.safetensors"
    index = folder / "model.safetensors.index.json"
    if single.is_file():
        return load_file(single)
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        tensors: dict = {}
        for shard in shards:
            tensors.update(load_file(folder / shard))
        return tensors
    return None


def _rename_keys(model, keys) -> dict[str, str] | None:
    """Checkpoint key -> model key, using transformers' own checkpoint renamings (transformers 5
    renames some modules at load time, e.g. GPT-NeoX ``embed_out`` -> ``lm_head``). None when
    a key needs more than a rename (tensor-merging converters) or the API is unavailable."""
    try:
        from transformers.conversion_mapping import get_model_conversion_mapping
        from transformers.core_model_loading import WeightRenaming, rename_source_key
    except ImportError:
        return None
    try:
        transforms = get_model_conversion_mapping(model)
        renamings = [t for t in transforms if isinstance(t, WeightRenaming)]
        converters = [t for t in transforms if not isinstance(t, WeightRenaming)]
        meta = dict.fromkeys(model.state_dict(), True)
        mapping = {}
        for key in keys:
            new, converter = rename_source_key(key, renamings, converters,
                                               getattr(model, "base_model_prefix", None), meta)
            if converter is not None:
                return None
            mapping[key] = new
        return mapping
    except Exception:  # noqa: BLE001 - internal API moved: fall back to a fresh load
        return None


def in_model_names(model, own: dict, by_name: dict) -> dict | None:
    """``by_name`` (checkpoint key -> anything) keyed by the model's own names: as is when they
    already match, through transformers' renames otherwise; None when no rename applies."""
    if all(k in own for k in by_name):
        return by_name
    mapping = _rename_keys(model, list(by_name))
    return None if mapping is None else {mapping[k]: v for k, v in by_name.items()}


def swap_weights(model, source: str | Path) -> bool:
    """Copy a checkpoint's tensors into ``model`` in place; False (model untouched) on any
    mismatch of names or shapes, so the caller can fall back to a fresh load."""
    import torch

    # a model changed after loading (quantised modules, tensor subclasses, another dtype)
    # is not a plain container for new weights: the caller loads fresh instead
    params = list(model.parameters())
    if any(type(p.data) is not torch.Tensor for p in params) or \
            len({p.dtype for p in params}) != 1:
        return False
    tensors = read_state_dict(source)
    if tensors is None:
        return False
    own = model.state_dict()
    tensors = in_model_names(model, own, tensors)
    if tensors is None:
        return False
    if any(k not in own or own[k].shape != v.shape for k, v in tensors.items()):
        return False
    loaded_ptrs = {own[k].data_ptr() for k in tensors}
    missing = [k for k in own if k not in tensors]
    # a missing key is fine only if it is tied to (shares storage with) a loaded tensor
    if any(own[k].data_ptr() not in loaded_ptrs for k in missing):
        return False
    with torch.no_grad():
        for k, v in tensors.items():
            own[k].copy_(v)
    return True


def find_batch_size(try_forward, *, start: int = 512) -> int:
    """Largest batch (halving from ``start``) for which ``try_forward(n)`` does not run out of
    CUDA memory. Only ever called for CUDA devices."""
    import torch

    n = start
    while n > 1:
        try:
            try_forward(n)
            return n
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            n //= 2
    return 1


def architecture_key(config, weight_dtype, autocast_dtype, device) -> str:
    """One string per architecture x dtypes x device: what the CUDA batch-size search depends on
    (the checkpoints of a series share it)."""
    import hashlib

    blob = json.dumps(comparable_config(config), sort_keys=True, default=str)
    digest = hashlib.sha256(blob.encode()).hexdigest()[:16]
    return f"{digest}:{weight_dtype}:{autocast_dtype}:{device}"


def retry_on_oom(run, shrink):
    """``run()``, retried after ``shrink()`` each time CUDA runs out of memory; the error is
    raised once ``shrink()`` returns False (the batch is already 1). CUDA callers only."""
    import torch

    while True:
        try:
            return run()
        except torch.cuda.OutOfMemoryError:
            torch.cuda.empty_cache()
            if not shrink():
                raise


# ---- refusing what would be wrong -------------------------------------------------------------

class CheckpointMismatch(ValueError):
    """Weights, config and tokenizer of a checkpoint that do not fit together."""


def checkpoint_shapes(folder: str | Path) -> dict[str, tuple[int, ...]] | None:
    """Tensor name -> shape from a folder's safetensors headers (no tensor data read); None
    where the weights are not safetensors (``pytorch_model*.bin``: not checked)."""
    from ..series import read_safetensors_header

    folder = Path(folder)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        return None
    shapes: dict[str, tuple[int, ...]] = {}
    for f in files:
        for name, meta in read_safetensors_header(f).items():
            if name != "__metadata__" and isinstance(meta, dict):
                shapes[name] = tuple(meta.get("shape", ()))
    return shapes


def weight_mismatches(model, folder: str | Path) -> dict[str, list[str]] | None:
    """Which tensors of ``folder`` do not fit ``model``: ``missing`` (parameters the checkpoint
    does not hold, so left randomly initialised; tied copies excepted), ``unexpected`` (tensors
    the model has no place for, so dropped) and ``mismatched`` (other shapes). None when it
    cannot be checked (no safetensors, or names that need more than transformers' renames)."""
    shapes = checkpoint_shapes(folder)
    if shapes is None:
        return None
    own = model.state_dict()
    shapes = in_model_names(model, own, shapes) or shapes
    unexpected = sorted(k for k in shapes if k not in own)
    mismatched = sorted(f"{k} (checkpoint {list(v)}, model {list(own[k].shape)})"
                        for k, v in shapes.items() if k in own and tuple(own[k].shape) != v)
    loaded = {own[k].data_ptr() for k in shapes if k in own}
    missing = sorted(k for k, p in model.named_parameters(remove_duplicate=False)
                     if k not in shapes and p.data_ptr() not in loaded)
    return {"missing": missing, "unexpected": unexpected, "mismatched": mismatched}


def local_folder(source: str, revision: str | None = None) -> Path | None:
    """The local folder behind a source: the folder itself, or a hub id's cached snapshot."""
    path = Path(source)
    if path.is_dir():
        return path
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, revision=revision, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached: it did not load either
        return None


def verify_checkpoint(model, tokenizer, source: str, revision: str | None = None) -> None:
    """Refuse a model whose weights and config disagree, or whose tokenizer has ids beyond the
    model's vocabulary: either would score silently wrong (random layers, dropped weights,
    out-of-range embeddings). Raises :class:`CheckpointMismatch` naming the keys and the fix."""
    folder = local_folder(source, revision)
    problems = weight_mismatches(model, folder) if folder is not None else None
    if problems and any(problems.values()):
        parts = []
        for kind, what in (("missing", "missing from the weights (would be random)"),
                           ("unexpected", "in the weights but not in the config (would be "
                                          "dropped)"),
                           ("mismatched", "of another shape than the config says")):
            keys = problems[kind]
            if keys:
                more = f" and {len(keys) - 4} more" if len(keys) > 4 else ""
                parts.append(f"{len(keys)} tensor(s) {what}: {', '.join(keys[:4])}{more}")
        raise CheckpointMismatch(
            f"checkpoint {source}: config.json does not match the weights; " + "; ".join(parts)
            + ". Fix config.json (layer count, sizes) or re-save the checkpoint with "
              "save_pretrained")
    emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    rows = getattr(emb, "num_embeddings", None)
    n_tok = len(tokenizer) if tokenizer is not None else None
    if rows is not None and n_tok is not None and n_tok > rows:
        raise CheckpointMismatch(
            f"checkpoint {source}: the tokenizer has {n_tok} tokens but the model's embedding has "
            f"{rows} rows, so ids {rows}..{n_tok - 1} would index past it; save the tokenizer the "
            "model was trained with beside the weights")
