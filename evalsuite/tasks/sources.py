"""Where lm-eval's datasets live in a local data folder: one table, hub id -> files and adapter.

A data folder is laid out like ``../shared/data/benchmarks`` (its PROVENANCE.md names each
file's source). Any lm-eval task whose dataset (``dataset_path``, ``dataset_name``) is listed
here runs offline on those files with lm-eval's own task definition: the same prompts, few-shot
settings and metrics, only the documents come from the folder (``TaskRegistry.build``).

Two kinds of entry: the families below (a pattern per hub id, ``{name}`` standing for the
dataset config: every MMLU subject, every BBH task), and one entry per bundled task in
``tasks/`` (its ``data:`` block, keyed by the dataset of the lm-eval task it wraps), which the
registry adds, so the LAMBADA variants, ARC, PIQA, the GPT-3 arithmetic tasks and the others
resolve for every lm-eval task that reads the same dataset.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Mapping

__all__ = ["LocalSource", "FAMILIES", "GENERIC_BUILDERS", "match_source"]

#: ``datasets`` builders that read files named elsewhere in the config (``data_files``): not a
#: dataset id, so never a key of this table (lm-eval's arithmetic tasks read json this way).
GENERIC_BUILDERS = frozenset({"json", "csv", "parquet", "text", "arrow", "pandas", "webdataset"})


@dataclass(frozen=True)
class LocalSource:
    """One dataset's files in the data folder.

    ``dataset_name`` ``"*"`` matches every config, substituted for ``{name}`` in ``files``
    (split -> path relative to the data folder); ``provenance`` names the PROVENANCE.md section.
    """

    dataset_path: str
    dataset_name: str | None
    adapter: str
    files: Mapping[str, str] = field(default_factory=dict)
    provenance: str = ""
    #: removed from the end of the config name before it fills ``{name}`` (``_zero_shot``)
    name_suffix: str = ""

    def matches(self, dataset_path: str | None, dataset_name: str | None) -> bool:
        return dataset_path == self.dataset_path and (
            self.dataset_name == "*" or (self.dataset_name or None) == (dataset_name or None))

    def files_for(self, dataset_name: str | None) -> dict[str, str]:
        name = dataset_name or ""
        if self.name_suffix and name.endswith(self.name_suffix):
            name = name[: -len(self.name_suffix)]
        return {split: rel.format(name=name) for split, rel in self.files.items()}


_MMLU = {"test": "mmlu/test/{name}_test.csv", "dev": "mmlu/dev/{name}_dev.csv"}
_BBH = {"test": "bbh/{name}.json"}
_GSM8K = {"test": "gsm8k/test.jsonl"}  # the folder has no train split: few-shot docs from test

#: Hub datasets with a pattern of files (names as lm-eval 0.4.13's task YAMLs give them).
FAMILIES: tuple[LocalSource, ...] = (
    LocalSource("cais/mmlu", "*", "mmlu_csv", _MMLU, "MMLU"),
    LocalSource("hails/mmlu_no_train", "*", "mmlu_csv", _MMLU, "MMLU"),
    LocalSource("SaylorTwift/bbh", "*", "bbh_json", _BBH, "BIG-Bench Hard"),
    LocalSource("lukaemon/bbh", "*", "bbh_json", _BBH, "BIG-Bench Hard"),
    LocalSource("openai/gsm8k", "main", "jsonl", _GSM8K, "GSM8K"),
    LocalSource("gsm8k", "main", "jsonl", _GSM8K, "GSM8K"),
    # lm-eval's bigbench_* tasks read hails/bigbench "<task>_zero_shot", split "default" (all
    # examples); the folder holds the original BIG-bench task.json of some tasks
    LocalSource("hails/bigbench", "*", "bigbench_json", {"default": "bigbench/{name}/task.json"},
                "BIG-bench (emergence-relevant tasks)", name_suffix="_zero_shot"),
)


def match_source(dataset_path: str | None, dataset_name: str | None,
                 sources: Iterable[LocalSource], data_dir: Path | None = None
                 ) -> tuple[LocalSource, dict[str, str]] | None:
    """The first source for this dataset (and its files), or None. With ``data_dir``, only a
    source whose files are all there."""
    if not dataset_path or dataset_path in GENERIC_BUILDERS:
        return None
    for src in sources:
        if src.matches(dataset_path, dataset_name):
            files = src.files_for(dataset_name)
            if data_dir is None or all((Path(data_dir) / rel).is_file() for rel in files.values()):
                return src, files
    return None
