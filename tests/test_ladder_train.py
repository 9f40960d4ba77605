"""The ladder's training script: deterministic from the seed, the layout the series reads."""

from __future__ import annotations

import json

import pytest

from evalsuite.ladder import LadderSize, TrainSettings, checkpoint_steps, train_ladder
from evalsuite.ladder.train import lr_at

TINY = LadderSize("tiny", 16, 1, 1)
SMOKE = TrainSettings(steps=6, batch_size=4, n_checkpoints=3, threads=1)


def _train(out, seed=0):
    return train_ladder(out, settings=TrainSettings(**{**SMOKE.__dict__, "seed": seed}),
                        sizes=[TINY], data_dir=None, log=lambda m: None)


def test_checkpoint_steps_are_log_spaced_and_end_at_the_last_step():
    assert checkpoint_steps(800) == [100, 141, 200, 283, 400, 566, 800]
    assert checkpoint_steps(4) == [1, 2, 3, 4]
    assert checkpoint_steps(1) == [1]
    with pytest.raises(ValueError):
        checkpoint_steps(0)


def test_lr_warms_up_then_decays_to_the_floor():
    s = TrainSettings(steps=100)
    lrs = [lr_at(i, s) for i in range(100)]
    assert lrs[0] < lrs[4] == pytest.approx(s.lr)
    assert all(a >= b for a, b in zip(lrs[5:], lrs[6:]))
    assert lrs[-1] == pytest.approx(s.lr * s.min_lr_frac, rel=0.01)


def test_smoke_training_is_deterministic_from_the_seed(tmp_path):
    from safetensors.torch import load_file

    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _train(a), _train(b), _train(c, seed=1)
    steps = checkpoint_steps(SMOKE.steps, SMOKE.n_checkpoints)
    for step in steps:
        folder = a / "tiny" / f"step{step}"
        for name in ("config.json", "model.safetensors", "tokenizer.json", "trainer_state.json"):
            assert (folder / name).exists()
        state = json.loads((folder / "trainer_state.json").read_text())
        assert state["global_step"] == step
        assert state["num_input_tokens_seen"] == step * SMOKE.tokens_per_step
        wa = load_file(folder / "model.safetensors")
        wb = load_file(b / "tiny" / f"step{step}" / "model.safetensors")
        wc = load_file(c / "tiny" / f"step{step}" / "model.safetensors")
        assert all((wa[k] == wb[k]).all() for k in wa)
        assert any(not (wa[k] == wc[k]).all() for k in wa)
    m = json.loads((a / "ladder.json").read_text())
    assert m["checkpoint_steps"] == steps and m["sizes"][0]["label"] == "tiny"
    assert m["decontamination"]["decontaminated"] is False


def test_cli_registers_train_ladder():
    from evalsuite.cli import build_parser

    args = build_parser().parse_args(["train-ladder", "--seed", "3", "--threads", "1"])
    assert args.out == "models/ladder" and args.seed == 3 and args.threads == 1
    assert callable(args.func)


def test_cli_rejects_unknown_size(capsys):
    from evalsuite.cli import main

    assert main(["train-ladder", "--sizes", "3m", "--steps", "1"]) == 2
    assert "unknown ladder size" in capsys.readouterr().err
