"""Series discovery: layouts, parameter counts, tokens, FLOPs, duplicates, bad checkpoints."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from evalsuite.cli import main
from evalsuite.series import SeriesError, discover_series
from evalsuite.testing import build_tiny_model, build_tiny_series, write_trainer_state


@pytest.fixture(scope="module")
def pythia_like(tmp_path_factory):
    root = tmp_path_factory.mktemp("series") / "tiny"
    build_tiny_series(root, sizes=(("14k", 16, 1), ("50k", 32, 2)), steps=(0, 100, 200),
                      tokens_per_step=2048, duplicate=("14k", 100, 200))
    return root


def _param_counts(folder: Path) -> tuple[int, int]:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(folder)
    total = sum(p.numel() for p in model.parameters())
    emb = model.get_input_embeddings().weight.numel() + model.get_output_embeddings().weight.numel()
    return total, total - emb


def test_pythia_style_folder_is_listed(pythia_like):
    scan = discover_series(pythia_like)
    assert not scan.problems
    ids = [c.id for c in scan.checkpoints]
    assert ids == ["tiny-14k@0:fp32", "tiny-14k@100:fp32", "tiny-14k@200:fp32",
                   "tiny-50k@0:fp32", "tiny-50k@100:fp32", "tiny-50k@200:fp32"]
    for c in scan.checkpoints:
        total, nonemb = _param_counts(Path(c.source))
        assert (c.n_params, c.n_params_nonembedding) == (total, nonemb)
        assert c.tokens_seen == c.step * 2048 and c.tokens_source == "trainer_state"
        assert c.compute_flops == 6.0 * c.n_params * c.tokens_seen
        assert c.dtype == "float32"
    assert list(scan.duplicates.values()) == [["tiny-14k@100:fp32", "tiny-14k@200:fp32"]]


def test_series_cli_table_and_json(pythia_like, capsys):
    assert main(["series", str(pythia_like), "--json"]) == 0
    recs = json.loads(capsys.readouterr().out)
    assert len(recs) == 6
    dup = {r["id"]: r["duplicate_of"] for r in recs}
    assert dup["tiny-14k@100:fp32"] == "tiny-14k@200:fp32"
    assert main(["series", str(pythia_like)]) == 0
    out, err = capsys.readouterr()
    assert "tiny-50k@200:fp32" in out and "duplicate weights" in err


def test_size_step_layout_and_tokens_per_step(tmp_path):
    root = tmp_path / "ladder"
    for size, hidden in (("a", 16), ("b", 32)):
        for step in (10, 20):
            build_tiny_model(root / size / str(step), hidden_size=hidden, seed=step)
    scan = discover_series(root)
    assert {(c.series, c.size, c.step) for c in scan.checkpoints} == {
        ("ladder", s, t) for s in "ab" for t in (10, 20)}
    assert all(c.tokens_seen is None and c.tokens_source == "unknown" for c in scan.checkpoints)
    assert all(c.compute_flops is None for c in scan.checkpoints)
    scan = discover_series(root, tokens_per_step=100)
    assert {c.tokens_seen for c in scan.checkpoints} == {1000, 2000}
    assert {c.tokens_source for c in scan.checkpoints} == {"tokens_per_step"}


def test_hf_trainer_checkpoints_and_single_folder(tmp_path):
    run = tmp_path / "run"
    for step in (500, 1000):
        folder = build_tiny_model(run / f"checkpoint-{step}", seed=step)
        write_trainer_state(folder, step=step, tokens_seen=step * 4096)
    scan = discover_series(run)
    assert [(c.step, c.tokens_seen) for c in scan.checkpoints] == [(500, 500 * 4096), (1000, 1000 * 4096)]
    single = discover_series(run / "checkpoint-500")
    assert len(single.checkpoints) == 1 and single.checkpoints[0].step == 500


def test_manifest_yaml_and_json(tmp_path):
    build_tiny_model(tmp_path / "m" / "a", seed=1)
    build_tiny_model(tmp_path / "m" / "b", seed=2)
    (tmp_path / "series.yaml").write_text(
        "series: mine\ncheckpoints:\n"
        "  - {path: m/a, size: 1k, step: 10, tokens_seen: 1.5e6}\n"
        "  - {path: m/b, size: 1k, step: 20}\n"
        "  - {hub: EleutherAI/pythia-70m, revision: step1000, size: 70m, step: 1000, tokens_seen: 2097152000}\n")
    scan = discover_series(tmp_path / "series.yaml")
    assert not scan.problems
    a, b, hub = scan.checkpoints
    assert (a.id, a.tokens_seen, a.tokens_source) == ("mine-1k@10:fp32", 1_500_000, "manifest")
    assert b.tokens_seen is None and b.tokens_source == "unknown"
    assert hub.source == "hub:EleutherAI/pythia-70m@step1000" and hub.revision == "step1000"
    assert hub.n_params is None  # not in the local cache: unknown, never guessed
    (tmp_path / "s.json").write_text(json.dumps({"series": "j", "tokens_per_step": 10,
                                                 "checkpoints": [{"path": "m/a", "size": "x", "step": 3}]}))
    (c,) = discover_series(tmp_path / "s.json").checkpoints
    assert (c.tokens_seen, c.tokens_source) == (30, "tokens_per_step")


def test_bad_inputs_have_clear_errors(tmp_path, pythia_like, capsys):
    with pytest.raises(SeriesError, match="does not exist"):
        discover_series(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SeriesError, match="no checkpoints found"):
        discover_series(tmp_path / "empty")
    (tmp_path / "bad.yaml").write_text("checkpoints: [unclosed")
    with pytest.raises(SeriesError, match="not valid YAML"):
        discover_series(tmp_path / "bad.yaml")
    assert main(["series", str(tmp_path / "nope")]) == 2
    assert "does not exist" in capsys.readouterr().err

    root = tmp_path / "broken"
    shutil.copytree(pythia_like, root)
    st = root / "tiny-50k" / "step100" / "model.safetensors"
    st.write_bytes(st.read_bytes()[: st.stat().st_size // 2])  # truncated
    hdr = root / "tiny-50k" / "step200" / "model.safetensors"
    data = bytearray(hdr.read_bytes())
    data[8:20] = b"\xff" * 12  # corrupt header
    hdr.write_bytes(bytes(data))
    (root / "tiny-14k" / "step0" / "tokenizer.json").unlink()
    scan = discover_series(root)
    problems = dict(scan.problems)
    assert len(scan.checkpoints) == 3
    assert "truncated" in problems[str(root / "tiny-50k" / "step100")]
    assert "corrupt safetensors header" in problems[str(root / "tiny-50k" / "step200")]
    assert "no tokenizer files" in problems[str(root / "tiny-14k" / "step0")]
