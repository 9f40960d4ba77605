"""Discover a checkpoint series: a folder of checkpoints or a manifest -> Checkpoint records.

Layouts understood (``ROOT`` is the path given):

- ``ROOT/<name>-<size>/step<N>/`` (Pythia-style), ``ROOT/<size>/<step>/`` or ``ROOT/<size>/step<N>/``
  (series = ROOT's name), ``ROOT/checkpoint-<N>/`` or ``ROOT/<size>/checkpoint-<N>/`` (HF Trainer),
- ``ROOT`` itself a Hugging Face model folder (one checkpoint),
- a manifest file (``.yaml``/``.yml``/``.json``) listing entries by local path or hub id + revision.

Parameter counts come from the safetensors headers (shapes only; no weights are loaded) or from
``config.json``; non-embedding parameters exclude input/output embedding matrices (Kaplan et al.
2020 count N without embeddings). tokens_seen comes from the manifest, ``trainer_state.json``
(``num_input_tokens_seen``) or an explicit ``tokens_per_step``; otherwise it stays unknown.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from .records import Checkpoint

WEIGHT_GLOBS = ("*.safetensors", "pytorch_model*.bin")
#: Every file that can change how text becomes token ids (hashed into the cell key).
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json",
                   "vocab.json", "merges.txt", "vocab.txt", "tokenizer.model",
                   "added_tokens.json", "spiece.model")
#: The files that hold a vocabulary: a folder without any of them has no tokenizer.
_VOCAB_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "vocab.txt", "spiece.model")
#: config.json fields that are bookkeeping, not model definition (left out of its hash).
VOLATILE_CONFIG_KEYS = frozenset({"_name_or_path", "_commit_hash", "transformers_version",
                                  "torch_dtype", "dtype", "architectures",
                                  "_attn_implementation_autoset"})
_EMBEDDING_NAMES = re.compile(
    r"(^|\.)(embed_in|embed_out|embed_tokens|wte|wpe|word_embeddings|position_embeddings|lm_head|"
    r"shared|embeddings\.word_embeddings)(\.|$)")
_DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1,
                "U8": 1, "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1}
_DTYPE_NAMES = {"F64": "float64", "F32": "float32", "F16": "float16", "BF16": "bfloat16",
                "I8": "int8", "U8": "uint8", "I32": "int32", "I64": "int64"}


class SeriesError(RuntimeError):
    """A path, manifest or checkpoint that cannot be read; the message names it and the fix."""


@dataclass
class SeriesScan:
    """What discovery found: checkpoints, broken entries (path, reason) and duplicate groups."""

    checkpoints: list[Checkpoint]
    problems: list[tuple[str, str]] = field(default_factory=list)

    @property
    def duplicates(self) -> dict[str, list[str]]:
        """weight hash -> ids of checkpoints sharing those exact weights (groups of 2 or more)."""
        groups: dict[str, list[str]] = {}
        for c in self.checkpoints:
            if c.weight_hash:
                groups.setdefault(c.weight_hash, []).append(c.id)
        return {h: ids for h, ids in groups.items() if len(ids) > 1}

    def records(self) -> list[dict[str, Any]]:
        dup_of: dict[str, str] = {}
        for ids in self.duplicates.values():
            for i in ids:
                dup_of[i] = ", ".join(j for j in ids if j != i)
        out = []
        for c in self.checkpoints:
            d = c.to_dict()
            out.append({"id": c.id, "series": c.series, "size": c.size, "step": c.step,
                        "n_params": c.n_params, "n_params_nonembedding": c.n_params_nonembedding,
                        "tokens_seen": c.tokens_seen, "tokens_source": c.tokens_source,
                        "compute_flops": d["compute_flops"], "dtype": c.dtype,
                        "weight_hash": c.weight_hash, "duplicate_of": dup_of.get(c.id, ""),
                        "source": c.source})
        return out


# ---- safetensors headers ------------------------------------------------------------------

def read_safetensors_header(path: Path) -> dict[str, Any]:
    """The JSON header of a safetensors file, checked against the file size (no tensor data read)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as fh:
            raw = fh.read(8)
            if len(raw) < 8:
                raise SeriesError(f"{path} is truncated ({size} bytes): not a safetensors file. "
                                  "Re-copy or re-save the checkpoint.")
            (n,) = struct.unpack("<Q", raw)
            if n <= 0 or n > 100_000_000:
                raise SeriesError(f"{path} has a corrupt safetensors header (length {n} for a "
                                  f"{size}-byte file). Re-copy or re-save the checkpoint.")
            if n > size - 8:
                raise SeriesError(f"{path} is truncated: its header alone needs {n + 8} bytes but "
                                  f"the file has {size}. Re-copy the checkpoint (an interrupted "
                                  "download or save?).")
            header = json.loads(fh.read(n).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise SeriesError(f"{path} has a corrupt safetensors header ({e.__class__.__name__}). "
                          "Re-copy or re-save the checkpoint.") from e
    except OSError as e:
        raise SeriesError(f"cannot read {path}: {e.strerror}") from e
    end = 0
    for name, info in header.items():
        if name == "__metadata__":
            continue
        try:
            end = max(end, int(info["data_offsets"][1]))
        except (KeyError, TypeError, IndexError, ValueError) as e:
            raise SeriesError(f"{path} has a corrupt safetensors header (tensor {name!r} has no "
                              "valid data_offsets). Re-copy or re-save the checkpoint.") from e
    if 8 + n + end > size:
        raise SeriesError(f"{path} is truncated: the header describes {8 + n + end} bytes but the "
                          f"file has {size}. Re-copy the checkpoint (an interrupted download or save?).")
    return header


def _weight_files(folder: Path) -> list[Path]:
    files: list[Path] = []
    for pattern in WEIGHT_GLOBS:
        files.extend(sorted(p for p in folder.glob(pattern) if p.is_file()))
    st = [p for p in files if p.suffix == ".safetensors"]
    return st or files  # prefer safetensors when both are present


def is_model_folder(folder: Path) -> bool:
    return (folder / "config.json").is_file() and bool(_weight_files(folder))


def count_params(folder: Path) -> tuple[int | None, int | None, str | None]:
    """(total, non-embedding, dtype on disk) from safetensors headers, else from torch files."""
    files = _weight_files(folder)
    total = nonemb = 0
    dtype_bytes: dict[str, int] = {}
    seen: set[str] = set()
    for f in files:
        if f.suffix == ".safetensors":
            header = read_safetensors_header(f)
            items = [(k, v["shape"], v["dtype"]) for k, v in header.items() if k != "__metadata__"]
        else:
            items = _torch_bin_shapes(f)
        for name, shape, dtype in items:
            if name in seen:
                continue
            seen.add(name)
            n = math.prod(shape) if shape else 1
            total += n
            if not _EMBEDDING_NAMES.search(name):
                nonemb += n
            dtype_bytes[dtype] = dtype_bytes.get(dtype, 0) + n
    if not files:
        return None, None, None
    main = max(dtype_bytes, key=dtype_bytes.get) if dtype_bytes else None
    return total, nonemb, _DTYPE_NAMES.get(main, main.lower() if main else None)


def _torch_bin_shapes(path: Path) -> list[tuple[str, list[int], str]]:
    """Shapes from a pickled checkpoint, loaded safely (weights_only=True, no code runs)."""
    import torch

    try:
        sd = torch.load(path, map_location="meta", weights_only=True, mmap=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure is a corrupt file to the user
        raise SeriesError(f"cannot read {path} as a weights-only torch checkpoint ({e.__class__.__name__}: "
                          f"{str(e)[:120]}). Convert it to safetensors or re-save it.") from e
    dt = {torch.float32: "F32", torch.float16: "F16", torch.bfloat16: "BF16"}
    return [(k, list(v.shape), dt.get(v.dtype, str(v.dtype))) for k, v in sd.items()
            if hasattr(v, "shape")]


def hash_weights(folder: Path, chunk: int = 1 << 20) -> str:
    """sha256 over the weight files' bytes in name order (content identity, not path)."""
    h = hashlib.sha256()
    for f in _weight_files(folder):
        with open(f, "rb") as fh:
            while block := fh.read(chunk):
                h.update(block)
    return h.hexdigest()[:16]


def has_tokenizer(folder: Path) -> bool:
    return any((folder / f).is_file() for f in _VOCAB_FILES)


def hash_tokenizer_files(folder: str | Path) -> str | None:
    """sha256 over the tokenizer files present in ``folder`` (names and bytes); None if none."""
    digest = hashlib.sha256()
    found = False
    for name in TOKENIZER_FILES:
        path = Path(folder, name)
        if path.is_file():
            found = True
            digest.update(name.encode())
            digest.update(path.read_bytes())
    return digest.hexdigest() if found else None


def hash_model_config(folder: str | Path) -> str | None:
    """sha256 of config.json's model definition (bookkeeping fields left out); None if absent."""
    try:
        data = json.loads(Path(folder, "config.json").read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    blob = json.dumps({k: v for k, v in data.items() if k not in VOLATILE_CONFIG_KEYS},
                      sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


# ---- layouts ------------------------------------------------------------------------------

_STEP = re.compile(r"^(?:step[-_]?|checkpoint-|global_step|iter_?)?(\d+)$", re.I)


def _parse_step(name: str) -> int | None:
    m = _STEP.match(name)
    return int(m.group(1)) if m else None


def _size_label(n_nonemb: int | None) -> str:
    if not n_nonemb:
        return "unknown"
    for unit, div in (("b", 1e9), ("m", 1e6), ("k", 1e3)):
        if n_nonemb >= div:
            v = n_nonemb / div
            return f"{v:.3g}{unit}"
    return str(n_nonemb)


def _trainer_state(folder: Path) -> dict[str, Any]:
    for candidate in (folder / "trainer_state.json",):
        if candidate.is_file():
            try:
                return json.loads(candidate.read_text())
            except (ValueError, OSError):
                return {}
    return {}


def _classify(root: Path, folder: Path) -> tuple[str, str | None, int | None]:
    """(series, size label or None, step) from a model folder's path relative to the root."""
    rel = folder.relative_to(root).parts
    if not rel:
        return root.name or "model", None, _parse_step(root.name)
    step = _parse_step(rel[-1])
    parents = rel[:-1] if step is not None else rel
    if not parents:
        return root.name, None, step
    label = parents[-1]
    named = _series_and_size(label)
    if named is not None:  # pythia-70m, pythia-70m-deduped
        return named[0], named[1], step
    if len(parents) == 1 and "-" in label:  # <name>-<size> with a free-form size label
        series, _, size = label.rpartition("-")
        return series, size, step
    return root.name, label, step


def _series_and_size(label: str) -> tuple[str, str] | None:
    """``pythia-70m`` -> (pythia, 70m); ``pythia-70m-deduped`` -> (pythia-deduped, 70m)."""
    m = re.match(r"^(.+?)-(\d+(?:\.\d+)?[kmbt])(?:-(.+))?$", label, re.I)
    if not m:
        return None
    return m.group(1) + (f"-{m.group(3)}" if m.group(3) else ""), m.group(2).lower()


# ---- the Hugging Face cache -------------------------------------------------------------------

def is_hub_cache_repo(folder: Path) -> bool:
    """A cached hub repository, ``models--Org--name/{refs,snapshots,blobs}`` (what
    ``huggingface_hub.snapshot_download`` leaves in ``$HF_HUB_CACHE``)."""
    return folder.name.startswith("models--") and (folder / "snapshots").is_dir()


def _hub_cache_checkpoints(repo: Path, *, series_name: str | None, tokens_per_step: int | None,
                           hash_weights_: bool) -> tuple[list[Checkpoint], list[tuple[str, str]]]:
    """One checkpoint per revision of a cached hub repository.

    Each ``refs/<revision>`` file names a snapshot: ``refs/step1000`` is step 1000, ``refs/main``
    the final model (no step). The repository name gives series and size (``pythia-160m`` ->
    series pythia, size 160m; otherwise the name is the series and the size comes from the
    parameter count). A snapshot named by two refs is one checkpoint (a numbered ref wins); a
    snapshot no ref names has no known step and is reported, not guessed.
    """
    repo_id = repo.name[len("models--"):].replace("--", "/")
    named = _series_and_size(repo_id.rsplit("/", 1)[-1])
    series, size = named if named else (repo_id.rsplit("/", 1)[-1], None)
    refs: dict[str, list[str]] = {}
    refs_dir = repo / "refs"
    for ref in sorted(refs_dir.rglob("*")) if refs_dir.is_dir() else []:
        if ref.is_file():
            refs.setdefault(ref.read_text(encoding="utf-8").strip(), []).append(
                ref.relative_to(refs_dir).as_posix())
    out, problems = [], []
    for snap in sorted(p for p in (repo / "snapshots").iterdir() if p.is_dir()):
        names = refs.get(snap.name)
        if not names:
            problems.append((str(snap), f"snapshot {snap.name} of {repo_id} is named by no "
                                        f"{refs_dir}/<revision> file, so its step is unknown: list "
                                        "it in a manifest with its step"))
            continue
        numbered = sorted((_parse_step(n), n) for n in names if _parse_step(n) is not None)
        step, revision = numbered[-1] if numbered else (None, "main" if "main" in names else names[0])
        try:
            ck = _checkpoint_from_folder(snap, series=series_name or series, size=size, step=step,
                                         tokens_per_step=tokens_per_step,
                                         hash_weights_=hash_weights_)
        except SeriesError as e:
            problems.append((str(snap), str(e)))
            continue
        out.append(Checkpoint(**{**ck.__dict__, "revision": revision}))
    return out, problems


def _find_hub_cache_repos(root: Path, max_depth: int) -> list[Path]:
    found, stack = [], [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        if is_hub_cache_repo(folder):
            found.append(folder)
            continue
        if depth >= max_depth:
            continue
        try:
            stack.extend((p, depth + 1) for p in folder.iterdir()
                         if p.is_dir() and not p.name.startswith("."))
        except OSError:
            continue
    return sorted(found)


def discover_series(path: str | Path, *, tokens_per_step: int | None = None,
                    series_name: str | None = None, hash_weights_: bool = True,
                    max_depth: int = 4) -> SeriesScan:
    """Find every checkpoint under ``path`` (or listed in a manifest file)."""
    path = Path(path)
    if not path.exists():
        raise SeriesError(f"checkpoint path {path} does not exist: pass a folder of checkpoints "
                          "or a manifest file (.yaml/.json)")
    if path.is_file():
        return read_manifest(path, tokens_per_step=tokens_per_step, hash_weights_=hash_weights_)
    hub_repos = _find_hub_cache_repos(path, max_depth)
    folders = [path] if is_model_folder(path) else [
        f for f in find_model_folders(path, max_depth)
        if not any(r == f or r in f.parents for r in hub_repos)]
    problems: list[tuple[str, str]] = []
    checkpoints = []
    for repo in hub_repos:
        found, bad = _hub_cache_checkpoints(repo, series_name=series_name,
                                            tokens_per_step=tokens_per_step,
                                            hash_weights_=hash_weights_)
        checkpoints += found
        problems += bad
    if not folders and not checkpoints:
        broken = [p for p in path.rglob("config.json")]
        hint = (f" ({len(broken)} folder(s) have config.json but no *.safetensors or "
                "pytorch_model*.bin weights)") if broken else ""
        raise SeriesError(f"no checkpoints found under {path}{hint}: expected Hugging Face model "
                          "folders (config.json + weights) laid out as <size>/<step>/, "
                          "<name>-<size>/step<N>/ or checkpoint-<N>/, a Hugging Face cache folder "
                          "(models--Org--name/), or a manifest file")
    scan = scan_folders(path, folders, tokens_per_step=tokens_per_step, series_name=series_name,
                        hash_weights_=hash_weights_)
    checkpoints += scan.checkpoints
    problems += scan.problems
    checkpoints.sort(key=lambda c: (c.series, c.n_params_nonembedding or 0, c.size, c.step or 0))
    return SeriesScan(checkpoints, problems)


def scan_folders(root: str | Path, folders: Sequence[Path], *, tokens_per_step: int | None = None,
                 series_name: str | None = None, hash_weights_: bool = True) -> SeriesScan:
    """Checkpoint records for some model folders under ``root`` (series, size and step read
    from each folder's path below ``root``, as :func:`discover_series` reads them); folders that
    cannot be read are problems. ``evalsuite watch`` scans only the folders that are complete."""
    root = Path(root)
    checkpoints, problems = [], []
    for folder in folders:
        series, size, step = _classify(root, folder)
        try:
            ckpt = _checkpoint_from_folder(folder, series=series_name or series, size=size, step=step,
                                           tokens_per_step=tokens_per_step, hash_weights_=hash_weights_)
        except SeriesError as e:
            problems.append((str(folder), str(e)))
            continue
        except OSError as e:  # a file removed or unreadable while it was read
            problems.append((str(folder), f"cannot read {e.filename or folder}: {e.strerror}; "
                                          "if it was deleted meanwhile, nothing is lost"))
            continue
        checkpoints.append(ckpt)
    checkpoints.sort(key=lambda c: (c.series, c.n_params_nonembedding or 0, c.size, c.step or 0))
    return SeriesScan(checkpoints, problems)


def find_model_folders(root: str | Path, max_depth: int = 4) -> list[Path]:
    """Every folder below ``root`` (``max_depth`` levels at most) that holds a config.json,
    broken ones included, in path order; hidden folders are not searched."""
    root = Path(root)
    found = []
    stack = [(root, 0)]
    while stack:
        folder, depth = stack.pop()
        try:
            children = sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
        except OSError:
            continue
        for child in children:
            if (child / "config.json").is_file():
                found.append(child)  # broken ones too: reported later
            elif depth + 1 < max_depth:
                stack.append((child, depth + 1))
    return sorted(found)


def _checkpoint_from_folder(folder: Path, *, series: str, size: str | None, step: int | None,
                            tokens_per_step: int | None, hash_weights_: bool = True,
                            tokens_seen: int | None = None, tokens_source: str | None = None,
                            source: str | None = None) -> Checkpoint:
    if not _weight_files(folder):
        raise SeriesError(f"{folder} has config.json but no weights (*.safetensors or "
                          "pytorch_model*.bin): finish copying the checkpoint or remove the folder")
    try:
        json.loads((folder / "config.json").read_text())
    except (ValueError, OSError) as e:
        raise SeriesError(f"{folder / 'config.json'} is not valid JSON: re-save the model config") from e
    if not has_tokenizer(folder):
        raise SeriesError(f"{folder} has no tokenizer files ({', '.join(TOKENIZER_FILES[:3])}...): "
                          "save the tokenizer beside the weights (tokenizer.save_pretrained)")
    n_total, n_nonemb, dtype = count_params(folder)
    state = _trainer_state(folder)
    if step is None and isinstance(state.get("global_step"), int):
        step = state["global_step"]
    if tokens_seen is None:
        if isinstance(state.get("num_input_tokens_seen"), (int, float)) and state["num_input_tokens_seen"] >= 0:
            tokens_seen, tokens_source = int(state["num_input_tokens_seen"]), "trainer_state"
        elif tokens_per_step is not None and step is not None:
            tokens_seen, tokens_source = int(tokens_per_step) * step, "tokens_per_step"
    return Checkpoint(series=series, size=size or _size_label(n_nonemb), step=step,
                      source=source or str(folder), n_params=n_total, n_params_nonembedding=n_nonemb,
                      tokens_seen=tokens_seen,
                      tokens_source=tokens_source or ("unknown" if tokens_seen is None else "manifest"),
                      dtype=dtype, weight_hash=hash_weights(folder) if hash_weights_ else None,
                      tokenizer_hash=(hash_tokenizer_files(folder) or "")[:16] or None,
                      model_config_hash=hash_model_config(folder))


# ---- manifests ----------------------------------------------------------------------------

_ENTRY_KEYS = {"path", "hub", "revision", "size", "step", "tokens_seen", "series"}


def read_manifest(path: Path, *, tokens_per_step: int | None = None,
                  hash_weights_: bool = True) -> SeriesScan:
    """A YAML or JSON manifest::

        series: mymodel
        tokens_per_step: 2097152        # optional
        checkpoints:
          - {path: runs/1m/step1000, size: 1m, step: 1000, tokens_seen: 2.1e9}
          - {hub: EleutherAI/pythia-70m, revision: step1000, size: 70m, step: 1000}
    """
    import yaml

    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError, UnicodeDecodeError) as e:
        raise SeriesError(f"manifest {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'} "
                          f"({str(e).splitlines()[0][:120]}): fix its syntax") from e
    if isinstance(data, list):
        data = {"checkpoints": data}
    if not isinstance(data, dict) or not isinstance(data.get("checkpoints"), list):
        raise SeriesError(f"manifest {path} must have a `checkpoints:` list of entries "
                          "(each with path or hub, and size, step, tokens_seen)")
    series = str(data.get("series") or path.stem)
    tps = data.get("tokens_per_step", tokens_per_step)
    checkpoints, problems = [], []
    for i, entry in enumerate(data["checkpoints"]):
        where = f"{path}: checkpoints[{i}]"
        if not isinstance(entry, dict):
            problems.append((where, f"{where} must be a mapping with path or hub"))
            continue
        unknown = set(entry) - _ENTRY_KEYS
        if unknown:
            problems.append((where, f"{where} has unknown key(s) {sorted(unknown)}; allowed: "
                                    f"{sorted(_ENTRY_KEYS)}"))
            continue
        try:
            step = None if entry.get("step") is None else int(entry["step"])
            tokens = None if entry.get("tokens_seen") is None else int(float(entry["tokens_seen"]))
        except (TypeError, ValueError, OverflowError):  # e.g. step: .inf
            problems.append((where, f"{where}: step and tokens_seen must be numbers"))
            continue
        tsource = "manifest" if tokens is not None else None
        if tokens is None and tps is not None and step is not None:
            tokens, tsource = int(float(tps)) * step, "tokens_per_step"
        s = str(entry.get("series") or series)
        size = None if entry.get("size") is None else str(entry["size"])
        try:
            if "path" in entry:
                folder = (path.parent / str(entry["path"])).resolve()
                if not folder.exists():
                    raise SeriesError(f"{where}: path {folder} does not exist; fix the path (relative "
                                      "paths are read from the manifest's folder)")
                checkpoints.append(_checkpoint_from_folder(
                    folder, series=s, size=size, step=step, tokens_per_step=None,
                    hash_weights_=hash_weights_, tokens_seen=tokens, tokens_source=tsource))
            elif "hub" in entry:
                checkpoints.append(_hub_checkpoint(str(entry["hub"]), entry.get("revision"), s, size,
                                                   step, tokens, tsource, hash_weights_))
            else:
                raise SeriesError(f"{where} needs `path:` (a local folder) or `hub:` (a hub id)")
        except SeriesError as e:
            problems.append((where, str(e)))
    return SeriesScan(checkpoints, problems)


def _hub_checkpoint(repo_id: str, revision: str | None, series: str, size: str | None,
                    step: int | None, tokens: int | None, tsource: str | None,
                    hash_weights_: bool) -> Checkpoint:
    """A hub entry: read from the local hub cache when present (never downloads here)."""
    source = f"hub:{repo_id}" + (f"@{revision}" if revision else "")
    local = None
    try:
        from huggingface_hub import snapshot_download

        local = Path(snapshot_download(repo_id, revision=revision, local_files_only=True))
    except Exception:  # noqa: BLE001 - not cached: parameters stay unknown until it is loaded
        local = None
    if local is not None and is_model_folder(local):
        c = _checkpoint_from_folder(local, series=series, size=size, step=step, tokens_per_step=None,
                                    hash_weights_=hash_weights_, tokens_seen=tokens,
                                    tokens_source=tsource, source=source)
        return Checkpoint(**{**c.__dict__, "revision": revision})
    return Checkpoint(series=series, size=size or "unknown", step=step, source=source,
                      tokens_seen=tokens, tokens_source=tsource or "unknown", revision=revision)


def load_source(ckpt: Checkpoint) -> tuple[str, str | None]:
    """(pretrained path or hub id, revision) for loading a checkpoint with transformers."""
    if ckpt.source.startswith("hub:"):
        repo = ckpt.source[4:].split("@", 1)[0]
        return repo, ckpt.revision
    return ckpt.source, None
