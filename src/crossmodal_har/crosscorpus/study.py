"""The cross-corpus pairs study: how far IMU→video retrieval carries from one simulated corpus to another,
per pair of corpora and video side, and what about the pair predicts it.

For every pretraining corpus A (``simulate`` with seed A, the demo's pretraining size) and video side
(``diff``: frames into the frozen random tower; ``imagenet``: frozen ImageNet per-frame features and a
trained temporal head; the demo's :func:`crossmodal_har.demo.ingest_argv` settings), ``pretrain`` siglip-tiny
for a fixed number of steps with each training seed; then, for every target corpus B (another seed, the
demo's second-corpus size), ``zeroshot --split all`` on B and the per-window ranks split by activity
(:func:`~crossmodal_har.crosscorpus.descriptors.rank_breakdown`). Corpora, stores and runs are shared by
every pair that uses them, so A × B pairs cost len(A) + len(B) corpora and len(A) × sides × seeds runs.

Stages are resumable (:mod:`crossmodal_har.stages`; finished cells are skipped, ``OUT/plan.json`` refuses a
differently sized ``--out``; more pairs, seeds or sides may be added to the same ``--out``). The report
(``OUT/results.json``, ``OUT/report.md``) is written after every run from whatever cells have finished.
"""

from __future__ import annotations

import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from types import SimpleNamespace
from typing import Any, Callable, Dict, List, Optional, Sequence

import numpy as np

from crossmodal_har.crosscorpus import descriptors as desc
from crossmodal_har.demo import VIDEO_SIDES, ingest_argv
from crossmodal_har.errors import UserError
from crossmodal_har.io import PathLike, atomic_write_json, atomic_write_text, read_json
from crossmodal_har.saved import SavedFile, write_saved
from crossmodal_har.stages import Stage, check_plan, prepare_out, run_stages

log = logging.getLogger(__name__)

DESCRIPTORS = ("same_R@1/chance", "look_distance", "feature_gap", "activity_tv", "target_locomotion", "locomotion_diff",
               "target_gyro", "gyro_ratio", "target_gyro_still", "chance_R@1")


@dataclass
class PairsPlan:
    """Sizes of the study (the corpora seeds, sides and training seeds may grow in the same ``--out``)."""

    pretrain_seeds: List[int]
    target_seeds: List[int]
    sides: List[str] = field(default_factory=lambda: list(VIDEO_SIDES))
    train_seeds: List[int] = field(default_factory=lambda: [0])
    pretrain_subjects: int = 8
    pretrain_minutes: float = 40.0
    target_subjects: int = 6
    target_minutes: float = 10.0
    steps: int = 600
    imu_site: str = "head"
    frame_size: int = 32
    normalization: str = "none"
    workers: int = 2

    def validate(self) -> None:
        bad = [s for s in self.sides if s not in VIDEO_SIDES]
        if bad:
            raise UserError(f"--sides: unknown video side(s) {bad}; choose from {', '.join(VIDEO_SIDES)}")
        same = sorted(set(self.pretrain_seeds) & set(self.target_seeds))
        if same:
            raise UserError(f"seed(s) {same} are both pretraining and target corpora: a pair needs two corpora")
        if not (self.pretrain_seeds and self.target_seeds and self.sides and self.train_seeds):
            raise UserError("the study needs at least one pretraining seed, target seed, side and training seed")
        if self.steps < 1:
            raise UserError(f"--steps must be >= 1, got {self.steps}")


GROWABLE = ("pretrain_seeds", "target_seeds", "sides", "train_seeds", "workers")


@dataclass
class PairsResult(SavedFile):
    """``results.json``: ``plan``, ``corpora`` (``pre<seed>``/``tgt<seed>`` → corpus descriptors), ``cells``
    (one per side × pair × training seed), ``pairs`` (one per side × pair: means over training seeds and
    the pair's descriptors) and ``correlations`` (per side: Spearman's rho of R@1/chance with each)."""

    WHAT = "cross-corpus pairs results"

    plan: Dict[str, Any] = field(default_factory=dict)
    corpora: Dict[str, Any] = field(default_factory=dict)
    cells: List[Dict[str, Any]] = field(default_factory=list)
    pairs: List[Dict[str, Any]] = field(default_factory=list)
    correlations: Dict[str, Any] = field(default_factory=dict)


def _dirs(out: Path, role: str, seed: int, side: str = "") -> Dict[str, Path]:
    name = f"{role}{seed}"
    return {"sim": out / "sim" / name, "store": out / "store" / side / name}


def _run_dir(out: Path, side: str, a: int, t: int) -> Path:
    return out / "runs" / side / f"pre{a}-train{t}"


def _cell_dir(out: Path, side: str, a: int, t: int, b: int) -> Path:
    return out / "zeroshot" / side / f"pre{a}-train{t}" / f"tgt{b}"


def _has_test(run: Path) -> bool:
    """Whether a finished run held out test subjects (a corpus of 2 people has none)."""
    return bool((read_json(run / "model.json").get("split") or {}).get("test"))


def pair_stages(out: Path, plan: PairsPlan) -> List[Stage]:
    corpora = [("pre", a, plan.pretrain_subjects, plan.pretrain_minutes) for a in plan.pretrain_seeds]
    corpora += [("tgt", b, plan.target_subjects, plan.target_minutes) for b in plan.target_seeds]
    stages = [Stage(f"simulate-{r}{s}", f"simulate corpus {r}{s} ({n} people, {m} min)", lambda r=r, s=s, n=n, m=m: [[
        "simulate", "--out", str(_dirs(out, r, s)["sim"]), "--subjects", str(n), "--minutes", str(m),
        "--seed", str(s), "--workers", str(plan.workers), "--mounting", plan.imu_site]])
        for r, s, n, m in corpora]
    for side in plan.sides:
        how = SimpleNamespace(workers=plan.workers, normalization=plan.normalization, video=side,
                              frame_size=plan.frame_size)
        stages += [Stage(f"ingest-{side}-{r}{s}", f"ingest {r}{s} ({side})", lambda r=r, s=s, how=how, side=side: [
            ingest_argv(_dirs(out, r, s)["sim"], _dirs(out, r, s, side)["store"], how)]) for r, s, _, _ in corpora]
        for a in plan.pretrain_seeds:
            for t in plan.train_seeds:
                run = _run_dir(out, side, a, t)
                stages.append(Stage(f"pretrain-{side}-pre{a}-train{t}", f"pretrain siglip-tiny on pre{a} ({side}, "
                                    f"seed {t}, {plan.steps} steps)", lambda a=a, t=t, run=run, side=side: [[
                                        "pretrain", "--config", "siglip-tiny", "--store",
                                        str(_dirs(out, "pre", a, side)["store"]), "--out", str(run), "--seed", str(t),
                                        "--max-steps", str(plan.steps), "--set", "fit_schedule_to_budget=false",
                                        "--no-progress", *(["--resume"] if (run / "checkpoint.pt").exists() else [])]]))
                stages.append(Stage(f"zeroshot-{side}-pre{a}-train{t}-same", f"zero-shot pre{a} (seed {t}) on its own "
                                    f"held-out subjects ({side})", lambda a=a, run=run, side=side: [[
                                        "zeroshot", "--run", str(run), "--store", str(_dirs(out, "pre", a, side)["store"]),
                                        "--out", str(run / "zs-same")]] if _has_test(run) else []))
                for b in plan.target_seeds:
                    cell, store = _cell_dir(out, side, a, t, b), _dirs(out, "tgt", b, side)["store"]
                    stages.append(Stage(
                        f"zeroshot-{side}-pre{a}-train{t}-tgt{b}", f"zero-shot pre{a} (seed {t}) on tgt{b} ({side})",
                        lambda run=run, cell=cell, store=store: [[
                            "zeroshot", "--run", str(run), "--store", str(store), "--split", "all", "--out", str(cell)]],
                        call=lambda run=run, cell=cell, store=store: atomic_write_json(
                            cell / "breakdown.json", desc.rank_breakdown(run, store)),
                        call_text="per-window ranks by activity group (breakdown.json)"))
    return stages


def _ratio(v: Optional[float], chance: Optional[float]) -> Optional[float]:
    return None if v is None or not chance else v / chance


def _mean(values: Sequence[Optional[float]]) -> Optional[float]:
    vals = [v for v in values if v is not None]
    return float(np.mean(vals)) if vals else None


def collect(out: Path, plan: PairsPlan) -> PairsResult:
    """Every finished cell with its pair's descriptors, the per-pair means and the correlations."""
    corpora: Dict[str, Any] = {}
    for role, seeds in (("pre", plan.pretrain_seeds), ("tgt", plan.target_seeds)):
        for s in seeds:
            side = next((x for x in plan.sides if (_dirs(out, role, s, x)["store"] / "store.json").exists()), None)
            if side is not None and (_dirs(out, role, s)["sim"] / "simulation.json").exists():
                corpora[f"{role}{s}"] = desc.corpus_descriptors(_dirs(out, role, s)["sim"],
                                                                _dirs(out, role, s, side)["store"])
    cells, pairs = [], []
    for side in plan.sides:
        for a in plan.pretrain_seeds:
            for b in plan.target_seeds:
                mine = []
                for t in plan.train_seeds:
                    f = _cell_dir(out, side, a, t, b) / "results.json"
                    if not f.exists():
                        continue
                    m = read_json(f)["retrieval"]["imu_to_video"]
                    bd = _cell_dir(out, side, a, t, b) / "breakdown.json"
                    summary = read_json(_run_dir(out, side, a, t) / "summary.json")
                    same_f = _run_dir(out, side, a, t) / "zs-same" / "results.json"
                    same = read_json(same_f)["retrieval"]["imu_to_video"] if same_f.exists() else {}
                    mine.append({"side": side, "pre": a, "tgt": b, "train_seed": t, "steps": summary.get("step"),
                                 "windows": m["n"], "R@1": m["R@1"], "R@1/chance": _ratio(m["R@1"], m["chance_R@1"]),
                                 "MRR/chance": _ratio(m["MRR"], m["chance_MRR"]),
                                 "same_R@1/chance": _ratio(same.get("R@1"), same.get("chance_R@1")),
                                 "breakdown": read_json(bd) if bd.exists() else None})
                if not mine or f"pre{a}" not in corpora or f"tgt{b}" not in corpora:
                    cells += mine
                    continue
                d = desc.pair_descriptors(corpora[f"pre{a}"], corpora[f"tgt{b}"])
                if side == "imagenet":
                    d["feature_gap"] = desc.feature_gap(_dirs(out, "pre", a, side)["store"],
                                                        _dirs(out, "tgt", b, side)["store"])
                groups = {g: _mean([(c["breakdown"] or {}).get("groups", {}).get(g, {}).get("R@1/chance")
                                    for c in mine]) for g in desc.GROUPS}
                cells += mine
                pairs.append({"side": side, "pre": a, "tgt": b, "seeds": len(mine),
                              "R@1/chance": _mean([c["R@1/chance"] for c in mine]),
                              "per_seed": [c["R@1/chance"] for c in mine],
                              "MRR/chance": _mean([c["MRR/chance"] for c in mine]),
                              "same_R@1/chance": _mean([c["same_R@1/chance"] for c in mine]),
                              "groups_R@1/chance": groups, **d})
    corr = {side: {metric: desc.correlations([p for p in pairs if p["side"] == side], metric, DESCRIPTORS)
                   for metric in ("R@1/chance", "MRR/chance")} for side in plan.sides}
    return PairsResult(plan=asdict(plan), corpora=corpora, cells=cells, pairs=pairs, correlations=corr)


def _f(v: Any, fmt: str = "{:.2f}") -> str:
    return "–" if v is None else fmt.format(v)


def render(res: PairsResult) -> str:
    p = res.plan
    lines = ["# Cross-corpus retrieval, pair by pair", "",
             f"siglip-tiny pretrained {p['steps']} steps on corpus A ({p['pretrain_subjects']} people, "
             f"{p['pretrain_minutes']} min, {p['imu_site']} IMU), zero-shot IMU→video on every window of corpus B "
             f"({p['target_subjects']} people, {p['target_minutes']} min); training seeds {p['train_seeds']}. "
             "Cells: R@1 ÷ chance (mean over training seeds; each seed in brackets), MRR ÷ chance, the same run's R@1 ÷ "
             "chance on A's own held-out subjects, and R@1 ÷ chance of B's locomotion / still / other windows (chance "
             "of the whole gallery).", "",
             "| side | A → B | R@1/chance (per seed) | MRR/chance | same-corpus R@1/chance | loco / still / other | look dist | "
             "feature gap | activity TV | B loco share | B gyro rad/s | gyro B/A | B windows |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in res.pairs:
        g = r["groups_R@1/chance"]
        lines.append(
            f"| {r['side']} | {r['pre']} → {r['tgt']} | {_f(r['R@1/chance'], '{:.1f}×')} "
            f"({', '.join(_f(v, '{:.0f}') for v in r['per_seed'])}) | {_f(r['MRR/chance'], '{:.1f}×')} | "
            f"{_f(r['same_R@1/chance'], '{:.1f}×')} | "
            f"{' / '.join(_f(g[k], '{:.1f}') for k in desc.GROUPS)} | {_f(r['look_distance'])} | "
            f"{_f(r.get('feature_gap'))} | {_f(r['activity_tv'])} | {_f(r['target_locomotion'])} | "
            f"{_f(r['target_gyro'], '{:.3f}')} | {_f(r['gyro_ratio'])} | {r['target_windows']} |")
    lines += ["", "Identical scene looks between A's pool and B's sessions: "
              + (", ".join(f"{r['pre']}→{r['tgt']}: {r['look_identical']}" for r in res.pairs
                           if r["side"] == res.pairs[0]["side"]) if res.pairs else "no pairs yet") + ".", ""]
    for side, per_metric in res.correlations.items():
        lines += [f"## Spearman correlation across pairs ({side})", "", "| descriptor | ρ with R@1/chance (p) | "
                  "ρ with MRR/chance (p) | pairs |", "|---|---|---|---|"]
        for a, b in zip(per_metric["R@1/chance"], per_metric["MRR/chance"]):
            lines.append(f"| {a['descriptor']} | {_f(a['rho'], '{:+.2f}')} ({_f(a['p'], '{:.2g}')}) | "
                         f"{_f(b['rho'], '{:+.2f}')} ({_f(b['p'], '{:.2g}')}) | {a['n']} |")
        lines.append("")
    return "\n".join(lines)


def write_pairs_report(out: Path, plan: PairsPlan) -> PairsResult:
    res = collect(out, plan)
    write_saved(res, out / "results.json")
    atomic_write_text(out / "report.md", render(res) + "\n")
    return res


def run_pairs_study(out: PathLike, plan: PairsPlan, *, runner: Callable[[List[str]], int],
                    restart: bool = False) -> PairsResult:
    """Run (or resume) the study in ``out`` and write its report; ``runner`` runs one ``crossmodal-har``
    argv (the CLI's ``main``: the library does not import the CLI)."""
    out = Path(out)
    plan.validate()
    prepare_out(out)
    check_plan(out, asdict(plan), restart=restart, what="cross-corpus study", ignore=GROWABLE)
    run_stages(out, pair_stages(out, plan), runner, restart=restart, what="cross-corpus study")
    return write_pairs_report(out, plan)
