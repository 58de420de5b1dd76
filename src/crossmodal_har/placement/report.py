"""The placement study's report: what true pairing adds at each IMU site, on each evaluation dataset, and
what the numbers support, in words generated from them.

Inputs are the merged ``results.json`` of each evaluation dataset (``crossmodal-har report`` over every
encoder's evaluation: runs with their evaluation seed and pretraining seed) and the probe's
``probe.json``. Every difference is computed by the evaluation's own paired code
(:func:`crossmodal_har.evaluate.comparisons.compute_comparisons`,
:func:`crossmodal_har.evaluate.summaries.control_comparisons`): mean over evaluation seeds of the paired
difference (same subject split and few-shot draw), Student-t 95 % CI, exact sign-flip p, and each
pretraining seed's own mean difference.

A cell (site × dataset × protocol × shots) *supports* "pairing transfers" when Δ = true − shuffled has a
95 % CI above 0 **and** Δ > 0 in more than half of the pretraining seeds (the CI is over evaluation seeds
with the encoders fixed; it does not cover pretraining-seed variation, which the seed count shows).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Sequence

from crossmodal_har.evaluate.comparisons import compute_comparisons
from crossmodal_har.evaluate.fewshot import shots_key
from crossmodal_har.evaluate.results import load_results
from crossmodal_har.evaluate.summaries import CONTROL_SUFFIX, control_comparisons
from crossmodal_har.evaluate.tables import pretrain_diffs_text, render_comparisons
from crossmodal_har.io import PathLike, atomic_write_text, read_json
from crossmodal_har.saved import SavedFile, write_saved

log = logging.getLogger(__name__)

STUDY_KIND = "placement-study"


@dataclass
class PlacementResult(SavedFile):
    """The study's ``results.json``: ``plan`` (its sizes), ``datasets`` (key → spec), ``cells`` (one per site ×
    dataset × protocol × shots: ``true_minus_shuffled``, ``minus_random``, ``minus_imu_mae``, each a paired
    comparison entry), ``verdicts`` (one per site × dataset: ``supported`` cells, ``sentence``),
    ``probe`` (probe.json, when it ran) and ``retrieval`` (:func:`pretraining_retrieval`)."""

    WHAT = "placement study results"

    kind: str = STUDY_KIND
    plan: Dict[str, Any] = field(default_factory=dict)
    datasets: Dict[str, str] = field(default_factory=dict)
    cells: List[Dict[str, Any]] = field(default_factory=list)
    verdicts: List[Dict[str, Any]] = field(default_factory=list)
    probe: Optional[Dict[str, Any]] = None
    retrieval: List[Dict[str, Any]] = field(default_factory=list)


def supports(c: Mapping[str, Any]) -> bool:
    """A comparison whose CI is above 0 and whose sign holds in most pretraining seeds (module docstring)."""
    per_seed = [e["mean_diff"] for e in c.get("pretrain_mean_diffs") or []]
    majority = not per_seed or sum(d > 0 for d in per_seed) * 2 > len(per_seed)
    return c.get("ci_low") is not None and c["ci_low"] > 0 and majority


def seeds_above(c: Mapping[str, Any]) -> str:
    per_seed = [e["mean_diff"] for e in c.get("pretrain_mean_diffs") or []]
    return f"in {sum(d > 0 for d in per_seed)} of {len(per_seed)} pretraining seeds" if per_seed else "one encoder"


def delta_words(c: Mapping[str, Any]) -> str:
    ci = "no interval" if c.get("ci_low") is None else f"[{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"
    p = "" if c.get("p_value") is None else f", p = {c['p_value']:.2g}"
    return f"Δ {c['mean_diff']:+.3f} {ci}{p}, above 0 {seeds_above(c)}"


def target_words(key: str, spec: str, eval_site: str) -> str:
    if key == "hapt":
        return "to a waist phone on HAPT"
    if key == "heldout":
        return f"to other simulated people's {eval_site} IMU (the held-out corpus)"
    return f"to `{spec}`"


def verdict_sentence(site: str, target: str, cells: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
    """One sentence per site × dataset from its cells' Δ = true − shuffled (never a fixed text)."""
    rows = [(f"{c['protocol']} {c['shots']} shots", c["true_minus_shuffled"]) for c in cells]
    words = "; ".join(f"{name}: {delta_words(d)}" for name, d in rows)
    yes = [name for name, d in rows if supports(d)]
    worse = [name for name, d in rows if d.get("ci_high") is not None and d["ci_high"] < 0]
    head = f"IMU at the {site}: pairing"
    if rows and len(yes) == len(rows):
        verdict, text = "transfers", f"{head} transfers {target} at every setting ({words})."
    elif yes:
        verdict = "partly"
        text = (f"{head} transfers {target} only in part: at {', '.join(yes)}, not at "
                f"{', '.join(n for n, _ in rows if n not in yes)} ({words}).")
    else:
        verdict = "does not"
        text = f"{head} does not transfer {target} in these numbers ({words or 'no paired cells'})."
        if worse:
            text += f" Shuffled pairs do better at {', '.join(worse)}."
    return {"site": site, "verdict": verdict, "supported": yes, "sentence": text}


def study_cells(runs: Sequence[Dict[str, Any]], sites: Sequence[str], eval_site: str) -> List[Dict[str, Any]]:
    """Per site × protocol × shots: true − shuffled, siglip − random, siglip − imu-mae (paired entries)."""
    controls = control_comparisons(runs)
    mae = f"imu-mae-{eval_site}"
    cells = []
    for site in sites:
        method = f"siglip-{site}"

        def vs(reference: str) -> Dict[tuple, Dict[str, Any]]:
            subset = [r for r in runs if r.get("method") in (method, reference)]
            found = compute_comparisons(subset, reference)[0] if any(r.get("method") == reference for r in subset) else []
            return {(c["protocol"], c["shots"]): c for c in found if c["method"] == method}

        rand, imu_mae = vs("random"), vs(mae)
        for c in controls:
            if c["method"] != method or c["reference"] != method + CONTROL_SUFFIX:
                continue
            key = (c["protocol"], c["shots"])
            cells.append({"site": site, "protocol": c["protocol"], "shots": c["shots"], "true_minus_shuffled": c,
                          "minus_random": rand.get(key), "minus_imu_mae": imu_mae.get(key)})
    return sorted(cells, key=lambda c: (list(sites).index(c["site"]), c["protocol"], shots_key(c["shots"])))


def _cell_table(cells: Sequence[Dict[str, Any]], mae: str) -> List[str]:
    def f(c: Optional[Mapping[str, Any]]) -> str:
        if c is None:
            return "–"
        ci = "" if c.get("ci_low") is None else f" [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"
        return f"{c['mean_diff']:+.3f}{ci}" + ("" if c.get("p_value") is None else f" p={c['p_value']:.2g}")

    lines = [f"| Site | Protocol | Shots | true − shuffled | by pretraining seed | siglip − random | siglip − {mae} |",
             "|---|---|---|---|---|---|---|"]
    for c in cells:
        d = c["true_minus_shuffled"]
        lines.append(f"| {c['site']} | {c['protocol']} | {c['shots']} | {'**' if supports(d) else ''}{f(d)}"
                     f"{'**' if supports(d) else ''} | {pretrain_diffs_text(d)} | {f(c['minus_random'])} | "
                     f"{f(c['minus_imu_mae'])} |")
    return lines + [""]


def pretraining_retrieval(runs_dir: Path, sites: Sequence[str], seeds: Sequence[int]) -> List[Dict[str, Any]]:
    """Per site and pairing (true, shuffled): each pretraining seed's IMU→video retrieval on the pretraining
    corpus's validation people (``summary.json`` ``val``: R@1, its chance level, MRR) — how much the IMU at that
    site shares with the head camera's video. Runs without a summary are left out."""
    rows = []
    for site in sites:
        for shuffled in (False, True):
            per_seed = []
            for p in seeds:
                f = runs_dir / (f"siglip-{site}-shuffled-seed{p}" if shuffled else f"siglip-{site}-seed{p}") / "summary.json"
                val = (read_json(f) or {}).get("val") if f.exists() else None
                if isinstance(val, dict) and "val/MRR" in val:
                    per_seed.append({"seed": p, "R@1": val.get("val/R@1"), "chance_R@1": val.get("val/chance_R@1"),
                                     "MRR": val["val/MRR"]})
            if per_seed:
                rows.append({"site": site, "shuffled": shuffled, "per_seed": per_seed,
                             "MRR": sum(e["MRR"] for e in per_seed) / len(per_seed)})
    return rows


def _retrieval_lines(rows: Sequence[Mapping[str, Any]]) -> List[str]:
    if not rows:
        return []
    lines = ["## How much each site's IMU shares with the head camera (pretraining validation retrieval)", "",
             "IMU→video retrieval among the pretraining corpus's validation people at the end of each pretraining run "
             "(`runs/*/summary.json`; the shuffled runs are the level reached without true pairs):", "",
             "| Site | Pairs | MRR (mean) | R@1 by pretraining seed (× chance) | MRR by pretraining seed |", "|---|---|---|---|---|"]
    for r in rows:
        r1 = " · ".join(f"s{e['seed']} {e['R@1']:.3f} ({e['R@1'] / e['chance_R@1']:.1f}×)" if e.get("chance_R@1")
                        else f"s{e['seed']} {e['R@1']:.3f}" for e in r["per_seed"])
        mrr = " · ".join(f"{e['MRR']:.3f}" for e in r["per_seed"])
        lines.append(f"| {r['site']} | {'shuffled' if r['shuffled'] else 'true'} | {r['MRR']:.3f} | {r1} | {mrr} |")
    gains = {r["site"]: r["MRR"] for r in rows if not r["shuffled"]}
    base = {r["site"]: r["MRR"] for r in rows if r["shuffled"]}
    words = [f"at the {site} true pairs reach MRR {gains[site]:.3f} against {base[site]:.3f} shuffled "
             f"({gains[site] / base[site]:.1f}×)" for site in gains if site in base and base[site] > 0]
    if words:
        lines += ["", "In words: " + "; ".join(words) + " (true over shuffled: how much better the IMU at that site "
                  "finds its own window's video than the level the objective reaches without true pairs)."]
    return lines + [""]


def _probe_lines(probe: Optional[Mapping[str, Any]]) -> List[str]:
    if not probe:
        return []
    lines = ["## What the waist IMU towers learned (linear probes, held-out simulated corpus)", "",
             probe.get("about", ""), ""]
    if not probe["encoders"]:
        return lines + ["No target had enough windows and people to probe (" + ", ".join(
            f"{t['name']}: {t['n_windows']} windows of {t['n_subjects']} people" for t in probe["targets"]) + ").", ""]
    lines += ["| Encoder | " + " | ".join(t["title"] for t in probe["targets"]) + " |",
              "|---|" + "---|" * len(probe["targets"])]
    for e in probe["encoders"]:
        cells = []
        for t in probe["targets"]:
            s = e["scores"].get(t["name"])
            cells.append("–" if s is None else f"{s['mean']:.3f}" + (
                f" ({' · '.join(f'{v:.3f}' for v in s['per_seed'])})" if len(s["per_seed"]) > 1 else ""))
        lines.append(f"| {e['label']} | " + " | ".join(cells) + " |")
    return lines + ["", *[f"- {t['title']}: {t['about']} ({t['n_windows']} windows of {t['n_subjects']} people"
                          + (f"; classes {', '.join(t['classes'])}" if t.get("classes") else "") + ")"
                          for t in probe["targets"]], ""]


def write_study_report(out: PathLike, plan: Mapping[str, Any], merged_dirs: Mapping[str, PathLike]) -> Path:
    """``OUT/report.md`` and ``OUT/results.json`` from each dataset's merged results (``merged_dirs``: key →
    the ``report`` output directory) and ``OUT/probe.json`` (when there)."""
    out = Path(out)
    sites, eval_site = list(plan["sites"]), plan["eval_site"]
    specs = {k: ("UCI HAPT (real; a waist-worn phone)" if k == "hapt" else
                 f"held-out simulated corpus ({eval_site} IMU)" if k == "heldout" else plan["transfer_dataset"])
             for k in merged_dirs}
    probe_file = out / "probe.json"
    probe = read_json(probe_file) if probe_file.exists() else None
    result = PlacementResult(plan=dict(plan), datasets=dict(specs), probe=probe)
    lines = ["# Placement study: does pairing IMU with video transfer to a waist-worn phone?", "",
             f"siglip-tiny pretrained on one simulated corpus ({plan['subjects']} people, {plan['sim_minutes']} min, "
             f"head camera) with the IMU at the {' or the '.join(sites)}, on true pairs and on shuffled pairs (the "
             f"control: same store, config, seed and steps), pretraining seeds {plan['pretrain_seeds']}; imu-mae-tiny "
             f"at the {eval_site} (seeds {plan['mae_seeds']}) and a random {plan['eval_model']} as references. Every "
             f"encoder evaluated with the same {plan['seeds']} evaluation seeds (same subject splits and few-shot "
             f"draws: paired), {', '.join(plan['protocols'])}, {', '.join(map(str, plan['shots']))} shots, balanced "
             "accuracy on test subjects never seen in training or model selection.", "",
             "A cell supports \"pairing transfers\" when Δ = true − shuffled has a 95 % CI above 0 **and** is above 0 "
             "in more than half of the pretraining seeds (bold). The CI is over evaluation seeds with the encoders "
             "fixed; the per-seed Δ shows the pretraining-seed spread it does not cover. No correction for multiple "
             "comparisons.", "", "## What the numbers support", ""]
    sections: List[str] = []
    for key, d in merged_dirs.items():
        merged = load_results(Path(d) / "results.json")
        cells = study_cells(merged.runs, sites, eval_site)
        target = target_words(key, specs[key], eval_site)
        for c in cells:
            result.cells.append({"dataset": key, **c})
        for site in sites:
            v = verdict_sentence(site, target, [c for c in cells if c["site"] == site])
            result.verdicts.append({"dataset": key, **v})
            lines.append(f"- {v['sentence']}")
        sections += [f"## {specs[key]}", "", *_cell_table(cells, f"imu-mae-{eval_site}"),
                     *render_comparisons([c["true_minus_shuffled"] for c in cells], "its shuffled-pairs control")[2:],
                     f"Full tables (means, per-class recall, every comparison): `{Path(d).name}/report.md`.", ""]
    retrieval = pretraining_retrieval(out / "runs", sites, plan.get("pretrain_seeds", []))
    result.retrieval = retrieval
    lines += ["", *sections, *_retrieval_lines(retrieval), *_probe_lines(probe)]
    write_saved(result, out / "results.json")
    atomic_write_text(out / "report.md", "\n".join(lines))
    log.info("wrote %s", out / "report.md")
    return out / "report.md"
