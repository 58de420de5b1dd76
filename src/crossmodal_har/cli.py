"""The ``crossmodal-har`` command line: thin. Parses, validates, calls the library.

Each subcommand lives in ``crossmodal_har/commands/<name>.py`` and defines:
    NAME: str            the subcommand (e.g. "evaluate")
    HELP: str            one line for ``--help``
    add_arguments(parser) -> None
    run(args) -> int     exit status
Command modules keep heavy imports (torch, transformers, av) inside ``run`` so that ``--help`` is fast.

Errors: ``UserError`` and its kinds (``ConfigError``, ``DataError``, ``PartialRunError``) become one
line on stderr and their exit status (2, or 3 for a partial run); anything else (a ``ValueError``
from the maths is a bug) keeps its traceback.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import pkgutil
import signal
import sys
import threading
from types import ModuleType
from typing import List, Optional

import crossmodal_har.commands as commands_pkg
from crossmodal_har import __version__
from crossmodal_har.errors import UserError, single_line
from crossmodal_har.outputs import output_session

log = logging.getLogger(__name__)


# ``--help`` lists the commands in the order a project uses them; one not named here comes last
PIPELINE_ORDER = ("simulate", "gopro-extract", "ingest", "pairs-dataset", "pretrain", "zeroshot", "evaluate", "report",
                  "train-classifier", "export", "predict", "collate", "embed", "formats", "demo")


def _command_modules() -> List[ModuleType]:
    pkg = commands_pkg
    mods = [importlib.import_module(f"{pkg.__name__}.{info.name}")
            for info in pkgutil.iter_modules(pkg.__path__) if not info.name.startswith("_")]
    rank = {name: i for i, name in enumerate(PIPELINE_ORDER)}
    return sorted(mods, key=lambda m: (rank.get(m.NAME, len(rank)), m.NAME))


class _OneLineCommands(argparse.HelpFormatter):
    """Room for the longest command name (train-classifier) so that every command is one line."""

    def __init__(self, prog: str) -> None:
        super().__init__(prog, max_help_position=26)
        self._action_max_length = 24


def _global_flags(defaults: bool) -> argparse.ArgumentParser:
    """-v/-q, accepted before the command (``defaults``) and after it (no defaults there, so that a flag
    given before is not reset by the command's parser)."""
    p = argparse.ArgumentParser(add_help=False)
    keep = {} if defaults else {"default": argparse.SUPPRESS}
    p.add_argument("-v", "--verbose", action="count", help="more logging (-vv for debug)",
                   **({"default": 0} if defaults else keep))
    p.add_argument("-q", "--quiet", action="store_true", help="only warnings and errors",
                   **({"default": False} if defaults else keep))
    return p


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="crossmodal-har", parents=[_global_flags(True)],
        formatter_class=_OneLineCommands,
        description="Out-of-distribution wearable HAR via IMU-video cross-modal pretraining "
        "(Cheshmi et al., MLHC 2025). Commands in pipeline order; 'crossmodal-har COMMAND --help' for each.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    after = _global_flags(False)
    for mod in _command_modules():
        p = sub.add_parser(mod.NAME, help=mod.HELP, description=getattr(mod, "DESCRIPTION", mod.HELP),
                           parents=[after])
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def setup_logging(verbose: int = 0, quiet: bool = False) -> None:
    """One logging setup for the program; only rank 0 logs at INFO under DDP."""
    rank = int(os.environ.get("RANK", "0") or 0)
    level = logging.WARNING if (quiet or rank != 0) else (logging.DEBUG if verbose > 1 else logging.INFO)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    if verbose < 2:
        for noisy in ("matplotlib", "PIL", "urllib3", "httpx", "filelock"):
            logging.getLogger(noisy).setLevel(logging.WARNING)


class _Terminated(KeyboardInterrupt):
    """SIGTERM, raised where the program is, so that it unwinds exactly like Ctrl-C: ``finally``
    blocks remove temporaries, ``--devices N`` workers are stopped; a pretraining run resumes from its
    last periodic checkpoint."""


def _raise_terminated(signum, frame):  # noqa: ARG001 - signal handler signature
    raise _Terminated()


def _stop_on_sigterm():
    """Turn SIGTERM (``kill``, job schedulers, container stops) into :class:`_Terminated` while a
    command runs; returns the previous handler (None where signals cannot be set: not the main thread)."""
    if threading.current_thread() is not threading.main_thread():
        return None
    return signal.signal(signal.SIGTERM, _raise_terminated)


MAX_THREADS = 1024  # beyond it torch and OpenMP overflow or stall


def apply_threads(args: argparse.Namespace) -> None:
    """``--threads`` (commands that compute): None -> $OMP_NUM_THREADS when set, else 1. Set in the environment
    before the command imports torch (and inherited by its worker processes), and in torch when it is already
    imported (``main`` called in-process)."""
    if not hasattr(args, "threads"):
        return
    if args.threads is None:
        env = os.environ.get("OMP_NUM_THREADS", "")
        args.threads = int(env) if env.isdigit() and int(env) >= 1 else 1
    if not 1 <= args.threads <= MAX_THREADS:
        raise UserError(f"--threads must be between 1 and {MAX_THREADS}, got {args.threads} (see crossmodal-har "
                        f"{args.command} --help)")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = str(args.threads)
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(args.threads)


def main(argv: Optional[List[str]] = None) -> int:
    """Entry point; callable from tests as ``main([...])``. Returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    setup_logging(args.verbose, args.quiet)
    for stream in (sys.stdout, sys.stderr):  # a non-UTF-8 file name is shown, never a traceback
        if hasattr(stream, "reconfigure"):
            stream.reconfigure(errors="replace" if stream is sys.stdout else "backslashreplace")
    # No network unless the user explicitly asks for a hub id with --allow-download (commands that
    # load pretrained weights have it). Set before any command imports transformers, which reads it.
    if getattr(args, "allow_download", False):
        os.environ["HF_HUB_OFFLINE"] = "0"
    else:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
    previous = _stop_on_sigterm()
    try:
        apply_threads(args)
        with output_session():  # outputs claimed before the work, committed together at its end
            return int(args._run(args) or 0)
    except UserError as exc:
        print(f"error: {single_line(str(exc))}", file=sys.stderr)
        return int(getattr(exc, "exit_code", 2))
    except _Terminated:
        print("terminated", file=sys.stderr)
        return 143
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
