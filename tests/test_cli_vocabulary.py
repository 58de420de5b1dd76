"""One command-line vocabulary (issue 21 item 3): --arch / --model, one --device, --threads on every command that
computes, global flags on either side of the command, help in pipeline order with one line per command, help
texts without %% or rst markup, error messages that point at what an installed user has."""

import argparse
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from crossmodal_har.cli import PIPELINE_ORDER, apply_threads, build_parser, main

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "crossmodal_har"
MODEL_COMMANDS = ("pretrain", "zeroshot", "evaluate", "train-classifier", "predict", "embed")
COMPUTE_COMMANDS = MODEL_COMMANDS + ("simulate", "ingest", "export", "demo")


def subparsers():
    p = build_parser()
    return next(a for a in p._actions if isinstance(a, argparse._SubParsersAction)).choices


def top_help(columns=80):
    env = {**os.environ, "COLUMNS": str(columns), "PYTHONPATH": str(SRC.parent)}
    return subprocess.run([sys.executable, "-m", "crossmodal_har", "--help"], capture_output=True, text=True,
                          env=env, check=True).stdout


def test_help_lists_commands_in_pipeline_order_one_line_each():
    text = top_help()
    block = text.split("COMMAND\n", 1)[1].split("\noptions:", 1)[0].strip("\n").splitlines()
    names = [ln.split()[0] for ln in block]
    assert all(re.match(r"    \S+ {2,}\S", ln) for ln in block), block  # name and help on one line
    assert names == [n for n in PIPELINE_ORDER if n in names] and set(names) == set(subparsers())
    assert names.index("ingest") < names.index("pretrain") < names.index("evaluate") < names.index("predict")


def test_help_texts_are_proofread():
    for name, sp in subparsers().items():
        text = sp.format_help()
        assert "%%" not in text and "`" not in text, name
        assert "docs/" not in text, name
    tc = subparsers()["train-classifier"].format_help()
    assert "Default protocol: supervised" in tc


@pytest.mark.parametrize("argv", [["predict", "--model", "m", "--input", "x.csv", "--out", "o.csv", "-q"],
                                  ["-q", "predict", "--model", "m", "--input", "x.csv", "--out", "o.csv"]])
def test_global_flags_before_or_after_the_command(argv):
    args = build_parser().parse_args(argv)
    assert args.quiet is True and args.verbose == 0
    args = build_parser().parse_args(["-v", "formats"])  # a flag before is not reset by the command's parser
    assert args.verbose == 1 and args.quiet is False
    assert build_parser().parse_args(["formats", "-vv"]).verbose == 2


def test_predict_with_quiet_after_the_command_runs(tmp_path, capsys):
    from tests.helpers.bundles import UNITS, make_bundle, make_recording

    bundle, rec = make_bundle(tmp_path / "b"), make_recording(tmp_path / "r.csv", seconds=60)
    rc = main(["predict", "--model", str(bundle), "--input", str(rec), "--out", str(tmp_path / "p.csv"), *UNITS, "-q"])
    assert rc == 0 and (tmp_path / "p.csv").is_file()
    import logging

    assert logging.getLogger().level == logging.WARNING  # -q after the command took effect


@pytest.mark.parametrize("command", ["evaluate", "train-classifier"])
def test_arch_names_the_architecture_and_old_model_spelling_warns(command, capsys):
    base = [command, "--dataset", "d", "--out", "o"]
    assert build_parser().parse_args(base + ["--arch", "convgru-tiny"]).model == "convgru-tiny"
    assert "deprecated" not in capsys.readouterr().err
    assert build_parser().parse_args(base + ["--model", "convgru-tiny"]).model == "convgru-tiny"
    err = capsys.readouterr().err
    assert "--model is deprecated" in err and "--arch" in err
    assert "--arch" in subparsers()[command].format_help() and "--model" not in subparsers()[command].format_help()


def test_model_means_a_bundle_wherever_it_appears():
    for name, sp in subparsers().items():
        for action in sp._actions:
            if "--model" in action.option_strings and action.help != argparse.SUPPRESS:
                assert action.metavar == "MODEL_DIR" and "bundle" in action.help, name


def test_one_device_flag_on_every_command_that_runs_a_model(capsys):
    sps = subparsers()
    for name in MODEL_COMMANDS:
        dev = [a for a in sps[name]._actions if "--device" in a.option_strings]
        assert len(dev) == 1 and dev[0].metavar == "cpu|cuda|auto", name
        with pytest.raises(SystemExit):
            sps[name].parse_args(["--device", "tpu"])
        assert "must be cpu, cuda or auto" in capsys.readouterr().err
    # --devices N only where DDP runs
    assert [n for n, sp in sps.items() if any("--devices" in a.option_strings for a in sp._actions)] == ["pretrain"]
    # pretrain's old --accelerator still works, with a warning, and sets the same thing as --device
    args = build_parser().parse_args(["pretrain", "--out", "r", "--accelerator", "cpu"])
    assert args.accelerator == "cpu" and "--accelerator is deprecated" in capsys.readouterr().err
    assert build_parser().parse_args(["pretrain", "--out", "r", "--device", "cpu"]).accelerator == "cpu"
    assert build_parser().parse_args(["pretrain", "--out", "r"]).accelerator == "auto"


def test_threads_on_every_command_that_computes_default_one(monkeypatch):
    import torch

    sps = subparsers()
    for name in COMPUTE_COMMANDS:
        assert any("--threads" in a.option_strings for a in sps[name]._actions), name
    before = torch.get_num_threads()
    try:
        monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
        args = argparse.Namespace(threads=None, command="predict")
        apply_threads(args)
        assert args.threads == 1 and torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
        monkeypatch.setenv("OMP_NUM_THREADS", "2")
        args = argparse.Namespace(threads=None, command="predict")
        apply_threads(args)
        assert args.threads == 2 and torch.get_num_threads() == 2
        args = argparse.Namespace(threads=3, command="evaluate")
        apply_threads(args)
        assert torch.get_num_threads() == 3 and os.environ["OMP_NUM_THREADS"] == "3"
        with pytest.raises(Exception, match="--threads must be between 1 and"):
            apply_threads(argparse.Namespace(threads=0, command="evaluate"))
    finally:
        torch.set_num_threads(before)


def test_formats_command_prints_the_page_shipped_in_the_package(capsys):
    assert main(["formats"]) == 0
    out = capsys.readouterr().out
    page = (ROOT / "docs" / "data-formats.md").read_text(encoding="utf-8")
    # the packaged copy is the docs page, word for word (after editing docs/data-formats.md, copy it there)
    assert out.strip() == page.strip(), "cp docs/data-formats.md src/crossmodal_har/data-formats.md"
    assert "data-formats.md" in (ROOT / "pyproject.toml").read_text()


def test_errors_point_at_what_an_installed_user_has(tmp_path, capsys):
    (tmp_path / "ds").mkdir()
    rc = main(["train-classifier", "--dataset", str(tmp_path / "ds"), "--out", str(tmp_path / "m"), "--no-progress"])
    err = capsys.readouterr().err
    assert rc == 2 and "crossmodal-har formats" in err and "docs/" not in err
    # no error message anywhere in the package sends a user to a repository path
    bad = []
    for f in SRC.rglob("*.py"):
        for i, line in enumerate(f.read_text().splitlines(), 1):
            if re.search(r"(Error|raise|print)\(.*docs/\w", line):
                bad.append(f"{f.name}:{i}")
    assert not bad, bad


def test_predict_and_embed_take_the_device(tmp_path, capsys):
    import pandas as pd
    import torch

    from tests.helpers.bundles import UNITS, make_bundle, make_recording

    bundle, rec = make_bundle(tmp_path / "b"), make_recording(tmp_path / "r.csv", seconds=60)
    base = ["predict", "--model", str(bundle), "--input", str(rec), *UNITS, "-q"]
    assert main(base + ["--out", str(tmp_path / "cpu.csv"), "--device", "cpu"]) == 0
    assert main(base + ["--out", str(tmp_path / "auto.csv"), "--device", "auto"]) == 0
    a, b = pd.read_csv(tmp_path / "cpu.csv"), pd.read_csv(tmp_path / "auto.csv")
    assert a["label"].equals(b["label"])  # auto: the GPU where there is one, same labels
    capsys.readouterr()
    if not torch.cuda.is_available():
        rc = main(base + ["--out", str(tmp_path / "cuda.csv"), "--device", "cuda"])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and "no CUDA device is available" in err and "\n" not in err
    rc = main(base + ["--out", str(tmp_path / "onnx.csv"), "--device", "cuda", "--runtime", "onnx"])
    assert rc == 2 and "needs --runtime torch" in capsys.readouterr().err
    emb = ["embed", "--model", str(bundle), "--input", str(rec), *UNITS, "-q", "--device", "auto",
           "--out", str(tmp_path / "e.npy")]
    assert main(emb) == 0 and (tmp_path / "e.npy").is_file()
