"""Command-line interface: the only place that reads argv, environment variables and user files.

Each subcommand lives in its own module of this package and defines ``register(subparsers)``,
which adds its parser and sets ``func`` (called with the parsed args, returns an exit code).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import logging
import os
import pkgutil
import signal
import sys
import threading

from ._common import CliError

__all__ = ["main", "build_parser"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(
        prog="evalsuite",
        description="Evaluate language-model checkpoint series, fit scaling laws, build leaderboards.")
    parser.add_argument("--version", action="version", version=f"evalsuite {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"{__name__}.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(sub)
    return parser


#: Libraries whose known-harmless chatter a run does not show without --verbose: torchao's
#: missing optional kernels and "no triton", torch's pytree deprecation notes, transformers'
#: FutureWarnings, lm-eval's and datasets' info lines and per-document progress bars.
QUIET_LIBRARIES = ("lm_eval", "datasets", "transformers", "accelerate", "torchao", "torch",
                   "huggingface_hub")


def quiet_libraries() -> None:
    """Silence the libraries' per-step bars, info lines and known-harmless warnings (errors
    still show). Our own progress line (``iter_progress``) is unaffected."""
    import warnings

    for var in ("HF_DATASETS_DISABLE_PROGRESS_BARS", "HF_HUB_DISABLE_PROGRESS_BARS", "TQDM_DISABLE"):
        os.environ.setdefault(var, "1")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    for name in QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
    # torch resets its own loggers' levels when it is imported; a filter on the emitting logger
    # stays (its pytree notes come from torchao's import inside transformers)
    logging.getLogger("torch.utils._pytree").addFilter(lambda record: record.levelno >= logging.ERROR)
    pattern = r"(%s)(\.|$)" % "|".join(QUIET_LIBRARIES)
    for category in (FutureWarning, DeprecationWarning, UserWarning):
        warnings.filterwarnings("ignore", category=category, module=pattern)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        # Our own progress line is enough: silence the libraries' per-step bars and chatter.
        quiet_libraries()
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        with _sigterm_as_interrupt():
            return int(args.func(args) or 0)
    except CliError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as e:
        print("interrupted: finished cells are saved; rerun the same command to resume.",
              file=sys.stderr)
        return 128 + (signal.SIGTERM if isinstance(e, Terminated) else signal.SIGINT)


class Terminated(KeyboardInterrupt):
    """Raised by the SIGTERM handler that ``main`` installs: a KeyboardInterrupt, so everything
    that cleans up after Ctrl-C (partial files, worker pools) runs the same way for a kill."""


def _raise_terminated(signum, frame):
    raise Terminated(f"signal {signum}")


@contextlib.contextmanager
def _sigterm_as_interrupt():
    """For the length of the command, SIGTERM (``kill``, a job scheduler's stop) unwinds like
    Ctrl-C instead of ending the process on the spot; the previous handler comes back after.
    Only the main thread may set handlers, so elsewhere (main() called from a thread) nothing
    changes."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _raise_terminated)
    try:
        yield
    finally:
        # None: a handler set outside Python; the default is the nearest we can restore
        signal.signal(signal.SIGTERM, signal.SIG_DFL if previous is None else previous)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
