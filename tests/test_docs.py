"""The README, docs/ pages and benchmarks/RESULTS.md: links resolve, the README stays short,
and the README's results-schema table names exactly the fields of ResultRow."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from evalsuite.records import ResultRow

ROOT = Path(__file__).parent.parent
README = ROOT / "README.md"
MARKDOWN = [README, *sorted((ROOT / "docs").glob("*.md")), ROOT / "benchmarks" / "RESULTS.md"]

# [text](target) or [text](target "title"); the text may hold `code` but no brackets.
LINK = re.compile(r"\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
FENCE = re.compile(r"^\s*(```|~~~)")


def _links(path: Path) -> list[tuple[int, str]]:
    """(line number, target) of every markdown link outside fenced code blocks."""
    found, in_fence = [], False
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        found += [(number, m.group(1)) for m in LINK.finditer(line)]
    return found


def test_markdown_files_exist():
    for path in MARKDOWN:
        assert path.is_file(), f"{path.relative_to(ROOT)} is missing"


@pytest.mark.parametrize("path", MARKDOWN, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path: Path):
    broken = []
    for number, target in _links(path):
        if re.match(r"^(https?:|mailto:)", target, re.IGNORECASE) or target.startswith("#"):
            continue
        file_part = target.split("#", 1)[0]
        if not file_part:
            continue
        resolved = (path.parent / file_part).resolve()
        if not resolved.exists():
            broken.append(f"{path.relative_to(ROOT)}:{number}: {target}")
    assert not broken, "broken relative links:\n" + "\n".join(broken)


def test_link_parser_sees_links():
    """Guard against a parser that finds nothing (which would make the link test vacuous)."""
    targets = [t for _, t in _links(README)]
    assert "docs/engine.md" in targets
    assert "benchmarks/RESULTS.md" in targets


def test_readme_is_short():
    n_lines = len(README.read_text(encoding="utf-8").splitlines())
    assert n_lines <= 300, f"README.md has {n_lines} lines (at most 300)"


def _schema_table_fields() -> list[str]:
    """Field names in the first column of the README's results-schema table.

    The table sits under the '## Results schema' heading: rows like
    | `series`, `size`, `step` | meaning |
    """
    lines = README.read_text(encoding="utf-8").splitlines()
    start = next(i for i, l in enumerate(lines) if l.startswith("## Results schema"))
    names, in_table = [], False
    for line in lines[start + 1:]:
        if line.startswith("## "):
            break
        if line.startswith("|"):
            in_table = True
            first = line.split("|")[1]
            names += re.findall(r"`([^`]+)`", first)
        elif in_table:
            break
    return names


def test_readme_schema_table_matches_result_row():
    table = _schema_table_fields()
    code = [f.name for f in dataclasses.fields(ResultRow)]
    assert table, "no results-schema table found in README.md"
    duplicates = sorted({n for n in table if table.count(n) > 1})
    assert not duplicates, f"listed twice in the README table: {duplicates}"
    missing = [n for n in code if n not in table]
    extra = [n for n in table if n not in code]
    assert not missing and not extra, (
        f"README results-schema table vs ResultRow: missing from the table {missing}, "
        f"not ResultRow fields {extra}")
