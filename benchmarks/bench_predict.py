"""Streaming prediction benchmark: ``crossmodal-har predict`` vs merely parsing the same CSV.

    python benchmarks/bench_predict.py                 # 6 h and 24 h of 6-channel 50 Hz data
    python benchmarks/bench_predict.py --quick         # 15 min and 1 h (smoke run)
    python benchmarks/bench_predict.py --hours 6,24 --model patchtst-small

For each length it writes a CSV (``time,acc_x..gyro_z``; 24 h = 4.32 M rows) in a temporary
directory and runs, each in its own subprocess so that peak memory (``ru_maxrss`` from ``wait4``)
is that command's alone:

* ``parse``: ``pandas.read_csv`` of the whole file with the C engine and float64 columns, the
  parser ``predict`` streams with (the baseline; pyarrow's multi-threaded reader is shown too);
* ``predict --runtime torch`` and ``predict --runtime onnx`` with a small-but-real bundle
  (random-init ``patchtst-small`` + linear head, exported to ONNX).

Goals (issue 5): predict <= 3x the parse time; peak memory <= 1.5 GB and flat as the recording
grows. Wall times include interpreter start and imports (torch alone takes seconds); the
``in-process`` column is predict's own elapsed time from its summary JSON. The torch and ONNX
label columns are compared. Each subprocess is run ``--repeats`` times and the best time kept (the
machine may be shared; peak memory is the max).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
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
from crossmodal_har.models.artefacts import load_bundle
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


def make_bundle(out: Path, model: str) -> Path:
    import torch

    from crossmodal_har.infer.export import export_bundle
    from crossmodal_har.models.artefacts import save_bundle
    from crossmodal_har.models.classifier import WindowClassifier, build_head
    from crossmodal_har.models.registry import create_model
    from crossmodal_har.signals.types import PreprocessConfig

    torch.manual_seed(0)
    enc = create_model(model)
    spec = {"type": "linear", "in_features": enc.embed_dim, "num_classes": 6}
    head = build_head(spec)
    with torch.no_grad():
        head.weight.mul_(20.0)  # well-separated logits: label agreement is not a coin toss
    names = ["walking", "upstairs", "downstairs", "sitting", "standing", "lying"]
    save_bundle(out, WindowClassifier(enc, head, "zscore"), encoder_name=model, encoder_config=enc.model_cfg,
                head_spec=spec, preprocess=PreprocessConfig(), class_names=names)
    _, diff = export_bundle(out)
    print(f"bundle: {model} random init + linear head, ONNX parity max|diff| = {diff:.2g}")
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--hours", default=None, help="comma list of recording lengths (default 6,24)")
    ap.add_argument("--quick", action="store_true", help="0.25 h and 1 h")
    ap.add_argument("--model", default="patchtst-small")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--threads", type=int, default=None, help="passed to predict --threads")
    ap.add_argument("--keep", default=None, help="directory to keep the files in (default: a temp dir)")
    args = ap.parse_args(argv)
    hours = [float(h) for h in (args.hours or ("0.25,1" if args.quick else "6,24")).split(",")]
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


if __name__ == "__main__":
    sys.exit(main())
