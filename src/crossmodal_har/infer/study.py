"""A study in one command: ``predict`` over many recordings, in parallel, resumable, shardable.

``crossmodal-har predict --input DIR|GLOB|LIST --out OUT_DIR`` (:func:`is_study`) runs
:func:`run_study`:

* **Recordings** (:func:`find_recordings`): the tables and device files directly in a folder (a
  folder without ``--format``; ``participants.csv`` is not one), the files a glob matches, or the
  lines of a list file (``.txt``/``.list``; ``#`` comments, paths relative to the list file). One
  output folder per recording, named by its stem (two recordings with one stem are refused).
* **Participants** (:func:`read_participants`): ``--participants CSV`` (else ``participants.csv``
  in the input folder) with columns ``file`` (file name or stem) and ``participant``; a recording
  it does not name gets its stem (``participant_from`` says which).
* **Workers**: ``workers`` processes (spawned; each model gets ``threads`` or one CPU thread per
  worker). A bad recording never stops the study: its one-line error is its result.
* **Resume**: each recording's folder gets ``recording.json`` last (atomically), with its exit
  status and the fingerprint of its input file and the model's files
  (:func:`crossmodal_har.pairs.fingerprint.file_entry`, content hashes) and its settings
  (:func:`study_settings`). A re-run skips a recording whose marker says finished (0, or 3 with
  damaged parts listed), whose outputs exist and whose input, model and settings are unchanged; the
  rest is redone from scratch (outputs replaced atomically), so a study killed at any moment and run
  again gives exactly what one uninterrupted run gives.
* **Shards** (``--shard i/K``, 0 <= i < K): recording ``j`` (in stem order) is shard ``j % K``'s,
  for SLURM job arrays (docs/scale.md); each shard writes its recordings only, and ``collate`` (or
  a run without ``--shard``) writes the cohort table (:mod:`crossmodal_har.infer.cohort`).

The run ends with exit status 3 (:class:`~crossmodal_har.errors.PartialRunError`) when any
recording failed or was read in part; each is listed with its one line.
"""

from __future__ import annotations

import csv
import dataclasses
import glob
import logging
import os
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional, Tuple, Union

from crossmodal_har.config import build_config, from_dict, to_dict
from crossmodal_har.errors import DataError, PartialRunError, UserError
from crossmodal_har.infer.cohort import CohortResult, collate
from crossmodal_har.infer.malloc import keep_freed_blocks
from crossmodal_har.infer.predict import run_predict
from crossmodal_har.infer.predict_config import PredictConfig, PredictResult, parse_smooth
from crossmodal_har.io import atomic_write_json, guard_output_dir, read_json
from crossmodal_har.models.bundle import BUNDLE_META, BUNDLE_WEIGHTS
from crossmodal_har.pairs.fingerprint import compare_files, file_entry
from crossmodal_har.signals.devices import device_format
from crossmodal_har.signals.tables import CSV_SUFFIXES, PARQUET_SUFFIXES

log = logging.getLogger(__name__)

VERSION = 1
STUDY_MARK = "study.json"  # claims OUT_DIR for studies
RECORDING_MARK = "recording.json"  # a recording's result, written last
PREDICTIONS = "predictions.csv"
SUMMARY = "predictions.summary.json"
PARTICIPANTS = "participants.csv"
LIST_SUFFIXES = (".txt", ".list")
FINISHED = (0, 3)  # exit statuses of a recording whose outputs are complete
# PredictConfig keys that change no result (where the outputs go, memory, threads, --force)
NOT_SETTINGS = ("input", "out", "report", "timeline", "force", "threads", "chunk_rows")


def is_study(input_spec: str, fmt: Optional[str] = None) -> bool:
    """Whether ``--input`` names many recordings: a folder (without ``--format``: an Empatica export
    folder needs ``--format empatica``), a glob that is not itself a file, or a list file."""
    p = Path(input_spec)
    if p.is_dir():
        return fmt is None
    if p.exists():
        return p.suffix.lower() in LIST_SUFFIXES
    return any(c in input_spec for c in "*?[")


def _is_recording(p: Path) -> bool:
    return p.is_file() and p.name != PARTICIPANTS and (
        device_format(p) is not None or p.suffix.lower() in CSV_SUFFIXES + PARQUET_SUFFIXES)


def find_recordings(input_spec: str, fmt: Optional[str] = None) -> List[Path]:
    """The recordings ``input_spec`` names (a folder, a glob or a list file), in name order."""
    p = Path(input_spec)
    if p.is_dir():
        found = sorted(f for f in p.iterdir() if _is_recording(f))
    elif p.is_file():
        found = []
        for i, line in enumerate(p.read_text(encoding="utf-8-sig").splitlines(), 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            f = Path(line) if Path(line).is_absolute() else p.parent / line
            if not f.exists():
                raise DataError(p, f"no such recording {line!r}", line=i)
            found.append(f)
    else:
        found = sorted(Path(f) for f in glob.glob(input_spec) if Path(f).is_file() or fmt is not None)
    if not found:
        raise DataError(input_spec, "no recordings found (a folder of tables or device files, a glob, or a list file)")
    return found


def read_participants(path: Path) -> Dict[str, str]:
    """``file`` (a file name or stem) -> ``participant`` from a CSV with those two columns."""
    try:
        with open(path, encoding="utf-8-sig", newline="") as fh:
            rows = list(csv.reader(fh))
    except (OSError, UnicodeDecodeError) as exc:
        raise DataError(path, f"cannot read it: {exc}") from None
    if not rows or "file" not in rows[0] or "participant" not in rows[0]:
        raise DataError(path, "expected a header with the columns file and participant", line=1)
    fi, pi = rows[0].index("file"), rows[0].index("participant")
    out: Dict[str, str] = {}
    for i, row in enumerate(rows[1:], 2):
        if not any(c.strip() for c in row):
            continue
        if len(row) <= max(fi, pi) or not row[fi].strip() or not row[pi].strip():
            raise DataError(path, "a row needs a file and a participant", line=i)
        out[row[fi].strip()] = row[pi].strip()
    return out


@dataclass
class Recording:
    """One recording of a study: its file, output folder name and participant."""

    path: str
    stem: str
    participant: str
    participant_from: str


def parse_shard(shard: Optional[str]) -> Optional[Tuple[int, int]]:
    """``"i/K"`` -> ``(i, K)`` with 0 <= i < K; None -> None."""
    if shard is None:
        return None
    try:
        i, k = (int(x) for x in shard.split("/"))
    except ValueError:
        raise UserError(f"--shard: expected i/K (e.g. 0/4), got {shard!r}") from None
    if not 0 <= i < k:
        raise UserError(f"--shard {shard}: need 0 <= i < K")
    return i, k


@dataclass
class StudyConfig:
    """What a study adds to ``predict``'s settings (``PredictConfig``: ``input`` names the recordings,
    ``out`` is the study's folder).

    Attributes:
        workers: processes running recordings at once.
        shard: ``i/K``: only the recordings of shard i of K (SLURM job arrays).
        participants: CSV of ``file,participant`` (default: ``participants.csv`` in an input folder).
    """

    workers: int = 1
    shard: Optional[str] = None
    participants: Optional[str] = None

    def validate(self) -> None:
        if self.workers < 1:
            raise UserError("--workers must be >= 1")
        parse_shard(self.shard)


def plan(config: PredictConfig, study: StudyConfig) -> List[Recording]:
    """The study's recordings (all shards), with their participants; duplicate stems refused."""
    paths = find_recordings(config.input, config.format)
    table = Path(study.participants) if study.participants else (
        Path(config.input) / PARTICIPANTS if Path(config.input).is_dir() else None)
    names = read_participants(table) if table is not None and (study.participants or table.is_file()) else {}
    seen: Dict[str, Path] = {}
    recs = []
    for p in paths:
        stem = p.name[:-len(".gz")] if p.name.endswith(".gz") else p.name
        stem = Path(stem).stem
        if stem in seen:
            raise DataError(p, f"two recordings named {stem!r} ({seen[stem]} and {p}): one output folder each; "
                               "rename one")
        seen[stem] = p
        who = names.get(p.name, names.get(stem))
        recs.append(Recording(str(p), stem, who or stem, table.name if who else "file name"))
    return sorted(recs, key=lambda r: r.stem)


def study_settings(config: PredictConfig) -> Dict[str, Any]:
    """The settings a recording's result depends on (everything but where outputs go, memory, threads)."""
    out = {k: v for k, v in to_dict(config).items() if k not in NOT_SETTINGS}
    out["smooth"] = parse_smooth(config.smooth)  # "0" from the command line is 0
    return out


def _model_files(config: PredictConfig) -> List[Path]:
    files = [Path(config.model) / BUNDLE_META, Path(config.model) / BUNDLE_WEIGHTS]
    return files + ([config.onnx_file()] if config.chosen_runtime() == "onnx" else [])


def finished(out_dir: Path, rec: Recording, config: PredictConfig) -> Tuple[Optional[Dict[str, Any]], str]:
    """``(marker, "")`` for a recording whose outputs are complete and still those of its input, model
    and settings, else ``(None, why it is to be (re)done)``."""
    folder = out_dir / rec.stem
    try:
        mark = read_json(folder / RECORDING_MARK)
    except DataError:
        return None, "not finished"
    if not isinstance(mark, dict) or mark.get("version") != VERSION:
        return None, "its marker is from another version"
    if mark.get("exit_status") not in FINISHED:
        return None, "it failed"
    if mark.get("settings") != study_settings(config) or mark.get("participant") != rec.participant:
        return None, "the settings or its participant changed"
    if not all((folder / n).is_file() for n in (PREDICTIONS, SUMMARY)):
        return None, "outputs missing"
    why, _ = compare_files(mark.get("files"), [Path(rec.path), *_model_files(config)])
    return (mark, "") if why is None else (None, f"{why or 'its input or model files'} changed")


def run_recording(rec: Recording, config_dict: Dict[str, Any], out_dir: str, threads: Optional[int]) -> Dict[str, Any]:
    """Predict one recording of a study into ``out_dir/<stem>/`` and write its marker last; never
    raises for a bad recording (its one-line error and exit status are the result). Runs in a worker."""
    folder = Path(out_dir) / rec.stem
    folder.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    config = from_dict(PredictConfig, {**config_dict, "input": rec.path, "out": str(folder / PREDICTIONS),
                                       "report": str(folder), "timeline": None, "force": True,
                                       "threads": threads}, where="study")
    # the fingerprint is taken before reading: a file changed while it is read is redone next time
    files = [file_entry(p) for p in [Path(rec.path), *_model_files(config)]]
    status, error = 0, None
    try:
        result = run_predict(config, progress=False)
        if result.partial:
            status, error = 3, result.partial
    except UserError as exc:  # DataError, PartialRunError, ...: the recording's one line
        status, error = int(getattr(exc, "exit_code", 2)), str(exc)
    except Exception as exc:  # noqa: BLE001 -- a bug on one recording must not stop the study
        log.exception("%s: internal error", rec.path)
        status, error = 1, f"{rec.path}: internal error: {type(exc).__name__}: {exc}"
    mark = {"version": VERSION, **dataclasses.asdict(rec), "exit_status": status,
            "error": None if error is None else " ".join(error.split()), "settings": study_settings(config),
            "files": files, "elapsed_s": time.perf_counter() - t0}
    atomic_write_json(folder / RECORDING_MARK, mark)
    return mark


@dataclass
class StudyResult:
    """What :func:`run_study` did: per recording its marker (``skipped``: finished before), and the
    cohort table (None for a shard)."""

    out: Path
    marks: List[Dict[str, Any]]
    skipped: int
    cohort: Optional[CohortResult]

    @property
    def failed(self) -> List[Dict[str, Any]]:
        return [m for m in self.marks if m["exit_status"] != 0]

    def text(self) -> str:
        lines = [f"study: {len(self.marks)} recording(s) in {self.out} ({self.skipped} finished before, "
                 f"{len(self.marks) - self.skipped} run); {len(self.failed)} failed or partial"]
        lines += [f"  [{m['exit_status']}] {m['stem']}: {m['error']}" for m in self.failed]
        if self.cohort is not None:
            lines.append(self.cohort.text())
        return "\n".join(lines)

    def check_complete(self) -> None:
        """PartialRunError (exit status 3) when a recording failed or was read in part."""
        if self.failed:
            raise PartialRunError(f"{len(self.failed)} of {len(self.marks)} recording(s) failed or partial, "
                                  f"first: {self.failed[0]['error']} (all listed above and in the cohort table)")


def run_study(config: PredictConfig, study: StudyConfig) -> StudyResult:
    """Predict every recording ``config.input`` names into ``config.out/<stem>/`` (see the module
    docstring); then, without a shard, collate the cohort table."""
    study.validate()
    if config.report or config.timeline:
        raise UserError("--report/--timeline: a study writes each recording's report into OUT_DIR/<stem>/ "
                        "(no timeline); leave them out")
    recs = plan(config, study)
    shard = parse_shard(study.shard)
    if shard is not None:
        recs = [r for j, r in enumerate(recs) if j % shard[1] == shard[0]]
    out = Path(config.out)
    guard_output_dir(("--out", out), [("--input", config.input), ("--model", config.model),
                                      *[("--input", r.path) for r in recs]])
    if out.is_dir() and any(out.iterdir()) and not (out / STUDY_MARK).is_file() and not config.force:
        raise UserError(f"--out {out} exists, is not empty and holds no study ({STUDY_MARK}); choose another "
                        "folder or use --force")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(out / STUDY_MARK, {"version": VERSION, "kind": "crossmodal-har predict study"})
    marks: Dict[str, Dict[str, Any]] = {}
    todo = []
    for r in recs:
        m, why = finished(out, r, config)
        if m is not None:
            marks[r.stem] = m
        else:
            log.info("%s: to run (%s)", r.stem, why)
            todo.append(r)
    skipped = len(marks)
    log.info("study: %d recording(s), %d finished before, %d to run on %d worker(s)", len(recs), skipped, len(todo),
             study.workers)
    cfg = to_dict(config)
    threads = config.threads if config.threads is not None else (
        None if study.workers == 1 else max(1, (os.cpu_count() or 1) // study.workers))
    if study.workers == 1:
        for r in todo:
            marks[r.stem] = _logged(run_recording(r, cfg, str(out), threads), len(marks) + 1, len(recs))
    elif todo:
        # each worker process streams recordings until the study ends: glibc keeps its freed blocks
        with ProcessPoolExecutor(max_workers=study.workers, mp_context=get_context("spawn"),
                                 initializer=keep_freed_blocks) as pool:
            futures = {pool.submit(run_recording, r, cfg, str(out), threads): r for r in todo}
            for f in as_completed(futures):
                try:
                    m = f.result()
                except BrokenProcessPool:  # a worker was killed (out of memory?): redone by the next run
                    r = futures[f]
                    m = {"version": VERSION, **dataclasses.asdict(r), "exit_status": 1, "elapsed_s": 0.0,
                         "error": f"{r.path}: its worker process died (killed, out of memory?); run again to redo it"}
                marks[m["stem"]] = _logged(m, len(marks) + 1, len(recs))
    cohort = collate(out) if shard is None else None
    return StudyResult(out, [marks[r.stem] for r in recs], skipped, cohort)


def _logged(mark: Dict[str, Any], k: int, n: int) -> Dict[str, Any]:
    log.info("[%d/%d] %s: %s (%.1f s)", k, n, mark["stem"], "ok" if mark["exit_status"] == 0 else mark["error"],
             mark["elapsed_s"])
    return mark


def predict_any(flags: Mapping[str, Any], study_flags: Mapping[str, Any], *,
                progress: Optional[bool] = None) -> Union[PredictResult, StudyResult]:
    """``predict``'s job: one recording (:func:`~crossmodal_har.infer.predict.run_predict`) or, when
    ``input`` names many (:func:`is_study`), a study (:func:`run_study`). ``flags``: PredictConfig
    keys; ``study_flags``: StudyConfig keys (None = not given); ``progress``: one recording's bar
    (a study logs a line per recording)."""
    config = build_config(PredictConfig, flags=flags, where="predict")
    study = build_config(StudyConfig, flags=study_flags, where="predict")
    if is_study(config.input, config.format):
        return run_study(config, study)
    given = [f"--{k}" for k, v in study_flags.items() if v is not None]
    if given:
        raise UserError(f"{', '.join(given)}: only for a study (--input a folder, a glob or a list file)")
    return run_predict(config, progress=progress)
