"""The CLI explains itself and keeps quiet: every option of every subcommand has help text, and
a run prints none of the libraries' known-harmless warnings or bars (``--verbose`` keeps them)."""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys

from evalsuite.cli import build_parser


def _options(parser, path):
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from _options(sub, path + [name])
        elif not isinstance(action, argparse._HelpAction):
            yield " ".join(path), "/".join(action.option_strings) or action.dest, action.help


def test_every_option_has_help_text():
    missing = [f"{cmd} {opt}" for cmd, opt, text in _options(build_parser(), ["evalsuite"])
               if not text or not text.strip()]
    assert not missing, "options without help text: " + ", ".join(missing)


def test_a_run_prints_no_library_warning(tmp_path):
    from conftest import shared_data_path

    from evalsuite.testing import build_tiny_model, write_trainer_state

    model = build_tiny_model(tmp_path / "tiny-1k", hidden_size=16, num_layers=1)
    write_trainer_state(model, step=10, tokens_seen=10_240)  # else our own tokens warning shows
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
    out = subprocess.run([sys.executable, "-m", "evalsuite", "run", str(model), "--tasks", "copa",
                          "--limit", "2", "--data-dir", str(shared_data_path("benchmarks")),
                          "--results", str(tmp_path / "res")],
                         capture_output=True, text=True, env=env, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    noise = [line for line in (out.stdout + out.stderr).splitlines()
             if re.search(r"warn|deprecat|^W\d{4} |it/s\]", line, re.I)]
    assert not noise, "library noise in a plain run:\n" + "\n".join(noise[:10])


def test_a_fit_that_fails_exits_non_zero_and_says_why(capsys):
    """Every fit failing (too few sizes) is an error, not exit 0 with a table of errors."""
    from conftest import REPO_ROOT, cli_in

    code = cli_in(REPO_ROOT, "fit", "--series", "ladder", "--tasks", "arithmetic_2da",
                  "--max-params", "60000", "--n-boot", "0", "--form", "power",
                  "--results", str(REPO_ROOT / "results"))
    err = capsys.readouterr().err
    assert code == 1
    assert "error: no fit for arithmetic_2da" in err and "--form linear" in err
