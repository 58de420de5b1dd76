"""Streaming prediction benchmark: ``crossmodal-har predict`` vs the reader alone on the same file.

    python benchmarks/bench_predict.py                        # 1, 2, 4, 7 days; Parquet, CSV, AX6 .cwa
    python benchmarks/bench_predict.py --days 1,2 --formats parquet,cwa --threads 1
    python benchmarks/bench_predict.py --quick                # 0.05 and 0.1 days (smoke run)
    python benchmarks/bench_predict.py --hours 6,24 --model patchtst-small   # issue 5's 50 Hz CSV case
    python benchmarks/bench_predict.py --side-by-side --days 7 --hours 24    # issue 20: reader, skdh,
                                                     # predict, the model alone: wall, CPU, ratios
    python benchmarks/bench_predict.py --side-by-side --days 1 --hours 0 --gt3x-hours 24  # a 90 Hz .gt3x
    python benchmarks/bench_predict.py --side-by-side --days 1 --hours 0 --ax3-days 1,7  # AX3 (acc only)
    python benchmarks/bench_predict.py --side-by-side --days 1,7 --hours 24 --calibrate-off \
        --reference-src ../old-checkout   # also predict one pass, and an older checkout's reader and
                                          # predict (with its own ONNX export of the same weights) on
                                          # the same files, its predictions compared row by row

**Week scale (issue 14).** For each length and format it writes a simulated 100 Hz 6-channel wrist
recording with absolute (epoch) time — Parquet, CSV, or an Axivity AX6 ``.cwa`` file made with the
specification writer of ``tests/helpers/files_axivity_geneactiv.py`` (block by block) — and runs, each in its own
subprocess so that peak memory is that command's alone:

* ``reader``: :func:`crossmodal_har.signals.recording.iter_chunks` over the whole file (the chunks
  ``predict`` streams: parse, units, device decoding), nothing else;
* ``predict`` with the default settings (``--runtime auto``, which runs the bundle's ``model.onnx``
  with ONNX Runtime, ``--calibrate auto``, which reads the file twice, and ``--nonwear on``) and a
  bundle of the architecture ``train-classifier`` uses by default (``convgru``, random init, exported
  to ONNX as ``train-classifier`` exports it); ``--calibrate-off`` adds a one-pass run. The
  side-by-side run (issue 20) also times ``--runtime torch`` with ``--torch-too``.

Before timing, the package's modules (and the reference checkout's, ``--reference-src``) are
byte-compiled (``compileall``), as ``pip install`` does: where the environment sets
``PYTHONDONTWRITEBYTECODE`` (this build machine does) an editable checkout would otherwise compile
every module it imports at each start (0.1 s of a 24 h CSV's predict), which an installed package,
like the peers' (pandas, skdh, pygt3x), never does.

Goals: predict <= 3x the reader; peak RSS <= 1.5 GB and flat as the recording grows. Wall times
include interpreter start and imports. Peak RSS is ``/usr/bin/time``'s maximum resident set of the
command (``wait4``'s ``ru_maxrss`` of the child where ``/usr/bin/time`` is missing). Each file is
deleted after its runs (a week of CSV is ~5 GB).

**Issue 5's case** (``--hours``): 50 Hz CSV, ``predict`` (torch and ONNX) vs pandas' parse of the
same CSV, and the pipeline with a free model (``stream only``).
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RATE = 50.0
COLS = ["time", "acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]


def write_csv(path: Path, hours: float, seed: int = 0, block_s: float = 3600.0) -> int:
    """Simulated wrist-like IMU (gravity + gait bursts + noise), 5 decimals, written in blocks."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    rng = np.random.default_rng(seed)
    n_total = int(round(hours * 3600 * RATE))
    block = int(block_s * RATE)
    with open(path, "wb") as fh:
        writer = None
        for a in range(0, n_total, block):
            k = np.arange(a, min(n_total, a + block))
            t = k / RATE
            x = rng.normal(0, 0.02, (len(k), 6))
            x[:, 2] += 1.0
            active = (np.sin(2 * np.pi * t / 1800.0) > 0.3)  # bouts of activity every half hour
            x[active, 0] += 0.4 * np.sin(2 * np.pi * 1.8 * t[active])
            x[active, 4] += 1.0 * np.sin(2 * np.pi * 0.9 * t[active])
            cols = {"time": np.round(t, 3)}
            for j, c in enumerate(COLS[1:]):
                cols[c] = np.round(x[:, j], 5)
            table = pa.table(cols)
            if writer is None:
                writer = pacsv.CSVWriter(fh, table.schema)
            writer.write_table(table)
        writer.close()
    return n_total


PARSE_PANDAS = """
import sys, numpy as np, pandas as pd
cols = ["time","acc_x","acc_y","acc_z","gyro_x","gyro_y","gyro_z"]
df = pd.read_csv(sys.argv[1], dtype={c: np.float64 for c in cols}, engine="c")
print(len(df))
"""

# The streaming pipeline with a constant "model": reading, units, resampling, median filter,
# windows, quality checks and CSV writing, i.e. predict's cost when the model is free.
STREAM_ONLY = """
import sys, json, numpy as np
from crossmodal_har.models.bundle import load_bundle
from crossmodal_har.infer.predict import predict_file
from crossmodal_har.signals.units import Units
b = load_bundle(sys.argv[2])
C = len(b.class_names)
s = predict_file(sys.argv[1], sys.argv[3], lambda x: np.zeros((len(x), C), np.float32), b.preprocess,
                 b.class_names, Units(), progress=False)
print(json.dumps(s))
"""

PARSE_ARROW = """
import sys, pyarrow.csv as c
print(c.read_csv(sys.argv[1]).num_rows)
"""


def run_measured(cmd, repeats: int, env=None):
    """Best wall time over ``repeats`` runs and the max peak RSS (MB), each in a fresh process.

    Peak RSS comes from ``/usr/bin/time`` (its child is forked from that small program; a child
    forked from this Python process would report this process's own RSS as its high-water mark).
    Without ``/usr/bin/time``, ``wait4``'s ``ru_maxrss`` is used (an over-estimate).
    """
    best, peak, out = float("inf"), 0.0, ""
    timer = "/usr/bin/time" if os.path.exists("/usr/bin/time") else None
    for _ in range(repeats):
        with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss:
            full = [timer, "-f", "%M", "-o", rss.name, *map(str, cmd)] if timer else list(map(str, cmd))
            t0 = time.perf_counter()
            proc = subprocess.Popen(full, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env)
            stdout = proc.stdout.read()
            _, status, rusage = os.wait4(proc.pid, 0)
            wall = time.perf_counter() - t0
            code = os.waitstatus_to_exitcode(status)
            if code != 0:
                raise SystemExit(f"command failed ({code}): {' '.join(map(str, cmd))}")
            kb = float(open(rss.name).read().strip().splitlines()[-1]) if timer else rusage.ru_maxrss
        best = min(best, wall)
        peak = max(peak, kb / 1024.0)  # KB on Linux
        out = stdout
    return best, peak, out


def make_bundle(out: Path, model: str, channels: str = "acc+gyro") -> Path:
    import torch

    from crossmodal_har.infer.export import export_bundle
    from crossmodal_har.models.bundle import save_bundle
    from crossmodal_har.models.classifier import WindowClassifier, build_head
    from crossmodal_har.models.registry import create_model, with_input_channels
    from crossmodal_har.signals.types import PreprocessConfig

    torch.manual_seed(0)
    pre = PreprocessConfig(channels=channels)
    enc = create_model(model, **with_input_channels(model, {}, pre.n_channels))
    spec = {"type": "linear", "in_features": enc.embed_dim, "num_classes": 6}
    head = build_head(spec)
    with torch.no_grad():
        head.weight.mul_(20.0)  # well-separated logits: label agreement is not a coin toss
    names = ["walking", "upstairs", "downstairs", "sitting", "standing", "lying"]
    save_bundle(out, WindowClassifier(enc, head, "zscore"), encoder_name=model, encoder_config=enc.model_cfg,
                head_spec=spec, preprocess=pre, class_names=names)
    _, diff = export_bundle(out)
    print(f"bundle: {model} ({channels}) random init + linear head, ONNX parity max|diff| = {diff:.2g}")
    return out


def reference_bundle(bundle: Path, out: Path, ref_env: dict) -> Path:
    """A copy of ``bundle`` whose ``model.onnx`` the reference code exported (the same weights): the
    reference predict runs the graph its own ``train-classifier``/``export`` would have written."""
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(bundle, out)
    (out / "model.onnx").unlink()
    done = subprocess.run([sys.executable, "-m", "crossmodal_har", "-q", "export", "--model", str(out), "--format",
                           "onnx", "--out", str(out / "model.onnx")], env=ref_env, capture_output=True, text=True)
    if done.returncode:
        raise SystemExit(f"the reference code could not export {out}:\n{done.stderr.strip()}")
    return out


def legacy_main(args) -> int:
    """The 50 Hz CSV case of issue 5: predict vs pandas' parse of the same CSV (``--hours``)."""
    hours = [float(h) for h in args.hours.split(",")]
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"model: {args.model}; predict --threads {args.threads or 'default'}")
    print(f"machine: {platform.node()} {os.cpu_count()} CPUs, load average {load[0]:.1f} (shared machine: "
          "other jobs may slow every figure)")
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(os.cpu_count())))
    tmp = tempfile.TemporaryDirectory(prefix="bench_predict_") if args.keep is None else None
    root = Path(args.keep or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    bundle = make_bundle(root / "bundle", args.model)
    rows = []
    for h in hours:
        csv = root / f"rec_{h:g}h.csv"
        t0 = time.perf_counter()
        n = write_csv(csv, h)
        print(f"\n{h:g} h: {n:,} rows, {csv.stat().st_size / 1e6:.0f} MB written in {time.perf_counter() - t0:.1f} s")
        parse_s, parse_mb, _ = run_measured([sys.executable, "-c", PARSE_PANDAS, str(csv)], args.repeats, env)
        arrow_s, arrow_mb, _ = run_measured([sys.executable, "-c", PARSE_ARROW, str(csv)], args.repeats, env)
        print(f"  parse  pandas  {parse_s:7.1f} s  peak {parse_mb:6.0f} MB   (pyarrow {arrow_s:.1f} s, {arrow_mb:.0f} MB)")
        so_s, so_mb, so_out = run_measured([sys.executable, "-c", STREAM_ONLY, str(csv), str(bundle),
                                            str(root / "stream_only.csv")], args.repeats, env)
        so_in = json.loads(so_out.strip().splitlines()[-1])["elapsed_s"]
        print(f"  stream only    {so_s:7.1f} s  peak {so_mb:6.0f} MB   in-process {so_in:.1f} s (no model: "
              f"read, resample, filter, windows, quality, write); ratio to parse {so_in / parse_s:.2f}x in-process")
        labels = {}
        for rt in ("torch", "onnx"):
            out = root / f"pred_{h:g}h_{rt}.csv"
            cmd = [sys.executable, "-m", "crossmodal_har", "-q", "predict", "--model", str(bundle), "--input",
                   str(csv), "--out", str(out), "--runtime", rt, "--force"] + \
                (["--threads", str(args.threads)] if args.threads else [])
            wall, mb, _ = run_measured(cmd, args.repeats, env)
            summ = json.loads(out.with_name(out.stem + ".summary.json").read_text())
            inproc = summ["elapsed_s"]
            print(f"  predict {rt:<6} {wall:7.1f} s  peak {mb:6.0f} MB   in-process {inproc:.1f} s "
                  f"(model {summ['model_seconds']:.1f} s), {summ['windows']:,} windows; "
                  f"ratio to parse {wall / parse_s:.2f}x (in-process {inproc / parse_s:.2f}x)")
            import pandas as pd

            labels[rt] = pd.read_csv(out, usecols=["label"], keep_default_na=False)["label"].to_numpy()
            rows.append((h, rt, parse_s, wall, inproc, mb))
        agree = float(np.mean(labels["torch"] == labels["onnx"])) if len(labels["torch"]) else float("nan")
        print(f"  torch vs onnx labels agree on {100 * agree:.3f} % of {len(labels['torch']):,} rows")
    print("\nsummary (goal: predict <= 3x parse, peak <= 1500 MB and flat with length)")
    for h, rt, parse_s, wall, inproc, mb in rows:
        ok = "ok" if wall <= 3 * parse_s and mb <= 1500 else "MISSED"
        print(f"  goal {ok:<6} {h:g} h {rt:<5}: ratio {wall / parse_s:.2f}x wall ({inproc / parse_s:.2f}x "
              f"in-process), peak {mb:.0f} MB")
    peaks = {}
    for h, rt, *_rest, mb in rows:
        peaks.setdefault(rt, []).append((h, mb))
    for rt, v in peaks.items():
        if len(v) > 1:
            print(f"  peak-memory ratio {rt}: {v[-1][1] / v[0][1]:.2f} ({v[-1][0]:g} h vs {v[0][0]:g} h)")
    if tmp is not None:
        tmp.cleanup()
    return 0




# ------------------------------------------------------------------------ week scale (issue 14)

WEEK_RATE = 100.0
START_EPOCH = 1_780_000_000.0  # 2026-05-28T20:26:40Z: files with absolute time


def week_signal(n0: int, n: int, rng, rate: float = WEEK_RATE) -> np.ndarray:
    """Samples ``[n0, n0 + n)`` of a simulated wrist week at ``rate``: 6 channels, g and rad/s.

    The wrist changes orientation every 10 min (so that autocalibration has still points all round
    the sphere), rests still for 2 of every 8 minutes, walks in bouts, and lies on a table
    (non-wear) for 2 h a day; the accelerometer has a small offset and gain error."""
    k = np.arange(n0, n0 + n)
    t = k / rate
    seg = (t // 600).astype(np.int64)
    # orientation per 10-min segment, deterministic in the segment index (chunk-independent)
    phi = (seg * 2.399963) % (2 * np.pi)
    cz = ((seg * 0.618034) % 2.0) - 1.0
    sz = np.sqrt(1 - cz ** 2)
    g = np.stack([sz * np.cos(phi), sz * np.sin(phi), cz], axis=1)
    x = np.empty((n, 6))
    x[:, :3] = g + rng.normal(0, 0.003, (n, 3))
    x[:, 3:] = rng.normal(0, 0.01, (n, 3))
    minute = (t // 60).astype(np.int64) % 8
    moving = minute >= 2
    walk = moving & ((t // 1800).astype(np.int64) % 3 == 0)
    x[moving, :3] += rng.normal(0, 0.05, (int(moving.sum()), 3))
    x[moving, 3:] += rng.normal(0, 0.3, (int(moving.sum()), 3))
    x[walk, 0] += 0.4 * np.sin(2 * np.pi * 1.8 * t[walk])
    x[walk, 4] += 1.0 * np.sin(2 * np.pi * 0.9 * t[walk])
    table = (t % 86400) >= 79200  # 22:00-24:00 of each day (from the start): lying flat on a table
    x[table, :3] = [0.0, 0.0, 1.0] + rng.normal(0, 0.002, (int(table.sum()), 3))
    x[table, 3:] = rng.normal(0, 0.002, (int(table.sum()), 3))
    x[:, :3] = x[:, :3] * [1.01, 0.99, 1.015] + [0.02, -0.015, 0.01]  # miscalibration
    return x


def write_week(path: Path, days: float, fmt: str, block_s: float = 3600.0, seed: int = 0) -> int:
    """Write ``days`` of :func:`week_signal` as Parquet, CSV (epoch-seconds time), Axivity AX6 .cwa
    (``cwa``) or AX3 .cwa (``ax3``: accelerometer only, packed samples, as most AX3 studies record)."""
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    n_total = int(round(days * 86400 * WEEK_RATE))
    block = int(block_s * WEEK_RATE)
    if fmt in ("cwa", "ax3"):
        per = 40 if fmt == "cwa" else 120  # samples a sector: whole sectors
        block -= block % per
        n_total -= n_total % per
        return _write_cwa_blocks(path, n_total, block, rng, ax3=fmt == "ax3")
    writer = None
    with open(path, "wb") as fh:
        for a in range(0, n_total, block):
            m = min(block, n_total - a)
            x = week_signal(a, m, rng)
            t = START_EPOCH + np.arange(a, a + m) / WEEK_RATE
            cols = {"time": np.round(t, 3) if fmt == "csv" else t}
            for j, c in enumerate(COLS[1:]):
                cols[c] = np.round(x[:, j], 5) if fmt == "csv" else x[:, j]
            table = pa.table(cols)
            if writer is None:
                if fmt == "csv":
                    import pyarrow.csv as pacsv

                    writer = pacsv.CSVWriter(fh, table.schema)
                else:
                    import pyarrow.parquet as pq

                    writer = pq.ParquetWriter(fh, table.schema)
            writer.write_table(table)
        writer.close()
    return n_total


def _write_cwa_blocks(path: Path, n_total: int, block: int, rng, ax3: bool = False) -> int:
    """AX6 (or packed AX3, ``ax3``) .cwa through the specification writer of
    tests/helpers/files_axivity_geneactiv.py, one block at a time (it holds a whole file in memory):
    each block's sectors get the file's running sequence ids and their checksums are recomputed."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from helpers.files_axivity_geneactiv import write_cwa

    with open(path, "wb") as out, tempfile.TemporaryDirectory() as td:
        seq = 0
        for a in range(0, n_total, block):
            m = min(block, n_total - a)
            x = week_signal(a, m, rng)
            part = Path(td) / "part.cwa"
            if ax3:  # packed samples hold +-8 g
                write_cwa(part, np.clip(x[:, :3], -7.9, 7.9), START_EPOCH + a / WEEK_RATE, WEEK_RATE, packed=True)
            else:
                write_cwa(part, x[:, :3], START_EPOCH + a / WEEK_RATE, WEEK_RATE, gyro_dps=np.degrees(x[:, 3:]))
            raw = part.read_bytes()
            header, body = raw[:1024], bytearray(raw[1024:])
            if a == 0:
                out.write(header)
            sec = np.frombuffer(body, dtype=np.uint8).reshape(-1, 512).copy()
            ids = seq + np.arange(len(sec), dtype=np.uint32)
            sec[:, 10:14] = ids.astype("<u4").view(np.uint8).reshape(-1, 4)
            words = sec[:, :510].copy().view("<u2").astype(np.uint64).sum(axis=1)
            sec[:, 510:512] = ((-words.astype(np.int64)) & 0xFFFF).astype("<u2").view(np.uint8).reshape(-1, 2)
            out.write(sec.tobytes())
            seq += len(sec)
    return n_total


READER_ONLY = """
import sys, time, json
from crossmodal_har.signals.recording import iter_chunks
from crossmodal_har.signals.units import Units
t0 = time.perf_counter()
n = 0
for c in iter_chunks(sys.argv[1], Units(), 500_000):
    n += len(c.t)
print(json.dumps({"rows": n, "seconds": time.perf_counter() - t0}))
"""


def week_main(args) -> int:
    """Reader alone vs ``predict`` (ONNX Runtime) on the same file, per format and length."""
    days = [float(d) for d in (args.days or ("0.05,0.1" if args.quick else "1,2,4,7")).split(",")]
    formats = args.formats.split(",")
    load = os.getloadavg() if hasattr(os, "getloadavg") else (float("nan"),) * 3
    print(f"week scale: {WEEK_RATE:g} Hz 6-channel, days {days}, formats {formats}; bundle {args.model} "
          f"(random init, ONNX Runtime); predict --threads {args.threads or 'default'}, defaults otherwise "
          "(--calibrate auto: two passes over the file; --nonwear on)")
    print(f"machine: {platform.node()} {os.cpu_count()} CPUs, load average {load[0]:.1f}")
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", str(os.cpu_count())))
    tmp = tempfile.TemporaryDirectory(prefix="bench_predict_") if args.keep is None else None
    root = Path(args.keep or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    bundle = make_bundle(root / "bundle", args.model)
    rows = []
    suffix = {"parquet": ".parquet", "csv": ".csv", "cwa": ".cwa"}
    for d in days:
        for fmt in formats:
            f = root / f"rec_{d:g}d{suffix[fmt]}"
            t0 = time.perf_counter()
            n = write_week(f, d, fmt)
            print(f"\n{d:g} d {fmt}: {n:,} samples, {f.stat().st_size / 1e6:,.0f} MB written in "
                  f"{time.perf_counter() - t0:.0f} s")
            rd_s, rd_mb, rd_out = run_measured([sys.executable, "-c", READER_ONLY, str(f)], args.repeats, env)
            rd_in = json.loads(rd_out.strip().splitlines()[-1])["seconds"]
            print(f"  reader   {rd_s:7.1f} s  peak {rd_mb:6.0f} MB   (in-process {rd_in:.1f} s)")
            variants = [("predict", [])] + ([("predict --calibrate off", ["--calibrate", "off"])]
                                             if args.calibrate_off else [])
            for name, extra in variants:
                out = root / f"pred_{d:g}d_{fmt}.csv"
                units = [] if fmt == "cwa" else ["--acc-unit", "g", "--gyro-unit", "rad/s", "--time-unit", "s"]
                cmd = [sys.executable, "-m", "crossmodal_har", "-q", "predict", "--model", str(bundle), "--input",
                       str(f), "--out", str(out), "--force", *units, *extra] + \
                    (["--threads", str(args.threads)] if args.threads else [])
                wall, mb, _ = run_measured(cmd, args.repeats, env)
                summ = json.loads(out.with_name(out.stem + ".summary.json").read_text())
                cal = summ.get("calibration", {})
                print(f"  {name:<8} {wall:7.1f} s  peak {mb:6.0f} MB   in-process {summ['elapsed_s']:.1f} s (model "
                      f"{summ['model_seconds']:.1f} s), {summ['windows']:,} windows; {wall / rd_s:.2f}x the reader; "
                      f"calibration {'applied' if cal.get('applied') else 'not applied'} "
                      f"({cal.get('hours_scanned', 0):.0f} h scanned); non-wear "
                      f"{summ['nonwear'].get('seconds', 0) / 3600:.1f} h")
                rows.append((d, fmt, name, rd_s, rd_mb, wall, mb, summ["model_seconds"]))
                out.unlink()
            f.unlink()  # disk: a week of CSV is ~4 GB
    print("\n| days | format | reader | " + " | ".join(sorted({r[2] for r in rows})) + " | peak RSS reader / predict |")
    print("|---|---|---|" + "---|" * len({r[2] for r in rows}) + "---|")
    for d in days:
        for fmt in formats:
            rs = [r for r in rows if r[0] == d and r[1] == fmt]
            if not rs:
                continue
            cells = " | ".join(f"{r[5]:.0f} s ({r[5] / r[3]:.1f}x; model {r[7]:.0f} s)" for r in rs)
            print(f"| {d:g} | {fmt} | {rs[0][3]:.1f} s | {cells} | {rs[0][4]:.0f} / "
                  f"{max(r[6] for r in rs):.0f} MB |")
    print("\ngoal: predict <= 3x the reader; peak RSS flat and <= 1500 MB")
    for fmt in formats:
        v = [(r[0], r[6]) for r in rows if r[1] == fmt and r[2] == "predict"]
        if len(v) > 1:
            print(f"  {fmt}: peak RSS {v[0][1]:.0f} MB at {v[0][0]:g} d -> {v[-1][1]:.0f} MB at {v[-1][0]:g} d "
                  f"({v[-1][1] / v[0][1]:.2f}x)")
    if tmp is not None:
        tmp.cleanup()
    return 0


# ------------------------------------------------------------------- side by side (issue 20)

PYGT3X_READ = """
import sys, json
from pygt3x.reader import FileReader
with FileReader(sys.argv[1]) as f:
    print(json.dumps({"rows": int(len(f.to_pandas()))}))
"""

SKDH_READ = """
import sys, json
from skdh.io import ReadCwa
r = ReadCwa().predict(file=sys.argv[1])
print(json.dumps({"rows": int(len(r["time"]))}))
"""

# The model alone on as many windows as predict classified (random windows of the bundle's shape:
# the cost of convgru/ONNX does not depend on the values), in predict's batches and threads.
MODEL_ONLY = """
import os, sys, json, time, numpy as np
from crossmodal_har.models.bundle import read_bundle
from crossmodal_har.infer.runtime import OnnxRunner
b = read_bundle(sys.argv[1], with_model=False)  # no torch: predict's ONNX path does not import it
n, bs = int(sys.argv[2]), int(sys.argv[3])
threads = int(sys.argv[4]) or int(os.environ.get("OMP_NUM_THREADS", "1"))  # predict's default: cli.apply_threads
run = OnnxRunner(b.path / "model.onnx", threads=threads)
x = np.random.default_rng(0).normal(size=(bs, b.preprocess.window_samples, 6)).astype(np.float32)
t0 = time.perf_counter()
for a in range(0, n, bs):
    run(x[:min(bs, n - a)])
print(json.dumps({"windows": n, "seconds": time.perf_counter() - t0}))
"""


def run_timed(cmd, env=None):
    """Wall, CPU (user + system) seconds and peak RSS (MB) of one command in a fresh process."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as tf:
        t0 = time.perf_counter()
        proc = subprocess.run(["/usr/bin/time", "-f", "%U %S %M", "-o", tf.name, *map(str, cmd)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise SystemExit(f"command failed ({proc.returncode}): {' '.join(map(str, cmd))}\n{proc.stderr[-800:]}")
        u, s_, m = open(tf.name).read().strip().splitlines()[-1].split()
    return wall, float(u) + float(s_), float(m) / 1024.0, proc.stdout


def compare_predictions(ref: Path, new: Path) -> str:
    """Statuses, labels and probabilities of two predict CSVs of the same recording, row by row."""
    import pandas as pd

    a = pd.read_csv(ref, keep_default_na=False, dtype=str)
    b = pd.read_csv(new, keep_default_na=False, dtype=str)
    if len(a) != len(b) or list(a.columns) != list(b.columns):
        return f"predictions differ in shape: {a.shape} reference vs {b.shape}"
    status = float(np.mean(a["status"].to_numpy() == b["status"].to_numpy()))
    ok = (a["status"] == "ok").to_numpy()
    labels = float(np.mean(a["label"].to_numpy()[ok] == b["label"].to_numpy()[ok])) if ok.any() else float("nan")
    p = [c for c in a.columns if c.startswith("p_")]
    both = ok & (b["status"] == "ok").to_numpy()
    dp = float(np.abs(a.loc[both, p].astype(float).to_numpy() - b.loc[both, p].astype(float).to_numpy()).max()) \
        if both.any() else 0.0
    same = ref.read_bytes() == new.read_bytes()
    return (f"vs the reference code: {len(a):,} rows, statuses identical on {100 * status:.3f} %, labels on "
            f"{100 * labels:.3f} % of ok rows, max |dp| {dp:.2g}" + (" (byte-identical files)" if same else ""))


def write_gt3x_hours(path: Path, hours: float, rate: int = 90) -> int:
    """An ActiGraph .gt3x (accelerometer, ``rate`` Hz: 90 -> 50 Hz is not a whole ratio) through the
    specification writer of tests/helpers/files_actigraph_apdm_empatica.py."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    from helpers.files_actigraph_apdm_empatica import smooth_signal, write_gt3x

    n = int(hours * 3600 * rate)
    write_gt3x(path, smooth_signal(n, rate, seed=2), rate, int(START_EPOCH))
    return n


def side_by_side(args) -> int:
    """Issue 20: per file, our reader, skdh's ReadCwa (.cwa) or pandas' parse (CSV), predict with
    the default settings, and the model alone on as many windows: wall, CPU, peak RSS, ratios."""
    days = [float(d) for d in (args.days or "7").split(",")]
    hours = [h for h in (float(x) for x in (args.hours or "24").split(",")) if h > 0]  # --hours 0: no CSV
    load = os.getloadavg()
    print(f"side by side (issue 20): {days} d of 100 Hz AX6 .cwa, {hours} h of 50 Hz CSV; bundle {args.model} "
          f"(random init, ONNX Runtime); predict --threads {args.threads or 'default'}, default settings")
    print(f"machine: {platform.node()} {os.cpu_count()} CPUs ({platform.processor() or platform.machine()}), "
          f"load average {load[0]:.1f} at the start (shared machine: every figure is slowed alike; the "
          "ratios are measured side by side, one command after the other)")
    env = dict(os.environ)
    tmp = tempfile.TemporaryDirectory(prefix="bench_predict_") if args.keep is None else None
    root = Path(args.keep or tmp.name)
    root.mkdir(parents=True, exist_ok=True)
    bundle = make_bundle(root / "bundle", args.model)
    from crossmodal_har.infer.predict_config import PredictConfig

    # predict's batch for ONNX Runtime (its default, unless --batch-size)
    bs = PredictConfig(model="m", input="i", out="o").model_batch_size("onnx")
    table = []
    cases = [("cwa", d, f"{d:g} d .cwa 100 Hz") for d in days] + [("csv", h, f"{h:g} h CSV 50 Hz") for h in hours] \
        + [("ax3", d, f"{d:g} d AX3 .cwa 100 Hz") for d in (float(d) for d in args.ax3_days.split(",") if d)] \
        + [("gt3x", h, f"{h:g} h .gt3x 90 Hz") for h in (float(h) for h in args.gt3x_hours.split(",") if h)]
    acc_bundle = make_bundle(root / "bundle_acc", args.model, channels="acc") \
        if args.gt3x_hours or args.ax3_days else None
    ref_env = dict(env, PYTHONPATH=str(Path(args.reference_src).resolve() / "src")) if args.reference_src else None
    ref_bundles = {b: reference_bundle(b, b.with_name(b.name + "_ref"), ref_env)
                   for b in (bundle, acc_bundle) if b is not None} if ref_env else {}
    for fmt, size, name in cases:
        f = root / (f"rec_{size:g}d.cwa" if fmt == "cwa" else f"rec_{size:g}d_ax3.cwa" if fmt == "ax3"
                    else f"rec_{size:g}h.{fmt}")
        n = write_week(f, size, fmt) if fmt in ("cwa", "ax3") else write_csv(f, size) if fmt == "csv" else \
            write_gt3x_hours(f, size)
        model = acc_bundle if fmt in ("gt3x", "ax3") else bundle
        print(f"\n{name}: {n:,} samples, {f.stat().st_size / 1e6:,.0f} MB")
        res = {}
        res["reader"] = run_timed([sys.executable, "-c", READER_ONLY, f], env)
        if ref_env:
            res["reader (reference)"] = run_timed([sys.executable, "-c", READER_ONLY, f], ref_env)
        if fmt in ("cwa", "ax3"):
            res["skdh ReadCwa"] = run_timed([sys.executable, "-c", SKDH_READ, f], env)
        elif fmt == "gt3x":
            res["pygt3x"] = run_timed([sys.executable, "-c", PYGT3X_READ, f], env)
        else:
            res["pandas parse"] = run_timed([sys.executable, "-c", PARSE_PANDAS, f], env)
        out = root / "pred.csv"
        units = ["--acc-unit", "g", "--gyro-unit", "rad/s", "--time-unit", "s"] if fmt == "csv" else []
        threads = ["--threads", str(args.threads)] if args.threads else []
        res["predict"] = run_timed([sys.executable, "-m", "crossmodal_har", "-q", "predict", "--model", model,
                                    "--input", f, "--out", out, "--force", *units, *threads], env)
        summ = json.loads(out.with_name(out.stem + ".summary.json").read_text())
        print(f"  predict's runtime: {summ['runtime']} (--runtime {summ.get('runtime_option', 'torch')})")
        if args.torch_too:
            res["predict --runtime torch"] = run_timed(
                [sys.executable, "-m", "crossmodal_har", "-q", "predict", "--model", model, "--input", f, "--out",
                 root / "pred_torch.csv", "--runtime", "torch", "--force", *units, *threads], env)
        n_win = int(summ["windows"])
        if args.calibrate_off:  # one pass: what the calibration's first pass costs
            res["predict, calibrate off"] = run_timed(
                [sys.executable, "-m", "crossmodal_har", "-q", "predict", "--model", model, "--input", f, "--out",
                 root / "pred_off.csv", "--force", "--calibrate", "off", *units, *threads], env)
        res["model alone"] = run_timed([sys.executable, "-c", MODEL_ONLY, model, n_win, bs, args.threads or 0], env)
        if ref_env:  # the same predict command with another version of the code (and its export)
            ref_out = root / "pred_ref.csv"
            res["predict (reference)"] = run_timed([sys.executable, "-m", "crossmodal_har", "-q", "predict", "--model",
                                                    ref_bundles[model], "--input", f, "--out", ref_out, "--runtime",
                                                    "onnx", "--force", *units], ref_env)
            print("  " + compare_predictions(ref_out, out))
        ref = res["reader"]
        for k, (wall, cpu, mb, _) in res.items():
            print(f"  {k:<22} wall {wall:7.1f} s ({wall / ref[0]:5.2f}x reader)   CPU {cpu:7.1f} s "
                  f"({cpu / ref[1]:5.2f}x)   peak RSS {mb:6.0f} MB")
        model_in = json.loads(res["model alone"][3].strip().splitlines()[-1])["seconds"]
        print(f"  predict: {n_win:,} windows, in-process {summ['elapsed_s']:.1f} s (model {summ['model_seconds']:.1f} s "
              f"on its worker thread); the model alone in-process {model_in:.1f} s")
        table.append((name, res))
        f.unlink()
    cols = ["reader"] + (["reader (reference)"] if args.reference_src else []) + \
        ["skdh ReadCwa / pandas parse / pygt3x", "predict", "model alone"] + \
        (["predict (reference)"] if args.reference_src else [])
    print("\n| recording | " + " | ".join(cols) + " | predict / reader (wall, CPU) | predict / peer (wall) | "
          + ("reference / reader (wall, CPU) | " if args.reference_src else "") + "peak RSS predict |")
    print("|---" * (len(cols) + 4 + bool(args.reference_src)) + "|")
    for name, res in table:
        peer = res.get("skdh ReadCwa") or res.get("pandas parse") or res.get("pygt3x")
        cells = [res["reader"]] + ([res["reader (reference)"]] if args.reference_src else []) + \
            [peer, res["predict"], res["model alone"]] + ([res["predict (reference)"]] if args.reference_src else [])
        print(f"| {name} | " + " | ".join(f"{w:.1f} s wall, {c:.1f} s CPU" for w, c, _, _ in cells)
              + f" | {res['predict'][0] / res['reader'][0]:.2f}x, {res['predict'][1] / res['reader'][1]:.2f}x"
              + f" | {res['predict'][0] / peer[0]:.2f}x"
              + (f" | {res['predict (reference)'][0] / res['reader'][0]:.2f}x, "
                 f"{res['predict (reference)'][1] / res['reader'][1]:.2f}x" if args.reference_src else "")
              + f" | {res['predict'][2]:.0f} MB |")
    if tmp is not None:
        tmp.cleanup()
    return 0


def byte_compile(src: Path) -> None:
    """The byte code of a checkout's package, written next to its modules as ``pip install`` writes
    an installed package's (see the module's docstring)."""
    if not (src / "crossmodal_har").is_dir():  # compileall only prints a line for a folder that is not there
        raise SystemExit(f"no crossmodal_har package in {src}")
    if not compileall.compile_dir(str(src), quiet=1):
        raise SystemExit(f"cannot byte-compile {src}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--days", default=None, help="comma list of recording lengths in days (default 1,2,4,7)")
    ap.add_argument("--formats", default="parquet,csv,cwa", help="comma list of parquet, csv, cwa (AX6)")
    ap.add_argument("--quick", action="store_true", help="0.05 and 0.1 days (smoke run)")
    ap.add_argument("--calibrate-off", action="store_true", help="also time predict --calibrate off")
    ap.add_argument("--hours", default=None,
                    help="instead: the 50 Hz CSV case of issue 5 (predict vs pandas' parse), e.g. 6,24")
    ap.add_argument("--model", default="convgru", help="bundle architecture (default: train-classifier's)")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="passed to predict --threads")
    ap.add_argument("--keep", default=None, help="directory to keep the files in (default: a temp dir)")
    ap.add_argument("--reference-src", default=None, metavar="DIR",
                    help="--side-by-side: also run predict with the code of this checkout (DIR/src) and compare "
                         "its predictions row by row (statuses, labels, probabilities)")
    ap.add_argument("--gt3x-hours", default="", metavar="H[,H]",
                    help="--side-by-side: also a 90 Hz ActiGraph .gt3x of these lengths (an accelerometer-only "
                         "bundle; 90 -> 50 Hz is not a whole ratio), against pygt3x's reader")
    ap.add_argument("--ax3-days", default="", metavar="D[,D]",
                    help="--side-by-side: also an AX3 .cwa of these lengths (accelerometer only, packed samples, "
                         "100 Hz) with an accelerometer-only bundle, against skdh's reader")
    ap.add_argument("--torch-too", action="store_true",
                    help="--side-by-side: also time predict --runtime torch (the runtime without an ONNX export)")
    ap.add_argument("--side-by-side", action="store_true",
                    help="issue 20: reader, skdh/pandas, predict and the model alone per file (--days for the "
                         ".cwa, default 7; --hours for the 50 Hz CSV, default 24)")
    args = ap.parse_args(argv)
    byte_compile(Path(__file__).resolve().parents[1] / "src")
    if args.reference_src:
        byte_compile(Path(args.reference_src).resolve() / "src")
    if args.side_by_side:
        return side_by_side(args)
    return legacy_main(args) if args.hours else week_main(args)


if __name__ == "__main__":
    sys.exit(main())
