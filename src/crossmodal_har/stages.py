"""Resumable plans of stages: what the demo and the placement study run (:mod:`crossmodal_har.demo`,
:mod:`crossmodal_har.study`).

A plan is a list of :class:`Stage`; most stages run ``crossmodal-har`` commands (a user can run each one
alone), a few run one library function (``call``: a step that is not a command, e.g. writing a labelled
view of a simulated corpus or the study's summary). Each finished stage leaves ``OUT/stages/<name>.json``
(its commands and wall seconds); a re-run skips finished stages, except those marked ``after_all``
(a report), which run again whenever an earlier stage ran. ``OUT/plan.json`` holds the plan's sizes:
:func:`check_plan` refuses to resume into a directory planned differently, so two plans never mix.
"""

from __future__ import annotations

import logging
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from crossmodal_har.errors import DataError, UserError
from crossmodal_har.io import atomic_write_json, guard_output_dir, read_json

log = logging.getLogger(__name__)

PLAN_FILE = "plan.json"


def _no_commands() -> List[List[str]]:
    return []


@dataclass
class Stage:
    """One step of a plan: ``argvs()`` gives the ``crossmodal-har`` commands to run (built when the stage
    starts, so they can read what earlier stages wrote), ``call`` a library step run after them."""

    name: str
    title: str
    argvs: Callable[[], List[List[str]]] = _no_commands
    ok_codes: Sequence[int] = (0,)
    after_all: bool = False  # depends on every earlier stage: runs again whenever one of them ran
    call: Optional[Callable[[], Any]] = None
    call_text: str = ""  # what ``call`` does, for the stage's record and the log


def done_path(out: Path, name: str) -> Path:
    return out / "stages" / f"{name}.json"


def prepare_out(out: Path) -> None:
    """Create the output directory (never an existing file); one line when it cannot be made."""
    guard_output_dir(("--out", out))
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"--out {out}: cannot create it: {exc.strerror or exc}") from None


def check_plan(out: Path, plan: Mapping[str, Any], *, restart: bool, what: str, ignore: Sequence[str] = ("workers",),
               budget_flag: str = "--budget-minutes") -> None:
    """Refuse ``out`` when it holds a plan that differs from ``plan`` (keys other than ``ignore``, which do
    not change results), then save ``plan`` there. ``what`` names the plan in the messages."""
    plan_file = out / PLAN_FILE
    if plan_file.exists() and not restart:
        saved = read_json(plan_file)
        if not isinstance(saved, dict):
            raise DataError(plan_file, f"not a {what} plan (expected a JSON object); re-run with --restart")
        if saved.get("budget_minutes") != plan.get("budget_minutes"):
            raise UserError(f"{out} holds a {what} planned for {saved.get('budget_minutes')} minutes; use the same "
                            f"{budget_flag} to resume, or --restart")
        differs = [k for k, v in plan.items() if k not in ignore and saved.get(k) != v]
        if differs:
            raise UserError(f"{out} holds a {what} of an earlier version, planned differently ({', '.join(differs)}); "
                            "re-run with --restart to redo it here, or use another --out")
    atomic_write_json(plan_file, dict(plan))


def run_stages(out: Path, stages: Sequence[Stage], runner: Callable[[List[str]], int], *, restart: bool = False,
               what: str = "demo") -> Dict[str, float]:
    """Run (or resume) ``stages`` in ``out``; returns the seconds of each stage that ran.

    ``runner`` runs one ``crossmodal-har`` argv and returns its exit status (the CLI's ``main``; the
    library does not import the CLI). A failed command stops the plan with a one-line error saying how
    to resume; exit status 130 (Ctrl-C in the command) is a KeyboardInterrupt."""
    t_start = time.perf_counter()
    ran: Dict[str, float] = {}
    for i, stage in enumerate(stages, 1):
        done = done_path(out, stage.name)
        if done.exists() and not restart and not (stage.after_all and ran):
            log.info("[%d/%d] %s: done earlier, skipped", i, len(stages), stage.title)
            continue
        log.info("[%d/%d] %s", i, len(stages), stage.title)
        t0 = time.perf_counter()
        commands = stage.argvs()
        for argv in commands:
            log.info("  $ crossmodal-har %s", " ".join(shlex.quote(a) for a in argv))
            code = runner(list(argv))
            if code == 130:  # the stage's command was interrupted (Ctrl-C)
                raise KeyboardInterrupt
            if code not in stage.ok_codes:
                raise UserError(f"{what} stage {stage.name!r} failed (exit {code}); fix the cause and re-run "
                                f"the same command to resume from this stage")
        if stage.call is not None:
            log.info("  (library) %s", stage.call_text or stage.name)
            stage.call()
        ran[stage.name] = round(time.perf_counter() - t0, 2)
        record: Dict[str, Any] = {"stage": stage.name, "seconds": ran[stage.name],
                                  "commands": [["crossmodal-har", *a] for a in commands]}
        if stage.call is not None:
            record["library"] = stage.call_text or stage.name
        atomic_write_json(done, record)
        log.info("  %s finished in %.0f s (total %.1f min)", stage.name, ran[stage.name],
                 (time.perf_counter() - t_start) / 60)
    return ran


def stage_command_lines(out: Path) -> List[str]:
    """The commands finished stages ran, in the order they finished, each with its wall seconds."""
    lines = []
    for f in sorted((out / "stages").glob("*.json"), key=lambda p: p.stat().st_mtime):
        info = read_json(f)
        if not isinstance(info, dict):
            continue
        for cmd in info.get("commands", []):
            lines.append(f"    {' '.join(shlex.quote(c) for c in cmd)}   # {info['seconds']:.0f} s")
        if info.get("library"):
            lines.append(f"    # {info['library']}   # {info['seconds']:.0f} s")
    return lines
