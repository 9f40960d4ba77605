"""Append-only results store.

Layout of a results folder::

    results/
      rows.jsonl              one ResultRow per line (schema: evalsuite.records.ResultRow)
      samples/<cell>.parquet  per-request results of one checkpoint x precision x task cell
      .lock                   flock: held by an import, and briefly by each run for each claim
                              and each write
      claims/<cell>.claim     a cell being scored by a running writer (JSON: owner, pid, host)

Cells are atomic. :meth:`ResultStore.append` writes all rows of a cell in one ``write`` followed
by ``fsync``. Each row is a line ``json.dumps(row, sort_keys=True)``; the last row of a cell ends
in its commit, ``..., "_commit": {"cell_key": K, "digest": D, "rows": n}}``, where D is the
sha256 of the bytes of the cell's n lines, the last one as it reads without that suffix (the
line the row would have had without a commit). The commit rides on a row rather than on a line
of its own so that every line stays one ResultRow (``jq``, ``pandas.read_json(lines=True)`` and
line-by-line readers keep working). The reader keeps the
lines since the last commit: a commit whose n preceding lines are rows of cell K commits them;
lines no commit covers (a run killed or a disk filled mid-write, leftovers) are reported once
per read, ignored, and their cells re-scored by the next run. A digest that does not match means
the lines changed after they were written (a hand edit, damage): the rows are kept as they now
read and the mismatch is reported.

Legacy files: rows of ``schema_version`` < 3 were written before commits existed, by one write
per cell, so they are accepted as committed without one (consecutive rows of one cell count as
one write). Schema 3 re-keyed cells (:mod:`evalsuite.run.keys`), so a run never treats a legacy
cell as its own; they stay readable for leaderboards and fits.

Many writers. Any number of ``evalsuite run`` processes (on one machine or on several sharing the
folder) may write at once: before scoring a cell a writer claims it (``claims/<cell>.claim``,
created under the lock, after checking the cell is not done), refreshes its claims' times while
it works, writes the cell under the lock and removes the claim. A cell another live writer has
claimed is left to it. A claim untouched for :data:`CLAIM_TTL_S` seconds (its writer was killed)
expires, and the next writer takes the cell over.

Every row is validated on read against the ResultRow fields (types from its annotations; a
float field takes an int, never a bool; ``None`` only where the annotation allows it; no NaN):
a row that fails, or comes from a newer schema, is reported with its file, line and field and
never returned. Rows are validated the same way before they are written.

A cell written again (re-scored, because its rows or samples were missing or unreadable)
supersedes the earlier write: :meth:`ResultStore.read_rows` returns, per ``cell_key``, the rows
of its last committed write only. :meth:`ResultStore.done_cells` is the set of cells whose last
write is committed, wholly valid and, for rows scored by evalsuite, has a readable per-sample
file: samples are written (temporary file, fsync, rename) before the rows, so a cell with
committed rows has its samples unless they were removed or damaged later, and then it is
re-scored.
"""

from __future__ import annotations

import dataclasses
import fcntl
import hashlib
import json
import logging
import math
import os
import socket
import tempfile
import time
import types
import typing
from collections.abc import Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from .records import RESULT_COLUMNS, SCHEMA_VERSION, ResultRow, flops_for

log = logging.getLogger(__name__)

ROWS_FILE = "rows.jsonl"
SAMPLES_DIR = "samples"
LOCK_FILE = ".lock"
#: Checkpoint metadata written after the run (``evalsuite series PATH --annotate``): one JSON
#: line per checkpoint, the last line of a checkpoint wins; joined onto rows when they are read.
METADATA_FILE = "metadata.jsonl"
#: Planned final steps of training runs (series, size, final_step), for the final-score forecast.
PLANS_FILE = "plans.jsonl"
CLAIMS_DIR = "claims"
#: Seconds after which a claim nobody refreshed is taken over (writers refresh theirs every
#: quarter of it). ``EVALSUITE_CLAIM_TTL_S`` overrides it (tests use seconds).
CLAIM_TTL_S = 120.0
#: Seconds a run waits for the folder's lock (held by an import, or another run writing a cell)
#: before it gives up with StoreLockedError; ``EVALSUITE_LOCK_WAIT_S`` overrides it.
LOCK_WAIT_S = 600.0


def _claim_writer_dead(path: Path) -> bool:
    """Whether a claim was written on this machine by a process that no longer runs (a killed
    writer: its cells are taken over at once, without waiting for the claim to expire)."""
    try:
        d = json.loads(path.read_text(encoding="utf-8"))
        if d.get("host") != socket.gethostname():
            return False
        os.kill(int(d["pid"]), 0)
    except ProcessLookupError:
        return True
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return False
    return False


def writer_lock_wait() -> float:
    try:
        return float(os.environ.get("EVALSUITE_LOCK_WAIT_S", LOCK_WAIT_S))
    except ValueError:
        return LOCK_WAIT_S
#: What an annotation may set on the rows of its checkpoint (compute_flops is derived).
ANNOTATED_FIELDS = ("n_params", "n_params_nonembedding", "tokens_seen")
COMMIT_KEY = "_commit"
#: First schema whose writes carry commits; older rows are legacy (committed without one).
FIRST_COMMITTED_SCHEMA = 3


class StoreError(RuntimeError):
    """A results folder that cannot be read or written."""


class StoreLockedError(StoreError):
    """Another evalsuite process holds the results folder's lock."""


# ---- row validation: JSON types derived from the ResultRow annotations -----------------------

_KIND_WORDS = {"int": "a whole number", "float": "a finite number", "str": "a string",
               "bool": "true or false", "mapping": "an object of strings"}


def _json_check(annotation: Any) -> tuple[str, bool] | None:
    """(kind, nullable) for a ResultRow annotation; None when no JSON check is defined for it."""
    nullable = False
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        rest = [a for a in args if a is not type(None)]
        nullable = len(rest) < len(args)
        if len(rest) != 1:
            return None
        annotation = rest[0]
    if annotation in (bool, int, float, str):
        return annotation.__name__, nullable
    origin = typing.get_origin(annotation)
    if isinstance(origin, type) and issubclass(origin, Mapping) \
            and typing.get_args(annotation) in ((), (str, str)):
        return "mapping", nullable
    return None


def _field_checks() -> dict[str, tuple[tuple[str, bool] | None, bool]]:
    hints = typing.get_type_hints(ResultRow)
    out = {}
    for f in dataclasses.fields(ResultRow):
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        out[f.name] = (_json_check(hints[f.name]), required)
    return out


#: field -> ((kind, nullable) or None when unchecked, required). tests/test_store_integrity.py
#: fails when a ResultRow field has no check, so a new field type gets one.
ROW_FIELD_CHECKS = _field_checks()


_MISSING = object()
_EXACT = {"int": {int}, "float": {int, float}, "str": {str}, "bool": {bool}, "mapping": set()}
#: (field, required, kind, nullable, builtin types accepted as they are) per ResultRow field.
_CHECK_LIST = tuple(
    (name, required, check[0] if check else None, check[1] if check else True,
     frozenset(_EXACT[check[0]] | ({type(None)} if check[1] else set())) if check else frozenset())
    for name, (check, required) in ROW_FIELD_CHECKS.items())


def _is_kind(v: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(v, bool)
    if isinstance(v, bool):
        return False  # JSON true is not the number 1 here
    if kind == "int":
        return isinstance(v, int)
    if kind == "float":
        return isinstance(v, (int, float)) and math.isfinite(v)
    if kind == "str":
        return isinstance(v, str)
    return isinstance(v, Mapping) and all(isinstance(k, str) and isinstance(x, str)
                                          for k, x in v.items())


def _show(v: Any) -> str:
    text = json.dumps(v) if isinstance(v, (str, bool)) or v is None else repr(v)
    return f"{text[:40]}{'...' if len(text) > 40 else ''}"


def row_problem(d: Mapping[str, Any]) -> str | None:
    """Why a JSON object is not a ResultRow this version can read (naming the field), or None."""
    version = d.get("schema_version")
    if "schema_version" not in d:
        return "missing field 'schema_version'"  # every writer wrote it
    if not _is_kind(version, "int"):
        return f"field 'schema_version' must be a whole number, got {_show(version)}"
    if version > SCHEMA_VERSION:
        return (f"schema_version {version} is newer than this evalsuite reads ({SCHEMA_VERSION}); "
                "upgrade evalsuite to read it")
    for name, required, kind, nullable, exact in _CHECK_LIST:
        v = d.get(name, _MISSING)
        t = type(v)
        if t in exact and (t is not float or math.isfinite(v)):
            continue  # the fast path: JSON gives exact builtin types
        if v is _MISSING:
            if required:
                return f"missing required field '{name}'"
            continue
        if kind is None or (v is None and nullable) or (v is not None and _is_kind(v, kind)):
            continue
        return (f"field '{name}' must be {_KIND_WORDS[kind]}{' or null' if nullable else ''}, "
                f"got {_show(v)}")
    return None


_COMMIT_SUFFIX = f', "{COMMIT_KEY}": '.encode()


def _row_line(d: Mapping[str, Any]) -> bytes:
    return (json.dumps(d, sort_keys=True, allow_nan=False) + "\n").encode("utf-8")


def _with_commit(line: bytes, commit: Mapping[str, Any]) -> bytes:
    """``{...}\\n`` -> ``{..., "_commit": {...}}\\n``."""
    return line[:-2] + _COMMIT_SUFFIX + json.dumps(commit, sort_keys=True).encode() + b"}\n"


def _without_commit(line: bytes) -> bytes:
    """The inverse of :func:`_with_commit` (what the digest covers)."""
    at = line.rfind(_COMMIT_SUFFIX)
    return line[:at] + b"}\n" if at > 0 else line


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not valid in a result row (JSON has no NaN or infinity)")


@dataclass
class _Line:
    lineno: int
    raw: bytes
    data: dict | None  # the parsed JSON object; None when the line is not one
    error: str = ""


@dataclass
class _Write:
    """One committed write of a cell, or a run of legacy rows of one cell, in file order."""

    cell_key: str
    rows: list[ResultRow] = field(default_factory=list)
    complete: bool = True  # every line of the write was a valid row
    legacy: bool = False  # rows of schema < 3, committed without a commit


def _parse_line(lineno: int, raw: bytes) -> _Line:
    try:
        d = json.loads(raw.decode("utf-8"), parse_constant=_no_constants)
    except (ValueError, UnicodeDecodeError) as e:
        return _Line(lineno, raw, None, f"unreadable ({e})")
    if not isinstance(d, dict):
        return _Line(lineno, raw, None, f"a JSON {type(d).__name__}, not a row object")
    return _Line(lineno, raw, d)


def _commit_of(d: Mapping[str, Any]) -> tuple[str, int, str] | None:
    c = d.get(COMMIT_KEY)
    if not isinstance(c, Mapping):
        return None
    key, n, digest = c.get("cell_key"), c.get("rows"), c.get("digest")
    if not (isinstance(key, str) and _is_kind(n, "int") and n >= 1 and isinstance(digest, str)):
        return None
    return key, n, digest


def _is_legacy(line: _Line) -> bool:
    d = line.data
    return (d is not None and COMMIT_KEY not in d and _is_kind(d.get("schema_version"), "int")
            and d["schema_version"] < FIRST_COMMITTED_SCHEMA)


def _line_ranges(numbers: list[int]) -> str:
    out: list[str] = []
    for n in numbers:
        if out and out[-1].split("-")[-1] == str(n - 1):
            out[-1] = f"{out[-1].split('-')[0]}-{n}"
        else:
            out.append(str(n))
    return ", ".join(out)


def _latest_writes(writes: list[_Write]) -> list[_Write]:
    """Per cell_key the last write only (a re-scored cell supersedes); keyless rows all stay."""
    last = {w.cell_key: i for i, w in enumerate(writes) if w.cell_key}
    return [w for i, w in enumerate(writes) if not w.cell_key or last[w.cell_key] == i]


class ResultStore:
    """Results folder: append rows, read them back, keep per-sample files beside them."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        # (done cells, rows.jsonl size they cover) for claims: see _done_under_lock
        self._done_cache: tuple[set[str], int] | None = None

    @property
    def rows_path(self) -> Path:
        return self.root / ROWS_FILE

    def _ensure_dir(self) -> None:
        try:
            (self.root / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create results folder {self.root}: {e.strerror}. "
                             "Pass a writable folder with --results DIR.") from e

    # ---- the writer's lock ----------------------------------------------------------------
    @contextmanager
    def lock(self, wait: bool | float = False) -> Iterator[None]:
        """Hold the folder's exclusive lock (``<root>/.lock``, flock).

        ``wait``: False raises StoreLockedError at once when another process holds it; True
        waits as long as it takes; a number waits that many seconds at most. StoreError when
        the folder or its lock file cannot be created.
        """
        path = self.root / LOCK_FILE
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            fh = open(path, "a+")
        except OSError as e:
            raise StoreError(f"cannot use results folder {self.root}: {e.strerror}. Pass a "
                             "writable folder with --results DIR.") from e
        try:
            try:
                if wait is True:
                    fcntl.flock(fh, fcntl.LOCK_EX)
                else:
                    deadline = time.monotonic() + (0.0 if wait is False else float(wait))
                    while True:
                        try:
                            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                            break
                        except BlockingIOError:
                            if time.monotonic() >= deadline:
                                raise
                            time.sleep(0.05)
            except BlockingIOError as e:
                raise StoreLockedError(
                    f"another evalsuite process is writing to {self.root} (an import, or a run "
                    f"writing a cell, holds {path}"
                    + (f" and kept it for {float(wait):.0f} s" if wait is not False else "")
                    + "); wait for it to finish, or pass another --results DIR") from e
            except OSError as e:
                raise StoreError(f"cannot lock {path}: {e.strerror}. Pass a results folder on a "
                                 "local disk with --results DIR.") from e
            yield
        finally:
            try:
                fcntl.flock(fh, fcntl.LOCK_UN)
            finally:
                fh.close()

    # ---- claims: many writers ----------------------------------------------------------
    # (a writer holds the lock only to claim cells and to write one; writer_lock_wait() bounds
    # how long it waits for an import or a stuck process)
    @staticmethod
    def claim_ttl() -> float:
        try:
            return float(os.environ.get("EVALSUITE_CLAIM_TTL_S", CLAIM_TTL_S))
        except ValueError:
            return CLAIM_TTL_S

    def _claim_path(self, cell_key: str) -> Path:
        return self.root / CLAIMS_DIR / f"{cell_key}.claim"

    def claim_cells(self, cell_keys: Iterable[str], owner: str) -> tuple[list[str], list[str]]:
        """Claim the cells for ``owner``, under the folder's lock: returns (claimed, elsewhere).
        A cell already done, or claimed by another writer within the claim TTL, is not
        claimed (done ones are in neither list); an expired claim is taken over."""
        keys = list(cell_keys)
        claimed, elsewhere = [], []
        ttl = self.claim_ttl()
        with self.lock(wait=writer_lock_wait()):
            done = self._done_under_lock()
            try:
                (self.root / CLAIMS_DIR).mkdir(parents=True, exist_ok=True)
            except OSError as e:
                raise StoreError(f"cannot create {self.root / CLAIMS_DIR}: {e.strerror}. Pass a "
                                 "writable folder with --results DIR.") from e
            for key in keys:
                if key in done:
                    continue
                path = self._claim_path(key)
                try:
                    age = time.time() - path.stat().st_mtime
                    holder = self._claim_owner(path)
                    dead = _claim_writer_dead(path)
                    if age < ttl and holder != owner and not dead:
                        elsewhere.append(key)
                        continue
                    if holder != owner:
                        log.warning("taking over %s from %s: %s", path.name, holder,
                                    "its process has ended" if dead else
                                    f"not refreshed for {age:.0f} s")
                except FileNotFoundError:
                    pass
                tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
                try:
                    tmp.write_text(json.dumps({"owner": owner, "pid": os.getpid(),
                                               "host": socket.gethostname()}), encoding="utf-8")
                    os.replace(tmp, path)
                except OSError as e:
                    raise StoreError(f"cannot write the claim {path}: {e.strerror}; free space "
                                     "or pass a writable --results DIR") from e
                claimed.append(key)
        return claimed, elsewhere

    def _done_under_lock(self) -> set[str]:
        """The done cells, for a claim: one full :meth:`done_cells` per store object, then only
        the commits appended since (the caller holds the lock, so no write is half-way; a cell
        another writer committed meanwhile is done). Keeps a claim O(new rows), not O(file)."""
        try:
            size = self.rows_path.stat().st_size
        except FileNotFoundError:
            size = 0
        cache = self._done_cache
        if cache is None or size < cache[1]:  # first claim, or the file was replaced
            self._done_cache = (self.done_cells(), size)
            return set(self._done_cache[0])
        done, offset = cache
        if size > offset:
            with open(self.rows_path, "rb") as fh:
                fh.seek(offset)
                tail = fh.read(size - offset)
            for raw in tail.splitlines():
                try:
                    commit = json.loads(raw).get("_commit")
                except (ValueError, AttributeError):
                    continue
                if isinstance(commit, dict) and isinstance(commit.get("cell_key"), str):
                    done.add(commit["cell_key"])
            self._done_cache = (done, size)
        return set(done)

    @staticmethod
    def _claim_owner(path: Path) -> str | None:
        try:
            return json.loads(path.read_text(encoding="utf-8")).get("owner")
        except (OSError, ValueError, AttributeError):
            return None

    def refresh_claims(self, cell_keys: Iterable[str], owner: str) -> None:
        """Touch ``owner``'s claims so they do not expire while their cells are scored."""
        for key in cell_keys:
            path = self._claim_path(key)
            if self._claim_owner(path) == owner:
                try:
                    os.utime(path)
                except OSError:
                    pass

    def release_claims(self, cell_keys: Iterable[str], owner: str) -> None:
        """Remove ``owner``'s claims (after their cells are written, or on the way out)."""
        for key in cell_keys:
            path = self._claim_path(key)
            if self._claim_owner(path) == owner:
                try:
                    path.unlink()
                except OSError:
                    pass

    # ---- rows -------------------------------------------------------------------------
    def append(self, rows: Iterable[ResultRow]) -> int:
        """Append whole cells in one write (each with its commit); returns the rows written.

        Rows are grouped by ``cell_key`` (cells in order of first appearance) and each cell's
        last row carries its commit, so a write cut short leaves every cell either committed or
        ignored. Pass all rows of a cell in one call: a later write of the same cell supersedes
        the earlier one. A row that would not read back (a wrong type, NaN where a number is
        required) raises ValueError naming the field, before anything is written.
        """
        rows = list(rows)
        if not rows:
            return 0
        cells: dict[str, list[dict]] = {}
        for r in rows:
            d = r.to_dict()
            problem = row_problem(d)
            if problem:
                raise ValueError(f"refusing to store a row of cell {r.cell_key or '(no key)'} "
                                 f"({r.checkpoint_id} {r.task} {r.metric}): {problem}")
            cells.setdefault(r.cell_key, []).append(d)
        lines: list[bytes] = []
        for key, dicts in cells.items():
            cell = [_row_line(d) for d in dicts]
            commit = {"cell_key": key, "rows": len(cell),
                      "digest": hashlib.sha256(b"".join(cell)).hexdigest()}
            lines.extend(cell[:-1] + [_with_commit(cell[-1], commit)])
        data = b"".join(lines)
        self._ensure_dir()
        try:
            fd = os.open(self.rows_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        except OSError as e:
            raise StoreError(f"cannot open {self.rows_path} for appending: {e.strerror}. "
                             "Check the folder is writable or pass another --results DIR.") from e
        try:
            # A previous run killed mid-line leaves a torn tail: start ours on a fresh line.
            size = os.fstat(fd).st_size
            if size:
                with open(self.rows_path, "rb") as fh:
                    fh.seek(size - 1)
                    if fh.read(1) != b"\n":
                        data = b"\n" + data
            written = 0
            while written < len(data):
                written += os.write(fd, data[written:])
            os.fsync(fd)
        except OSError as e:
            raise StoreError(f"writing {self.rows_path} failed ({e.strerror}); rows already in the "
                             "file are intact. Free space or pass another --results DIR.") from e
        finally:
            os.close(fd)
        return len(rows)

    def read_rows(self) -> list[ResultRow]:
        """Rows of committed writes, per cell its last write only; everything else is reported.

        Lines no commit covers, and rows that fail validation, are logged (file, line, why) and
        skipped; see the module docstring.
        """
        rows = [r for w in _latest_writes(self._scan()) for r in w.rows]
        notes = self.read_metadata()
        return [annotate_row(r, notes) for r in rows] if notes else rows

    # ---- checkpoint metadata fixed after the run -----------------------------------------
    @property
    def metadata_path(self) -> Path:
        return self.root / METADATA_FILE

    def annotate(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Append checkpoint metadata (``series``, ``size``, ``step`` and any of
        :data:`ANNOTATED_FIELDS`) under the folder's lock; rows are never rewritten, and no cell is
        re-scored: :meth:`read_rows` joins the latest metadata of each checkpoint onto its rows
        (``compute_flops`` recomputed). Returns how many records were written."""
        lines = []
        for rec in records:
            d = {k: rec.get(k) for k in ("series", "size", "step", *ANNOTATED_FIELDS)}
            if not d["series"] or not d["size"]:
                raise StoreError(f"checkpoint metadata {dict(rec)!r} names no series and size")
            lines.append(json.dumps(d, sort_keys=True) + "\n")
        return self._append_lines(self.metadata_path, lines)

    def _append_lines(self, path: Path, lines: list[str]) -> int:
        """Append whole lines to a side file (metadata, plans) under the folder's lock, synced."""
        if not lines:
            return 0
        with self.lock(wait=True):
            try:
                with open(path, "a", encoding="utf-8") as fh:
                    fh.write("".join(lines))
                    fh.flush()
                    os.fsync(fh.fileno())
            except OSError as e:
                raise StoreError(f"cannot write {path}: {e.strerror}; free space or pass a "
                                 "writable --results DIR") from e
        return len(lines)

    def read_metadata(self) -> dict[tuple, dict[str, Any]]:
        """(series, size, step) -> the fields its latest annotation sets (None values skipped)."""
        if not self.metadata_path.exists():
            return {}
        out: dict[tuple, dict[str, Any]] = {}
        for lineno, line in enumerate(self.metadata_path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                key = (str(d["series"]), str(d["size"]), d.get("step"))
            except (ValueError, KeyError, TypeError):
                log.warning("%s:%d: not a metadata record; skipped (delete the line to silence "
                            "this)", self.metadata_path, lineno)
                continue
            out[key] = {k: d[k] for k in ANNOTATED_FIELDS if d.get(k) is not None}
        return out

    # ---- training plans (the final step a run will reach) --------------------------------
    @property
    def plans_path(self) -> Path:
        return self.root / PLANS_FILE

    def record_plans(self, records: Iterable[Mapping[str, Any]]) -> int:
        """Append planned final steps ({series, size, final_step}) that differ from the ones
        recorded; the latest record of a (series, size) wins. Returns how many were written."""
        known = self.read_plans()
        lines, seen = [], {}
        for rec in records:
            key = (str(rec["series"]), str(rec["size"]))
            step = int(rec["final_step"])
            if step <= 0:
                raise StoreError(f"planned final step {step} for {key[0]} {key[1]} must be positive")
            if known.get(key) == step or seen.get(key) == step:
                continue
            seen[key] = step
            lines.append(json.dumps({"series": key[0], "size": key[1], "final_step": step},
                                    sort_keys=True) + "\n")
        return self._append_lines(self.plans_path, lines)

    def read_plans(self) -> dict[tuple[str, str], int]:
        """(series, size) -> planned final step (the latest record of each)."""
        if not self.plans_path.exists():
            return {}
        out: dict[tuple[str, str], int] = {}
        for lineno, line in enumerate(self.plans_path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
                out[(str(d["series"]), str(d["size"]))] = int(d["final_step"])
            except (ValueError, KeyError, TypeError):
                log.warning("%s:%d: not a plan record; skipped (delete the line to silence "
                            "this)", self.plans_path, lineno)
        return out

    def to_frame(self):
        """Rows as a pandas DataFrame with the ResultRow columns (empty frame when no rows)."""
        import pandas as pd

        rows = self.read_rows()
        if not rows:
            return pd.DataFrame(columns=list(RESULT_COLUMNS))
        return pd.DataFrame([r.to_dict() for r in rows], columns=list(RESULT_COLUMNS))

    def done_cells(self) -> set[str]:
        """Cells a run may skip: last write committed and valid, samples readable when scored here.

        A cell whose per-sample file is missing or unreadable is reported and left out, so the
        next run re-scores it (and its new write supersedes the old rows).
        """
        done = set()
        for w in _latest_writes(self._scan()):
            if not w.cell_key or not w.complete:
                continue
            if any(r.source == "evalsuite" for r in w.rows):
                problem = self._samples_problem(w.cell_key)
                if problem:
                    log.warning("%s: per-sample file %s %s; cell %s will be re-scored on the "
                                "next run", self.root, self.samples_path(w.cell_key), problem,
                                w.cell_key)
                    continue
            done.add(w.cell_key)
        return done

    def _scan(self) -> list[_Write]:
        """Every write in file order (committed cells and legacy rows), with problems logged."""
        try:
            fh = open(self.rows_path, "rb")
        except FileNotFoundError:
            return []
        except OSError as e:
            raise StoreError(f"cannot read {self.rows_path}: {e.strerror}. Check its permissions "
                             "or pass another --results DIR.") from e
        writes: list[_Write] = []
        pending: list[_Line] = []  # lines since the last commit
        uncovered: list[tuple[int, str]] = []  # (line, why) for the one report at the end

        def leftovers(lines: list[_Line]) -> None:
            for line in lines:
                if _is_legacy(line):  # committed by the one write per cell of schemas 1-2
                    key = line.data.get("cell_key")
                    key = key if isinstance(key, str) else ""
                    if not writes or not writes[-1].legacy or writes[-1].cell_key != key:
                        writes.append(_Write(key, legacy=True))
                    self._add_row(writes[-1], line)
                elif line.data is None:
                    uncovered.append((line.lineno, line.error))
                else:
                    key = line.data.get("cell_key")
                    uncovered.append((line.lineno, f"row of cell {key} without its commit"
                                      if isinstance(key, str) and key else "row without a commit"))

        with fh:
            for lineno, raw in enumerate(fh, 1):
                if not raw.strip():
                    continue
                line = _parse_line(lineno, raw)
                pending.append(line)
                if line.data is None or COMMIT_KEY not in line.data:
                    continue
                commit = _commit_of(line.data)
                n = commit[1] if commit else 0
                group = pending[-n:] if commit and n <= len(pending) else []
                if not group or any(g.data is None or g.data.get("cell_key") != commit[0]
                                    for g in group):
                    leftovers(pending[:-1])
                    uncovered.append((lineno, "a commit that does not match the lines before it"))
                    pending = []
                    continue
                leftovers(pending[:-n])
                pending = []
                key, _, digest = commit
                body = b"".join(g.raw for g in group[:-1]) + _without_commit(group[-1].raw)
                if hashlib.sha256(body).hexdigest() != digest:
                    log.warning("%s: lines %s (cell %s) changed after they were written (their "
                                "commit's digest does not match: a hand edit or damage); they are "
                                "read as they now are", self.rows_path,
                                _line_ranges([g.lineno for g in group]), key)
                w = _Write(key)
                for g in group:
                    self._add_row(w, g)
                writes.append(w)
        leftovers(pending)  # a torn or interrupted last write
        if uncovered:
            shown = "; ".join(f"line {n}: {why}" for n, why in uncovered[:10])
            more = f"; and {len(uncovered) - 10} more" if len(uncovered) > 10 else ""
            log.warning("%s: skipping %d line(s) that no complete cell write covers (a run killed "
                        "or a disk filled mid-write, or leftovers): %s%s. They are ignored and "
                        "their cells will be re-scored on the next run", self.rows_path,
                        len(uncovered), shown, more)
        return writes

    def _add_row(self, write: _Write, line: _Line) -> None:
        problem = row_problem(line.data)
        if problem is None:
            try:
                write.rows.append(ResultRow.from_dict(line.data))
                return
            except (TypeError, ValueError) as e:  # defensive: row_problem should catch it all
                problem = str(e)
        write.complete = False
        log.warning("%s:%d: ignoring row: %s; its cell %s will be re-scored on the next run",
                    self.rows_path, line.lineno, problem, write.cell_key or "(no key)")

    # ---- per-sample files ---------------------------------------------------------------
    def samples_path(self, cell_key: str) -> Path:
        return self.root / SAMPLES_DIR / f"{cell_key}.parquet"

    def _samples_problem(self, cell_key: str) -> str | None:
        """None when a cell's per-sample file is there and its Parquet footer reads; else why."""
        path = self.samples_path(cell_key)
        if not path.is_file():
            return "is missing"
        try:
            import pyarrow.parquet as pq
        except ImportError:  # no pyarrow: check the Parquet magic at both ends
            try:
                with open(path, "rb") as fh:
                    head = fh.read(4)
                    fh.seek(-4, os.SEEK_END)
                    ok = head == b"PAR1" and fh.read(4) == b"PAR1"
            except OSError as e:
                return f"is unreadable ({e.strerror})"
            return None if ok else "is not a complete Parquet file"
        try:
            pq.read_metadata(path)
        except Exception as e:  # pyarrow raises OSError, ArrowInvalid, ...: any is unreadable
            return f"is unreadable ({type(e).__name__}: {str(e)[:120]})"
        return None

    def write_samples(self, cell_key: str, frame) -> Path:
        """Write a per-sample DataFrame atomically (temp file, fsync, rename)."""
        self._ensure_dir()
        final = self.samples_path(cell_key)
        fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".parquet", dir=final.parent)
        os.close(fd)
        try:
            frame.to_parquet(tmp, index=False)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, final)
        except OSError as e:
            Path(tmp).unlink(missing_ok=True)
            raise StoreError(f"writing {final} failed ({e.strerror}). Free space or pass another "
                             "--results DIR.") from e
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return final

    def read_samples(self, cell_key: str):
        import pandas as pd

        return pd.read_parquet(self.samples_path(cell_key))


def annotate_row(row: ResultRow, notes: Mapping[tuple, Mapping[str, Any]]) -> ResultRow:
    """The row with its checkpoint's annotated metadata, and compute_flops from it."""
    note = notes.get((row.series, row.size, row.step))
    if not note:
        return row
    changed = {k: v for k, v in note.items() if getattr(row, k) != v}
    if not changed:
        return row
    merged = dataclasses.replace(row, **changed)
    return dataclasses.replace(merged, compute_flops=flops_for(
        merged.n_params, merged.n_params_nonembedding, merged.tokens_seen,
        merged.flops_basis or "total"))
