"""Append-only results store.

Layout of a results folder::

    results/
      rows.jsonl              one ResultRow per line (schema: evalsuite.records.ResultRow)
      samples/<cell>.parquet  per-request results of one checkpoint x precision x task cell

Rows are appended with a single ``write`` of a whole line followed by ``fsync``, so a run killed
mid-write leaves at most one torn last line; the reader reports and ignores it. A cell's rows are
written together after its per-sample file is in place (written to a temporary file, fsynced,
renamed), so a cell with rows always has its samples.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path
from typing import Iterable

from .records import RESULT_COLUMNS, ResultRow

log = logging.getLogger(__name__)

ROWS_FILE = "rows.jsonl"
SAMPLES_DIR = "samples"


class StoreError(RuntimeError):
    """A results folder that cannot be read or written."""


class ResultStore:
    """Results folder: append rows, read them back, keep per-sample files beside them."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    @property
    def rows_path(self) -> Path:
        return self.root / ROWS_FILE

    def _ensure_dir(self) -> None:
        try:
            (self.root / SAMPLES_DIR).mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create results folder {self.root}: {e.strerror}. "
                             "Pass a writable folder with --results DIR.") from e

    # ---- rows -------------------------------------------------------------------------
    def append(self, rows: Iterable[ResultRow]) -> int:
        """Append rows in one write; returns how many were written."""
        rows = list(rows)
        if not rows:
            return 0
        self._ensure_dir()
        blob = "".join(json.dumps(r.to_dict(), sort_keys=True, allow_nan=False) + "\n" for r in rows)
        data = blob.encode("utf-8")
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
        """All complete rows; torn or corrupt lines are reported (logged) and skipped."""
        if not self.rows_path.exists():
            return []
        rows: list[ResultRow] = []
        with open(self.rows_path, "rb") as fh:
            for lineno, raw in enumerate(fh, 1):
                line = raw.strip()
                if not line:
                    continue
                try:
                    d = json.loads(line.decode("utf-8"))
                    if not isinstance(d, dict):
                        raise ValueError(f"a row is a JSON object, not {type(d).__name__}")
                    rows.append(ResultRow.from_dict(d))
                except (ValueError, TypeError, AttributeError, UnicodeDecodeError) as e:
                    log.warning("%s:%d: skipping unreadable row (%s); it is ignored and its cell "
                                "will be recomputed on the next run", self.rows_path, lineno, e)
        return rows

    def to_frame(self):
        """Rows as a pandas DataFrame with the ResultRow columns (empty frame when no rows)."""
        import pandas as pd

        rows = self.read_rows()
        if not rows:
            return pd.DataFrame(columns=list(RESULT_COLUMNS))
        return pd.DataFrame([r.to_dict() for r in rows], columns=list(RESULT_COLUMNS))

    def done_cells(self) -> set[str]:
        return {r.cell_key for r in self.read_rows() if r.cell_key}

    # ---- per-sample files ---------------------------------------------------------------
    def samples_path(self, cell_key: str) -> Path:
        return self.root / SAMPLES_DIR / f"{cell_key}.parquet"

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
