"""The paper's whole experiment at small scale, as resumable stages.

Stages (each one a ``crossmodal-har`` command a user can run alone; the demo prints them):

1. ``simulate``  paired IMU+video for several simulated people (egomotion simulator);
2. ``ingest``    into a window store (frames mode: the video towers train end to end or stay frozen);
3. ``pretrain``  siglip (the paper's method), clip, imu2clip and imu-mae with tiny configs;
4. ``zeroshot``  retrieval and nearest-video-class accuracy on held-out simulated subjects;
5. ``evaluate``  few-shot, subject-disjoint evaluation on real UCI HAPT (a different device, body
   position and population) for every pretrained encoder, a random encoder and supervised training;
6. ``report``    one report with both tables, plots and ``results.json``.

Each finished stage leaves ``OUT/stages/<name>.json``; a re-run skips finished stages, and the
stages themselves resume (ingest and pretrain continue where a kill left them).
"""

from __future__ import annotations

import json
import logging
import os
import shlex
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Dict, List, Optional, Sequence, Union

from crossmodal_har.errors import UserError
from crossmodal_har.io import atomic_write_json

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

PRETRAIN_METHODS = ("siglip", "clip", "imu2clip", "imu-mae")
ZEROSHOT_METHODS = ("siglip", "clip", "imu2clip")


@dataclass
class DemoPlan:
    """Sizes of every stage, derived from the time budget (see :func:`plan_for_budget`)."""

    budget_minutes: float
    subjects: int
    sim_minutes: float
    frame_size: int
    pretrain_seconds: float
    shots: List[int]
    seeds: int
    eval_epochs: int
    eval_model: str = "patchtst-tiny"  # random/supervised rows: the same architecture as siglip's IMU tower
    # Per-window z-scoring (the paper's) removes the gravity direction that separates sitting,
    # standing and lying: on HAPT, supervised patchtst-tiny at 100 shots scored 0.31 balanced
    # accuracy with zscore vs 0.79 without. The demo keeps physical units for every method alike.
    normalization: str = "none"
    workers: int = 2
    seed: int = 0
    extra: Dict[str, str] = field(default_factory=dict)


def plan_for_budget(minutes: float = 15.0, workers: Optional[int] = None) -> DemoPlan:
    """Scale data and steps to a wall-clock budget on a 2-core CPU.

    The default (15 min) spends roughly: simulate + ingest 2 min (40 simulated minutes: with less,
    retrieval stays at chance), pretraining 4 x 90 s, zero-shot a few seconds, HAPT few-shot
    evaluation (5 encoders x 2 protocols x 4 shots x 5 seeds, plus supervised) about 5 min.
    Shots and seeds are the paper's Table 3 setting and do not scale.
    """
    if minutes <= 0:
        raise UserError("--budget-minutes must be > 0")
    scale = minutes / 15.0
    return DemoPlan(
        budget_minutes=minutes,
        subjects=max(4, min(16, int(round(8 * scale ** 0.5)))),
        sim_minutes=max(4.0, round(40.0 * scale, 1)),
        frame_size=32,
        pretrain_seconds=max(10.0, round(90.0 * scale)),
        shots=[10, 20, 50, 100],
        seeds=5,
        eval_epochs=max(3, min(30, int(round(12 * scale)))),
        workers=workers or min(2, os.cpu_count() or 1),
    )


@dataclass
class Stage:
    name: str
    title: str
    argvs: Callable[[], List[List[str]]]  # commands to run (crossmodal-har argv lists)
    ok_codes: Sequence[int] = (0,)


def _done_path(out: Path, name: str) -> Path:
    return out / "stages" / f"{name}.json"


def build_stages(out: Path, plan: DemoPlan) -> List[Stage]:
    sim, store = out / "data" / "sim", out / "data" / "store"
    runs, zs, ev = out / "runs", out / "zeroshot", out / "eval"
    stages: List[Stage] = [
        Stage("simulate", "simulate paired IMU+video", lambda: [[
            "simulate", "--out", str(sim), "--subjects", str(plan.subjects), "--minutes", str(plan.sim_minutes),
            "--seed", str(plan.seed), "--workers", str(plan.workers)]]),
        Stage("ingest", "ingest into a window store", lambda: [[
            "ingest", "--layout", "paired", "--src", str(sim), "--out", str(store), "--video-mode", "frames",
            "--frames", "10", "--size", str(plan.frame_size), "--workers", str(plan.workers),
            "--set", f"normalization={plan.normalization}"]]),
    ]
    for m in PRETRAIN_METHODS:
        stages.append(Stage(f"pretrain-{m}", f"pretrain {m} (tiny)", lambda m=m: [[
            "pretrain", "--config", f"{m}-tiny", "--store", str(store), "--out", str(runs / m),
            "--time-budget", str(int(plan.pretrain_seconds)), "--no-progress",
            # a run killed mid-way continues from its last checkpoint
            *(["--resume"] if (runs / m / "checkpoint.pt").exists() else [])]]))
    for m in ZEROSHOT_METHODS:
        stages.append(Stage(f"zeroshot-{m}", f"zero-shot {m} on held-out simulated subjects", lambda m=m: [[
            "zeroshot", "--run", str(runs / m), "--store", str(store), "--out", str(zs / m)]]))
    shots = ",".join(str(s) for s in plan.shots)
    common = ["--dataset", "hapt", "--shots", shots, "--seeds", str(plan.seeds), "--epochs", str(plan.eval_epochs),
              "--no-progress"]
    # pretrained encoders carry the store's preprocessing; random ones are told the same
    random_pre = ["--set", f"preprocess.normalization={plan.normalization}"]
    for m in PRETRAIN_METHODS:
        stages.append(Stage(f"evaluate-{m}", f"few-shot HAPT evaluation of {m}", lambda m=m: [[
            "evaluate", "--encoder", str(runs / m), "--name", m, "--protocol", "linear-probe,finetune",
            "--out", str(ev / m)] + common]))
    stages.append(Stage("evaluate-random", "few-shot HAPT evaluation of a random encoder", lambda: [[
        "evaluate", "--encoder", "random", "--model", plan.eval_model, "--name", "random",
        "--protocol", "linear-probe,finetune", "--out", str(ev / "random")] + common + random_pre]))
    stages.append(Stage("evaluate-supervised", "supervised from scratch on HAPT", lambda: [[
        "evaluate", "--encoder", "random", "--model", plan.eval_model, "--name", "supervised",
        "--protocol", "supervised", "--out", str(ev / "supervised")] + common + random_pre]))
    stages.append(Stage("report", "write the report", lambda: [[
        "report", *[str(zs / m) for m in ZEROSHOT_METHODS],
        *[str(ev / m) for m in (*PRETRAIN_METHODS, "random", "supervised")],
        "--out", str(out), "--title", "crossmodal-har demo", "--demo-plan", str(out / "plan.json")]]))
    return stages


def run_demo(out: PathLike, budget_minutes: float = 15.0, *, runner: Callable[[List[str]], int],
             workers: Optional[int] = None, restart: bool = False) -> Path:
    """Run (or resume) the demo in ``out``; returns the path of ``report.md``.

    Args:
        out: output directory (created).
        budget_minutes: wall-clock budget the plan is scaled to (2-core CPU).
        workers: processes for simulation/ingestion (default: up to 2).
        restart: ignore finished stages and run everything again.
        runner: runs one ``crossmodal-har`` argv and returns its exit status; the ``demo`` command
            passes the CLI's own ``main`` (the library does not import the CLI).
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    plan_file = out / "plan.json"
    plan = plan_for_budget(budget_minutes, workers)
    if plan_file.exists() and not restart:
        saved = json.loads(plan_file.read_text())
        if saved.get("budget_minutes") != plan.budget_minutes:
            raise UserError(f"{out} holds a demo planned for {saved.get('budget_minutes')} minutes; "
                            f"use the same --budget-minutes to resume, or --restart")
    atomic_write_json(plan_file, asdict(plan))
    stages = build_stages(out, plan)
    t_start = time.perf_counter()
    for i, stage in enumerate(stages, 1):
        done = _done_path(out, stage.name)
        if done.exists() and not restart:
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
                raise UserError(f"demo stage {stage.name!r} failed (exit {code}); fix the cause and re-run "
                                f"the same command to resume from this stage")
        atomic_write_json(done, {"stage": stage.name, "seconds": round(time.perf_counter() - t0, 2),
                                 "commands": [["crossmodal-har", *a] for a in commands]})
        log.info("  %s finished in %.0f s (total %.1f min)", stage.name, time.perf_counter() - t0,
                 (time.perf_counter() - t_start) / 60)
    return out / "report.md"


def _epochs_text(out: Path) -> str:
    """What each pretraining run actually did, from its summary.json."""
    parts = []
    for m in PRETRAIN_METHODS:
        f = out / "runs" / m / "summary.json"
        if f.exists():
            s = json.loads(f.read_text())
            parts.append(f"{m} {s.get('step', '?')} steps ({s.get('stopped', '?')})")
    return ", ".join(parts) or "no run summaries found"


def demo_report_text(plan_path: PathLike) -> "tuple[list[str], list[str]]":
    """Preamble (what was run, at which size) and caveats for the demo's report."""
    plan = json.loads(Path(plan_path).read_text())
    out = Path(plan_path).parent
    stage_lines = []
    for f in sorted((out / "stages").glob("*.json"), key=lambda p: p.stat().st_mtime):
        info = json.loads(f.read_text())
        for cmd in info.get("commands", []):
            stage_lines.append(f"    {' '.join(shlex.quote(c) for c in cmd)}   # {info['seconds']:.0f} s")
    preamble = [
        "This is the experiment of Cheshmi et al., *Improving Out-of-distribution Human Activity Recognition via "
        "IMU-Video Cross-modal Representation Learning* (MLHC 2025), run end to end at CPU scale by "
        "`crossmodal-har demo`.", "",
        f"- Pretraining data: {plan['sim_minutes']} minutes of **simulated** head-mounted IMU + egocentric video "
        f"from {plan['subjects']} simulated people (`crossmodal-har simulate`), {plan['frame_size']} px frames, "
        "10 frames per 5 s window.",
        f"- Pretraining: tiny configs (`configs/*-tiny.yaml`: {_epochs_text(out)}), at most "
        f"{plan['pretrain_seconds']:.0f} s of CPU training per method (the learning-rate schedule is fitted "
        "to that budget when the epochs would not fit).",
        f"- Out-of-distribution evaluation: real UCI HAPT (waist smartphone, 30 people, 6 activities), "
        f"{', '.join(str(s) for s in plan['shots'])} labelled windows per class, {plan['seeds']} seeds, "
        "subject-disjoint train/validation/test.", "",
        "Commands run (each can be run alone; seconds are wall time):", "", *stage_lines, "",
    ]
    caveats = [
        f"Preprocessing: 50 Hz, 5 s windows, median filter 5, normalisation `{plan.get('normalization', 'none')}` for "
        "every method. The paper z-scores each window; here that removes the gravity direction that separates "
        "sitting, standing and lying on HAPT (supervised patchtst-tiny at 100 shots: 0.31 balanced accuracy with "
        "z-scoring vs 0.79 without, one seed), which would hide every difference between methods.",
        "The pretraining video is simulated (flat-shaded textured arenas rendered in numpy), not Ego4D: it "
        "carries egomotion (heading, bob, tilt, speed) but none of the objects, hands and scenes that give real "
        "egocentric video its semantics. Conclusions about *which method is better on real data* cannot be drawn "
        "from these tables.",
        "The models are tiny (PatchTST with d_model 16, one layer; VideoMAE/CLIP towers with a few thousand "
        "parameters, randomly initialised rather than loaded from hub weights) and trained for about a minute. "
        "The paper's models have millions of parameters and train for hours on GPUs.",
        "Few-shot numbers are on test subjects never used for training or model selection; mean ± std is over "
        "seeds (new few-shot draw and initialisation each), not over different test-subject groups, so the "
        "spread understates subject-to-subject variation.",
        "The simulated pretraining IMU is head-mounted while HAPT is waist-worn: the gap between them is part of "
        "the out-of-distribution test, as in the paper (Ego4D head IMU → other devices and positions).",
        "What the demo does show: every stage of the method runs end to end on real formats (MP4 via PyAV, CSV, "
        "safetensors), the retrieval numbers can be compared against the printed chance levels, and the same "
        "commands run at paper scale with `configs/paper/` on GPUs (docs/scale.md).",
    ]
    return preamble, caveats
