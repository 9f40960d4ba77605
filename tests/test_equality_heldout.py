"""Held-out equality: ``evalsuite run`` (both engines, batch sizes 1, 7 and auto) against
``lm_eval.simple_evaluate`` with lm-eval's own ``HFLM``, run directly.

For every checkpoint x task the metrics (every metric x filter lm-eval reports), their stderrs
(same ``bootstrap_iters``), the item counts, and per document the log-likelihood and greedy
flag of every request, the filtered response, the target and the per-item metric values must
agree to 1e-4 (relatively for quantities far above 1, such as a random model's perplexity).

What is covered, one suite per model and setting (see ``SUITES``):

- ``series``: a two-checkpoint series (the second checkpoint reuses the first's model object
  in the evalsuite engine) on real items: ARC-Easy and COPA (multiple choice, 0 shots),
  LAMBADA (loglikelihood, perplexity's bootstrap stderr), GSM8K as lm-eval defines it
  (generate_until, ``strict-match`` and ``flexible-extract`` regex filters), a generation task
  whose stop sequences fire often, with four filters and 2 shots drawn from the evaluated
  split, and two synthetic multiple-choice tasks whose choices share a long common prefix
  (acc, acc_norm, mcc and f1 with lm-eval's bootstrap, brier_score).
- ``fewshot``: ARC-Easy and PIQA at ``--num-fewshot 3`` with a non-default ``--seed``.
- ``short``: a model with a 64-token context: loglikelihood_rolling on LAMBADA passages of
  several windows, the long-prefix choices left-truncated past the context, and generation
  contexts truncated to ``max_length - max_gen_toks``.
- ``bpe``: a trained byte-level BPE tokenizer with ``target_delimiter: ""``, the context cut
  inside a word so that BPE merges across the context/continuation boundary (loglikelihood and
  multiple choice), plus LAMBADA and rolling windows in BPE tokens.

Real items are read in place from ../shared/data/benchmarks (the tests skip when it is absent);
synthetic items are written to a temporary folder.
"""

from __future__ import annotations

import json
import random
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import shared_data_path
from equality_helpers import (Scored, compare, compare_item_metrics, read_evalsuite, reference,
                              run_cli)

pytestmark = pytest.mark.usefixtures("one_torch_thread")

LIMIT = 10
REFERENCE_BATCH_SIZE = 1  # lm-eval's HFLM unpadded: the plainest reference
ENGINES = ("evalsuite", "hf")
BATCH_SIZES = ("1", "7", "auto")


@dataclass(frozen=True)
class Suite:
    """One ``evalsuite run`` call per engine and batch size: a model (or series) and tasks."""
    name: str
    model: str  # key of the ``models`` fixture
    tasks: tuple[str, ...]
    shots: dict[str, int] = field(default_factory=dict)  # effective shots, default 0
    num_fewshot: int | None = None  # passed as --num-fewshot
    seed: int | None = None  # passed as --seed (None: the default, 1234)
    # 2500: two chunks of 1000 draws (chunk i seeds Random(i)) and a remainder lm-eval drops.
    # Suites with f1/mcc use 100: lm-eval runs sklearn once per draw (~10 ms each here).
    bootstrap_iters: int = 2500
    limit: int = LIMIT


SUITES = {s.name: s for s in (
    Suite("series", "series",
          ("arc_easy", "copa", "lambada_openai", "eq_gen_stops", "eq_long_prefix"),
          shots={"eq_gen_stops": 2}),
    # up to 256 generated tokens per item: one checkpoint, fewer items
    Suite("gsm8k", "last", ("eq_gsm8k",), limit=6),
    Suite("fewshot", "series", ("arc_easy", "piqa"), shots={"arc_easy": 3, "piqa": 3},
          num_fewshot=3, seed=7),
    Suite("short", "short", ("lambada_rolling", "eq_long_prefix", "eq_prefix_mcc",
                             "eq_pair_prefix", "eq_gen_stops"), shots={"eq_gen_stops": 2},
          bootstrap_iters=100),
    Suite("bpe", "bpe", ("eq_lambada_nodelim", "eq_mc_nodelim", "lambada_openai",
                         "lambada_rolling")),
)}

CASES = [(s.name, t) for s in SUITES.values() for t in s.tasks]


# ---- models and task files ------------------------------------------------------------------

@pytest.fixture(scope="module")
def data_dir():
    return shared_data_path("benchmarks")


def _lambada_texts(data_dir: Path, lines: range) -> list[str]:
    path = data_dir / "lambada_openai" / "lambada_openai_test.llmfoundry.jsonl"
    with open(path, encoding="utf-8") as fh:
        rows = [json.loads(line) for i, line in enumerate(fh) if i in lines]
    return [r["context"] + " " + r["continuation"] for r in rows]


@pytest.fixture(scope="module")
def models(data_dir, tmp_path_factory):
    """``series``: two byte-level checkpoints of one size, 1024 positions (the second a perturbed
    copy of the first; HFLM's auto batch size probes 64 rows of the full context, so no 4096);
    ``last``: the second of them alone; ``short``: a 64-position byte-level model; ``bpe``: a
    64-position model with a byte-level BPE vocabulary trained on LAMBADA passages the tests do
    not score."""
    from evalsuite.testing import (build_bpe_tokenizer, build_tiny_model, perturb_model,
                                   write_trainer_state)

    root = tmp_path_factory.mktemp("eq-models")
    series = root / "series"
    first = build_tiny_model(series / "eq-s" / "step0", hidden_size=32, num_layers=2,
                             num_heads=2, seed=5, max_positions=1024)
    last = perturb_model(first, series / "eq-s" / "step100", scale=0.5, seed=6)
    for step, folder in ((0, first), (100, last)):
        write_trainer_state(folder, step=step, tokens_seen=step * 1024)
    short = build_tiny_model(root / "short", hidden_size=32, num_layers=2, num_heads=2, seed=7,
                             max_positions=64)
    tokenizer = build_bpe_tokenizer(_lambada_texts(data_dir, range(2000, 3500)), vocab_size=1024)
    bpe = build_tiny_model(root / "bpe", hidden_size=32, num_layers=2, num_heads=2, seed=9,
                           tokenizer=tokenizer, max_positions=64)
    return {"series": (series, [first, last]), "last": (last, [last]),
            "short": (short, [short]), "bpe": (bpe, [bpe])}


PREFIX = "after a long talk the panel agreed the answer was"  # 49 bytes, shared by every choice
ENDINGS4 = (("A", "B", "C", "D"),                # differ in the last token only
            ("red", "blue", "green", "violet"),  # different lengths
            ("A", "A or B", "B", "A or B or C"),  # one choice a prefix of another
            ("yes", "no", "yes", "maybe"))       # a repeated choice
ENDINGS2 = (("A", "B"), ("true", "false"), ("up", "up or down"), ("no", "not"))


def _long_prefix_items(endings, n: int, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    items = []
    for i in range(n):
        ends = endings[i % len(endings)]
        items.append({"query": f"Puzzle {i}: which option is right? Then,",
                      "choices": [f"{PREFIX} {e}" for e in ends],
                      "gold": rnd.randrange(len(ends))})
    return items


def _nodelim_items(data_dir: Path, n: int) -> list[dict]:
    """Multiple choice with target_delimiter "": the context stops two characters into the
    last word; the choices are the rest of that word and of three other passages' last words."""
    texts = _lambada_texts(data_dir, range(0, 400))
    words = [t.rsplit(" ", 1) for t in texts]
    usable = [(head, w) for head, w in words if len(w) >= 5 and w.isalpha()]
    rnd = random.Random(3)
    items = []
    for i, (head, w) in enumerate(usable[:n]):
        others = [o for _, o in usable if o[2:] != w[2:]]
        choices = [w[2:]] + [o[2:] for o in rnd.sample(others, 3)]
        rnd.shuffle(choices)
        items.append({"query": f"{head} {w[:2]}", "choices": choices,
                      "gold": choices.index(w[2:])})
    return items


def _jsonl(path: Path, items: list[dict]) -> str:
    path.write_text("".join(json.dumps(x) + "\n" for x in items), encoding="utf-8")
    return str(path)


def _yaml(path: Path, data: dict) -> None:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


def _mc_config(task: str, metrics: list[str], **extra) -> dict:
    return {"task": task, "output_type": "multiple_choice", "test_split": "test",
            "doc_to_text": "{{query}}", "doc_to_choice": "choices", "doc_to_target": "gold",
            "metric_list": [{"metric": m} for m in metrics], "metadata": {"version": 1.0},
            **extra}


@pytest.fixture(scope="module")
def include(data_dir, tmp_path_factory):
    """User task files (both spec shapes) and the synthetic items they read."""
    folder = tmp_path_factory.mktemp("eq-tasks")
    items = tmp_path_factory.mktemp("eq-items")
    n_items = LIMIT + 6
    # lm-eval's own gsm8k definition (prompt, stops, both regex filters) on the local file,
    # which already has the HF schema (question, answer)
    _yaml(folder / "eq_gsm8k.yaml", {
        "lm_eval_task": "gsm8k", "primary_metric": "exact_match", "chance": 0.0,
        "data": {"adapter": "jsonl", "files": {"test": "gsm8k/test.jsonl"}}})
    # generation whose stop sequences fire within a few tokens of a random byte model; targets a
    # random model sometimes hits after the vowel filter; 2 shots drawn from the evaluated split
    _yaml(folder / "eq_gen_stops.yaml", {
        "lm_eval_config": {
            "task": "eq_gen_stops", "output_type": "generate_until", "test_split": "test",
            "fewshot_split": "test",
            "doc_to_text": "Question: {{question}}\nAnswer:",
            "doc_to_target": "{{'o' if question|length % 2 else 'a'}}",
            "generation_kwargs": {"until": ["\n", ".", "e", "Question:"], "do_sample": False,
                                  "temperature": 0.0, "max_gen_toks": 24},
            "metric_list": [{"metric": "exact_match", "aggregation": "mean",
                             "higher_is_better": True, "ignore_case": True,
                             "ignore_punctuation": True}],
            "filter_list": [
                {"name": "raw", "filter": [{"function": "take_first"}]},
                {"name": "first-vowel", "filter": [
                    {"function": "regex", "regex_pattern": "([aiou])", "fallback": "none"},
                    {"function": "take_first"}]},
                {"name": "last-number", "filter": [
                    {"function": "regex", "regex_pattern": "(-?[0-9]+)", "group_select": -1},
                    {"function": "take_first"}]},
                {"name": "clean", "filter": [
                    {"function": "lowercase"}, {"function": "remove_whitespace"},
                    {"function": "take_first"}]}],
            "metadata": {"version": 1.0}},
        "primary_metric": "exact_match/first-vowel", "chance": 0.0, "num_fewshot": 2,
        "data": {"adapter": "jsonl", "files": {"test": "gsm8k/test.jsonl"}}})
    def long_prefix_task(name: str, metrics: list[str], endings, seed: int) -> None:
        """Multiple choice whose choices share a long common prefix (synthetic items)."""
        _yaml(folder / f"{name}.yaml", {
            "lm_eval_config": _mc_config(name, metrics), "primary_metric": "acc",
            "chance": 1 / len(endings[0]),
            "data": {"adapter": "jsonl", "files": {"test": _jsonl(
                items / f"{name}.jsonl", _long_prefix_items(endings, n_items, seed))}}})

    long_prefix_task("eq_long_prefix", ["acc", "acc_norm", "brier_score"], ENDINGS4, 1)
    # multi-class mcc: evalsuite bootstraps it with lm-eval's own function per draw
    long_prefix_task("eq_prefix_mcc", ["acc", "mcc"], ENDINGS4, 4)
    long_prefix_task("eq_pair_prefix", ["acc", "f1", "mcc"], ENDINGS2, 2)
    # empty target delimiter, context cut inside a word: BPE merges across the boundary
    _yaml(folder / "eq_lambada_nodelim.yaml", {
        "lm_eval_config": {
            "task": "eq_lambada_nodelim", "output_type": "loglikelihood", "test_split": "test",
            "doc_to_text": "{{ text.rsplit(' ', 1)[0][:-2] }}",
            "doc_to_target": "{{ text.rsplit(' ', 1)[0][-2:] ~ ' ' ~ text.rsplit(' ', 1)[1] }}",
            "target_delimiter": "",
            "metric_list": [{"metric": "perplexity", "aggregation": "perplexity",
                             "higher_is_better": False},
                            {"metric": "acc", "aggregation": "mean", "higher_is_better": True}],
            "metadata": {"version": 1.0}},
        "primary_metric": "acc", "chance": 0.0,
        "data": {"adapter": "lambada_mosaic",
                 "files": {"test": "lambada_openai/lambada_openai_test.llmfoundry.jsonl"}}})
    _yaml(folder / "eq_mc_nodelim.yaml", {
        "lm_eval_config": _mc_config("eq_mc_nodelim", ["acc", "acc_norm"], target_delimiter=""),
        "primary_metric": "acc", "chance": 0.25,
        "data": {"adapter": "jsonl", "files": {"test": _jsonl(
            items / "mc_nodelim.jsonl", _nodelim_items(data_dir, n_items))}}})
    return folder


# ---- runs, cached per module --------------------------------------------------------------

class Runs:
    """evalsuite runs per (suite, engine, batch size) and lm-eval references per suite, each
    computed on first use."""

    def __init__(self, models, include, data_dir, tmp: Path):
        self.models, self.include, self.data_dir, self.tmp = models, include, data_dir, tmp
        self._ours: dict[tuple, tuple[int, dict]] = {}
        self._refs: dict[str, dict] = {}
        self._registry = None

    def ours(self, suite: Suite, engine: str, batch_size: str):
        key = (suite.name, engine, batch_size)
        if key not in self._ours:
            target, _ = self.models[suite.model]
            results = self.tmp / f"{suite.name}-{engine}-{batch_size}"
            code = run_cli(target, list(suite.tasks), results, data_dir=self.data_dir,
                           engine=engine, batch_size=batch_size, limit=suite.limit,
                           bootstrap_iters=suite.bootstrap_iters, include=self.include,
                           num_fewshot=suite.num_fewshot, seed=suite.seed)
            self._ours[key] = (code, read_evalsuite(results) if results.exists() else {})
        return self._ours[key]

    def registry(self):
        from evalsuite.tasks.registry import TaskRegistry

        if self._registry is None:
            self._registry = TaskRegistry(data_dir=self.data_dir, include_paths=[self.include])
        return self._registry

    def reference(self, suite: Suite) -> dict[tuple[str, str], Scored]:
        if suite.name not in self._refs:
            out = {}
            for ckpt in self.models[suite.model][1]:
                tasks = {t: self.registry().build(t) for t in suite.tasks}
                got = reference(ckpt, tasks, batch_size=REFERENCE_BATCH_SIZE, limit=suite.limit,
                                num_fewshot={t: suite.shots.get(t, 0) for t in suite.tasks},
                                bootstrap_iters=suite.bootstrap_iters,
                                seed=1234 if suite.seed is None else suite.seed)
                for t, scored in got.items():
                    out[(str(Path(ckpt).resolve()), t)] = scored
            self._refs[suite.name] = out
        return self._refs[suite.name]


@pytest.fixture(scope="module")
def runs(models, include, data_dir, tmp_path_factory):
    return Runs(models, include, data_dir, tmp_path_factory.mktemp("eq-results"))


# ---- the tests ------------------------------------------------------------------------------

@pytest.mark.parametrize("batch_size", BATCH_SIZES)
@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("suite,task", CASES, ids=[f"{s}-{t}" for s, t in CASES])
def test_same_results_as_lm_eval(runs, suite, task, engine, batch_size):
    spec = SUITES[suite]
    code, ours = runs.ours(spec, engine, batch_size)
    ref = runs.reference(spec)
    problems = []
    if code != 0:
        problems.append(f"evalsuite run exited {code}")
    for ckpt in runs.models[spec.model][1]:
        key = (str(Path(ckpt).resolve()), task)
        if key not in ours:
            problems.append(f"{Path(ckpt).name}: no rows for {task}")
            continue
        problems += [f"{Path(ckpt).name}: {p}" for p in compare(ours[key], ref[key])]
    assert not problems, f"{task} ({engine}, batch {batch_size}) vs lm-eval:\n  " + \
        "\n  ".join(problems)


@pytest.mark.parametrize("suite,task", CASES, ids=[f"{s}-{t}" for s, t in CASES])
def test_per_item_metrics_in_samples(runs, suite, task):
    """The per-sample Parquet holds every per-item metric lm-eval logged (numbers, and both
    halves of (value, weight) and (gold, pred) pairs), with lm-eval's values."""
    spec = SUITES[suite]
    _, ours = runs.ours(spec, "evalsuite", "7")
    ref = runs.reference(spec)
    problems = []
    for ckpt in runs.models[spec.model][1]:
        key = (str(Path(ckpt).resolve()), task)
        if key in ours:
            problems += [f"{Path(ckpt).name}: {p}" for p in compare_item_metrics(ours[key], ref[key])]
    assert not problems, f"{task} per-item metrics vs lm-eval:\n  " + "\n  ".join(problems)
