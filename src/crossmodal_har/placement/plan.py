"""The placement study's plan: IMU at the head vs at the waist, true vs shuffled pairs, as resumable stages.

One pretraining corpus is simulated once with an IMU on each body segment (``simulate --mounting
head,waist``: ``imu-head.csv`` and ``imu-waist.csv`` beside one head-camera video) and ingested twice
(``ingest --imu-site head`` / ``waist``, the demo's video settings). At each site siglip-tiny is pretrained
on true pairs and, as the control, on shuffled pairs (``split.shuffle_train_pairs=true``, siglip's steps
at the same pretraining seed), with pretraining seeds 0, 1, 2; imu-mae-tiny (no video) at the waist, and a
random encoder, are the other references. Every encoder is evaluated with the same evaluation seeds (a
paired design) on real HAPT (a waist phone) and on a held-out simulated corpus (another simulator seed:
other people and scene looks; its waist IMU and its own labels, written as a labelled dataset by
:func:`crossmodal_har.pairs.labelled.write_labelled_dataset`). A probe reads what the waist IMU towers
learned (:mod:`crossmodal_har.placement.probe`); the report (:mod:`crossmodal_har.placement.report`) gives
Δ = true − shuffled per site × dataset × protocol × shots and says what the numbers support.

Stages run through :mod:`crossmodal_har.stages` (resume, plan check) exactly as the demo's do.
"""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable, List, NamedTuple, Optional

from crossmodal_har.demo import ingest_argv, matched_steps, pretrain_argv, simulator_seed
from crossmodal_har.errors import UserError
from crossmodal_har.evaluate.summaries import CONTROL_SUFFIX
from crossmodal_har.io import PathLike
from crossmodal_har.placement.probe import run_probe
from crossmodal_har.placement.report import write_study_report
from crossmodal_har.stages import Stage, check_plan, prepare_out, run_stages

STUDIES = ("placement",)
PLAN_VERSION = 1  # bump when the stages change meaning: an OUT of another version is refused, not mixed
MAX_BUDGET_MINUTES = 1440.0
MAX_WORKERS = 256


@dataclass
class StudyPlan:
    """Sizes of every stage (:func:`plan_for_study`). ``transfer_dataset``: the real dataset of the transfer
    test (``hapt``: a waist phone; any ``evaluate --dataset`` spec)."""

    budget_minutes: float
    subjects: int
    sim_minutes: float
    pretrain_seconds: float
    heldout_subjects: int
    heldout_minutes: float
    eval_epochs: int
    pretrain_seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    mae_seeds: List[int] = field(default_factory=lambda: [0, 1, 2])
    shots: List[int] = field(default_factory=lambda: [10, 100])
    seeds: int = 10  # evaluation seeds: 10 pairs let a sign-flip test reach p = 0.002
    protocols: List[str] = field(default_factory=lambda: ["linear-probe", "finetune"])
    sites: List[str] = field(default_factory=lambda: ["head", "waist"])
    eval_site: str = "waist"  # the held-out corpus's IMU and imu-mae's site: where a phone is worn
    transfer_dataset: str = "hapt"
    frame_size: int = 32
    normalization: str = "none"
    video: str = "diff"
    eval_model: str = "patchtst-tiny"  # the random encoder: siglip-tiny's IMU tower
    workers: int = 2
    seed: int = 0  # the pretraining corpus's simulator seed; the held-out corpus gets seed + 1
    version: int = PLAN_VERSION


def plan_for_study(minutes: float = 40.0, workers: Optional[int] = None, transfer_dataset: str = "hapt") -> StudyPlan:
    """Scale data and steps to a wall-clock budget on a 2-core CPU (the default: ~40 min; see
    docs/pretraining.md for the measured stage times). Under 20 minutes fewer pretraining seeds; under 8,
    a smoke-test size (3 evaluation seeds, 10 shots, linear probe only) that tests the plumbing, not the
    question."""
    if not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and 0 < minutes <= MAX_BUDGET_MINUTES):
        raise UserError(f"--budget-minutes must be > 0 and at most {MAX_BUDGET_MINUTES} (a day), got {minutes!r}")
    if workers is not None and not 1 <= workers <= MAX_WORKERS:
        raise UserError(f"--workers must be between 1 and {MAX_WORKERS}, got {workers!r}")
    scale = minutes / 40.0
    seeds = [0, 1, 2] if minutes >= 20 else [0, 1]
    smoke = minutes < 8
    return StudyPlan(
        budget_minutes=float(minutes),
        subjects=max(3, min(16, int(round(10 * scale ** 0.5)))),
        sim_minutes=max(5.0, round(60.0 * scale, 1)),
        pretrain_seconds=max(3.0, float(round(90.0 * scale))),
        heldout_subjects=max(3, min(12, int(round(10 * scale ** 0.5)))),
        heldout_minutes=max(2.0, min(40.0, round(30.0 * scale, 1))),
        eval_epochs=max(2, min(30, int(round(12 * scale ** 0.5)))),
        pretrain_seeds=seeds, mae_seeds=seeds if minutes >= 20 else [0],
        shots=[10] if smoke else [10, 100], seeds=3 if smoke else 10,
        protocols=["linear-probe"] if smoke else ["linear-probe", "finetune"],
        transfer_dataset=transfer_dataset,
        workers=workers or min(2, os.cpu_count() or 1),
    )


class StudyEncoder(NamedTuple):
    """One evaluated encoder: its run directory name (``random``: none), its label in every table, its
    pretraining seed, its IMU's body site, its method, and whether it is a shuffled-pairs control."""

    run: str
    label: str
    pretrain_seed: Optional[int]
    site: Optional[str]
    method: str
    shuffled: bool = False


def siglip_label(site: str, shuffled: bool = False) -> str:
    return f"siglip-{site}" + (CONTROL_SUFFIX if shuffled else "")


def study_encoders(plan: StudyPlan) -> List[StudyEncoder]:
    """Every encoder, in training order (siglip at seed p before its control at seed p), then random."""
    out = []
    for site in plan.sites:
        for p in plan.pretrain_seeds:
            out.append(StudyEncoder(f"siglip-{site}-seed{p}", siglip_label(site), p, site, "siglip"))
            out.append(StudyEncoder(f"siglip-{site}-shuffled-seed{p}", siglip_label(site, True), p, site, "siglip", True))
    out += [StudyEncoder(f"imu-mae-{plan.eval_site}-seed{p}", f"imu-mae-{plan.eval_site}", p, plan.eval_site, "imu-mae")
            for p in plan.mae_seeds]
    return out + [StudyEncoder("random", "random", None, None, "random")]


def transfer_key(plan: StudyPlan) -> str:
    """The name of the transfer dataset's directories and stages (``hapt``, else ``transfer``)."""
    return "hapt" if plan.transfer_dataset == "hapt" else "transfer"


def build_study_stages(out: Path, plan: StudyPlan) -> List[Stage]:
    data, runs, ev = out / "data", out / "runs", out / "eval"
    sim, heldout_sim, heldout = data / "sim", data / "sim-heldout", data / f"heldout-{plan.eval_site}"
    datasets = {transfer_key(plan): plan.transfer_dataset, "heldout": str(heldout)}
    encoders = study_encoders(plan)
    stages = [Stage("simulate", f"simulate paired video + one IMU per site ({', '.join(plan.sites)})", lambda: [[
        "simulate", "--out", str(sim), "--subjects", str(plan.subjects), "--minutes", str(plan.sim_minutes),
        "--seed", str(plan.seed), "--workers", str(plan.workers), "--mounting", ",".join(plan.sites)]])]
    for site in plan.sites:
        stages.append(Stage(f"ingest-{site}", f"ingest the {site} IMU with the head video",
                            lambda site=site: [ingest_argv(sim, data / f"store-{site}", plan, imu_site=site)]))
    stages += [
        Stage("simulate-heldout", "simulate a held-out corpus (another seed: other people and looks)", lambda: [[
            "simulate", "--out", str(heldout_sim), "--subjects", str(plan.heldout_subjects), "--minutes",
            str(plan.heldout_minutes), "--seed", str(plan.seed + 1), "--workers", str(plan.workers),
            "--mounting", plan.eval_site, "--size", "32"]]),
        Stage("heldout-dataset", f"the held-out corpus's {plan.eval_site} IMU and labels as a labelled dataset",
              lambda: [["pairs-dataset", "--src", str(heldout_sim), "--out", str(heldout), "--name",
                        f"held-out simulated corpus ({plan.eval_site} IMU, simulator seed {plan.seed + 1})"]]),
    ]
    for e in encoders[:-1]:
        config = f"{e.method}-tiny"
        extra: Callable[[], List[str]] = lambda: []
        if e.shuffled:  # the control: siglip's steps at the same pretraining seed, shuffled training pairs
            extra = lambda e=e: ["--set", "split.shuffle_train_pairs=true",
                                 *matched_steps(runs / f"siglip-{e.site}-seed{e.pretrain_seed}")]
        stages.append(Stage(f"pretrain-{e.run}", f"pretrain {e.label} (tiny), pretraining seed {e.pretrain_seed}",
                            lambda e=e, config=config, extra=extra: [pretrain_argv(
                                config, data / f"store-{e.site}", runs / e.run, e.pretrain_seed,
                                plan.pretrain_seconds, extra())]))
    for key, spec in datasets.items():
        for e in encoders:
            enc = (["--encoder", "random", "--arch", plan.eval_model, "--set",
                    f"preprocess.normalization={plan.normalization}"] if e.method == "random"
                   else ["--encoder", str(runs / e.run)])
            stages.append(Stage(f"evaluate-{key}-{e.run}", f"evaluate {e.label} on {spec}", lambda enc=enc, e=e, key=key,
                                spec=spec: [["evaluate", *enc, "--name", e.label, "--dataset", spec, "--protocol",
                                             ",".join(plan.protocols), "--shots", ",".join(map(str, plan.shots)),
                                             "--seeds", str(plan.seeds), "--epochs", str(plan.eval_epochs),
                                             "--no-progress", "--out", str(ev / key / e.run)]]))
    probed = [e for e in encoders if e.site in (plan.eval_site, None)]
    stages.append(Stage("probe", "probe what the waist IMU towers learned (posture, gait cadence, heading)",
                        call=lambda: run_probe(heldout, heldout_sim / "simulation.json",
                                               [(e.label, e.pretrain_seed, None if e.method == "random" else
                                                 runs / e.run) for e in probed], out / "probe.json",
                                               random_arch=plan.eval_model, normalization=plan.normalization),
                        call_text="crossmodal_har.placement.probe.run_probe", after_all=True))
    for key in datasets:
        stages.append(Stage(f"report-{key}", f"full tables on {datasets[key]}", after_all=True, argvs=lambda key=key: [[
            "report", *[str(ev / key / e.run) for e in encoders], "--out", str(out / key),
            "--title", f"placement study: {datasets[key]}", "--allow-mismatch"]]))
    stages.append(Stage("report", "write the study's report", after_all=True,
                        call=lambda: write_study_report(out, asdict(plan), {k: out / k for k in datasets}),
                        call_text="crossmodal_har.placement.report.write_study_report"))
    return stages


def run_placement_study(out: PathLike, study: str = "placement", budget_minutes: float = 40.0, *,
              runner: Callable[[List[str]], int], workers: Optional[int] = None, restart: bool = False,
              transfer_dataset: str = "hapt", seed: int = 0) -> Path:
    """Run (or resume) the study in ``out``; returns the path of its ``report.md``. ``runner`` runs one
    ``crossmodal-har`` argv (the CLI's ``main``); ``seed`` is the pretraining corpus's simulator seed (the
    held-out corpus gets seed + 1)."""
    if study not in STUDIES:
        raise UserError(f"--study must be one of {', '.join(STUDIES)}, got {study!r}")
    out = Path(out)
    plan = replace(plan_for_study(budget_minutes, workers, transfer_dataset), seed=simulator_seed(seed))
    prepare_out(out)
    check_plan(out, asdict(plan), restart=restart, what=f"{study} study")
    run_stages(out, build_study_stages(out, plan), runner, restart=restart, what=f"{study} study")
    return out / "report.md"
