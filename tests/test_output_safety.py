"""Outputs are never inputs, existing outputs are replaced only with --force, a bad --out is one line,
and a killed run's temporaries are cleaned by the next run (issue 13, items 1, 6 and 8)."""

import os
import subprocess
import sys
import time

import pytest

from crossmodal_har.cli import main
from helpers.bundles import UNITS, make_bundle, make_recording


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("outsafe")
    return {"bundle": make_bundle(d / "bundle"), "dir": d}


@pytest.fixture
def rec(tmp_path):
    return make_recording(tmp_path / "rec.csv", seconds=40)


def predict(env, inp, out, *extra):
    return main(["predict", "--model", str(env["bundle"]), "--input", str(inp), "--out", str(out), *UNITS, *extra])


def one_line_error(capsys, *words):
    err = capsys.readouterr().err
    assert "Traceback" not in err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1, err
    for w in words:
        assert w in lines[0], lines[0]
    return lines[0]


def _stalled_predict(env, rec, out):
    """A real ``predict`` process that stalls for an hour after writing its first chunk."""
    code = ("import sys, time\n"
            "import crossmodal_har.infer.source as P\n"
            "orig = P.iter_chunks\n"
            "def slow(*a, **k):\n"
            "    for c in orig(*a, **k):\n"
            "        yield c\n"
            "        time.sleep(3600)\n"
            "P.iter_chunks = slow\n"
            "from crossmodal_har.cli import main\n"
            "sys.exit(main(sys.argv[1:]))\n")
    return subprocess.Popen([sys.executable, "-c", code, "predict", "--model", str(env["bundle"]), "--input",
                             str(rec), "--out", str(out), *UNITS, "--chunk-rows", "100"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _wait_until_writing(proc, d, timeout_s=400):
    """Wait until ``proc`` has a temporary ``.p.csv.*`` in ``d`` or exits (a loaded CI machine starts
    python + torch slowly)."""
    deadline = time.time() + timeout_s
    while time.time() < deadline and proc.poll() is None and not list(d.glob(".p.csv.*")):
        time.sleep(0.1)


def dead_pid():
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


# --------------------------------------------------------------------------------- outputs that are inputs

@pytest.mark.parametrize("how", ["plain", "symlink", "hardlink"])
def test_predict_out_equal_to_input_is_refused(env, rec, tmp_path, capsys, how):
    before = rec.read_bytes()
    if how == "plain":
        out = rec
    elif how == "symlink":
        out = tmp_path / "link.csv"
        out.symlink_to(rec)
    else:
        out = tmp_path / "hard.csv"
        os.link(rec, out)
    capsys.readouterr()
    assert predict(env, rec, out, "--force") == 2
    one_line_error(capsys, str(out), "the input")
    assert rec.read_bytes() == before
    assert not rec.with_name("rec.summary.json").exists()


def test_predict_out_through_a_relative_path_to_the_input_is_refused(env, rec, tmp_path, capsys, monkeypatch):
    before = rec.read_bytes()
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub")
    capsys.readouterr()
    assert predict(env, rec, "../sub/../rec.csv", "--force") == 2
    one_line_error(capsys, "the input")
    assert rec.read_bytes() == before


def test_predict_timeline_equal_to_input_is_refused(env, rec, tmp_path, capsys):
    before = rec.read_bytes()
    capsys.readouterr()
    assert predict(env, rec, tmp_path / "p.csv", "--timeline", str(rec), "--force") == 2
    one_line_error(capsys, "--timeline", "the input")
    assert rec.read_bytes() == before
    assert not (tmp_path / "p.csv").exists()  # refused before anything was written


def test_predict_timeline_equal_to_out_is_refused(env, rec, tmp_path, capsys):
    capsys.readouterr()
    assert predict(env, rec, tmp_path / "p.csv", "--timeline", str(tmp_path / "p.csv")) == 2
    one_line_error(capsys, "--timeline")


def test_predict_summary_beside_out_is_never_the_input(env, tmp_path, capsys):
    inp = make_recording(tmp_path / "p.summary.json.csv", seconds=40)
    # --out p.csv writes p.summary.json beside it; make that name the input (via a symlink)
    (tmp_path / "p.summary.json").symlink_to(inp)
    before = inp.read_bytes()
    capsys.readouterr()
    assert predict(env, inp, tmp_path / "p.csv", "--force") == 2
    one_line_error(capsys, "the input")
    assert inp.read_bytes() == before


def test_predict_out_equal_to_a_bundle_file_is_refused(env, rec, capsys):
    w = env["bundle"] / "model.safetensors"
    before = w.read_bytes()
    capsys.readouterr()
    assert predict(env, rec, w, "--force") == 2
    one_line_error(capsys, "the input")
    assert w.read_bytes() == before


def test_embed_out_equal_to_parquet_input_is_refused(env, tmp_path, capsys):
    pq = make_recording(tmp_path / "rec.parquet", seconds=40)
    hard = tmp_path / "hard.parquet"
    os.link(pq, hard)
    before = pq.read_bytes()
    for out in (pq, hard):
        capsys.readouterr()
        rc = main(["embed", "--model", str(env["bundle"]), "--input", str(pq), "--out", str(out), *UNITS, "--force"])
        assert rc == 2
        one_line_error(capsys, "the input")
        assert pq.read_bytes() == before


# --------------------------------------------------------------------------------- --force

def test_existing_outputs_are_refused_without_force_and_replaced_with_it(env, rec, tmp_path, capsys):
    out = tmp_path / "p.csv"
    out.write_text("precious\n")
    capsys.readouterr()
    assert predict(env, rec, out) == 2
    one_line_error(capsys, str(out), "--force")
    assert out.read_text() == "precious\n"
    assert predict(env, rec, out, "--force") == 0
    assert out.read_text().startswith("start,end,status,label")
    # the summary beside it is an output too
    out2 = tmp_path / "q.csv"
    (tmp_path / "q.summary.json").write_text("{}")
    capsys.readouterr()
    assert predict(env, rec, out2) == 2
    one_line_error(capsys, "q.summary.json", "--force")
    assert not out2.exists() and (tmp_path / "q.summary.json").read_text() == "{}"
    # embed
    emb = tmp_path / "e.npy"
    emb.write_bytes(b"keep")
    capsys.readouterr()
    args = ["embed", "--model", str(env["bundle"]), "--input", str(rec), "--out", str(emb), *UNITS]
    assert main(args) == 2
    one_line_error(capsys, str(emb), "--force")
    assert emb.read_bytes() == b"keep"
    assert main(args + ["--force"]) == 0
    assert emb.read_bytes()[:6] == b"\x93NUMPY"


def test_force_is_documented_in_every_writing_command():
    from crossmodal_har.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if a.__class__.__name__ == "_SubParsersAction")
    for name in ("predict", "embed", "train-classifier", "export", "gopro-extract"):
        helptext = sub.choices[name].format_help()
        assert "--force" in helptext, name


def test_train_classifier_refuses_a_non_empty_bundle_dir(env, tmp_path, capsys):
    out = tmp_path / "model"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    capsys.readouterr()
    rc = main(["train-classifier", "--dataset", str(tmp_path / "nodata"), "--out", str(out), "--no-progress"])
    assert rc == 2
    one_line_error(capsys, str(out), "--force")
    assert (out / "notes.txt").read_text() == "mine"
    # the encoder directory is an input, whatever --force says
    enc = tmp_path / "run"
    enc.mkdir()
    (enc / "encoder.json").write_text("{}")
    capsys.readouterr()
    rc = main(["train-classifier", "--dataset", str(tmp_path / "nodata"), "--encoder", str(enc), "--out",
               str(enc), "--force", "--no-progress"])
    assert rc == 2
    one_line_error(capsys, "the input")
    assert (enc / "encoder.json").read_text() == "{}"


def test_export_out_equal_to_the_weights_is_refused(env, capsys):
    w = env["bundle"] / "model.safetensors"
    before = w.read_bytes()
    capsys.readouterr()
    assert main(["export", "--model", str(env["bundle"]), "--out", str(w), "--force"]) == 2
    one_line_error(capsys, "the input")
    assert w.read_bytes() == before


# --------------------------------------------------------------------------------- bad --out paths

def test_out_that_is_a_directory_is_one_line(env, rec, tmp_path, capsys):
    d = tmp_path / "adir"
    d.mkdir()
    for cmd in (["predict", "--model", str(env["bundle"])], ["embed", "--model", str(env["bundle"])]):
        out = d if cmd[0] == "predict" else tmp_path / "edir.npy"
        out.mkdir(exist_ok=True)
        capsys.readouterr()
        assert main([*cmd, "--input", str(rec), "--out", str(out), *UNITS, "--force"]) == 2
        one_line_error(capsys, str(out), "directory")
    capsys.readouterr()
    assert predict(env, rec, tmp_path / "p.csv", "--timeline", str(d), "--force") == 2
    one_line_error(capsys, "--timeline", "directory")


def test_out_whose_parent_is_a_file_is_one_line(env, rec, tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    for out in (f / "p.csv", f / "deeper" / "p.csv"):
        capsys.readouterr()
        assert predict(env, rec, out) == 2
        one_line_error(capsys, str(out), "not a directory")
    capsys.readouterr()
    assert main(["embed", "--model", str(env["bundle"]), "--input", str(rec), "--out", str(f / "e.parquet"),
                 *UNITS]) == 2
    one_line_error(capsys, "not a directory")
    assert f.read_text() == "x"


# --------------------------------------------------------------------------------- killed runs

def test_stale_temporary_of_a_killed_run_is_removed_by_the_next_run(env, rec, tmp_path):
    pid = dead_pid()
    stale = [tmp_path / f".p.csv.{pid}.abcd1234.tmp", tmp_path / f".p.summary.json.{pid}.x_y12345.tmp",
             tmp_path / f".e.npy.{pid}.qwertyui.rows"]
    for s in stale:
        s.write_text("half written")
    mine = tmp_path / f".p.csv.{os.getpid()}.zzzzzzzz.tmp"  # a live process's: kept
    mine.write_text("being written")
    other = tmp_path / ".other.csv.1.abcd1234.tmp"  # not ours
    other.write_text("x")
    assert predict(env, rec, tmp_path / "p.csv") == 0
    assert main(["embed", "--model", str(env["bundle"]), "--input", str(rec), "--out", str(tmp_path / "e.npy"),
                 *UNITS]) == 0
    assert not any(s.exists() for s in stale)
    assert mine.exists() and other.exists()


def test_a_killed_predict_leaves_nothing_after_the_next_run(env, tmp_path):
    """A real process, killed while it writes (it sleeps after its first chunk)."""
    rec = make_recording(tmp_path / "rec.csv", seconds=40)
    out = tmp_path / "p.csv"
    proc = _stalled_predict(env, rec, out)
    try:
        _wait_until_writing(proc, tmp_path)
        assert proc.poll() is None, proc.stderr.read().decode()
        assert list(tmp_path.glob(".p.csv.*")), "predict never started writing"
    finally:
        proc.kill()
        proc.wait()
    assert list(tmp_path.glob(".p.csv.*")) and not out.exists()
    assert predict(env, rec, out) == 0
    assert out.exists() and not list(tmp_path.glob(".p.csv.*"))


GOPRO = __import__("pathlib").Path(__file__).resolve().parents[1].parent / "shared" / "data" / "gopro" / "karma.mp4"


@pytest.mark.skipif(not GOPRO.is_file(), reason="GoPro sample not available")
def test_gopro_extract_never_replaces_its_input(tmp_path, capsys):
    import shutil

    sess = tmp_path / "sess"
    sess.mkdir()
    src = sess / "video.mp4"
    shutil.copyfile(GOPRO, src)
    before = src.read_bytes()
    for extra in ([], ["--copy"]):
        capsys.readouterr()
        assert main(["gopro-extract", str(src), "--out", str(sess), "--force", *extra]) == 2
        one_line_error(capsys, "the input")
        assert not src.is_symlink() and src.read_bytes() == before
    # a re-run over an earlier run's symlink is fine with --force (the link, not the video, is replaced)
    out = tmp_path / "o"
    assert main(["gopro-extract", str(src), "--out", str(out)]) == 0
    assert (out / "video.mp4").is_symlink()
    capsys.readouterr()
    assert main(["gopro-extract", str(src), "--out", str(out)]) == 2
    one_line_error(capsys, "--force")
    assert main(["gopro-extract", str(src), "--out", str(out), "--force"]) == 0
    assert (out / "video.mp4").resolve() == src.resolve() and src.read_bytes() == before
    # --out that is a file: one line
    capsys.readouterr()
    assert main(["gopro-extract", str(src), "--out", str(src)]) == 2
    one_line_error(capsys, str(src))
    assert src.read_bytes() == before


# --------------------------------------------------------------------------------- directory outputs

def test_directory_outputs_are_never_inputs(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "encoder.json").write_text('{"model": "convgru"}')
    (run / "config.json").write_text('{"mine": 1}')
    (run / "results.json").write_text('{"kind": "zeroshot"}')
    snapshot = {p.name: p.read_bytes() for p in run.iterdir()}
    link = tmp_path / "link"
    link.symlink_to(run)
    cases = [
        ["evaluate", "--dataset", str(tmp_path / "ds"), "--encoder", str(run), "--out", str(link)],
        ["zeroshot", "--run", str(run), "--store", str(tmp_path / "store"), "--out", str(run)],
        ["report", str(run), "--out", str(link)],
        ["report", str(run / "results.json"), "--out", str(run)],
    ]
    for argv in cases:
        capsys.readouterr()
        assert main(argv) == 2, argv
        one_line_error(capsys, "the input")
        assert {p.name: p.read_bytes() for p in run.iterdir()} == snapshot


def test_directory_output_that_is_a_file_is_one_line(tmp_path, capsys):
    f = tmp_path / "afile"
    f.write_text("x")
    for argv in (["simulate", "--out", str(f), "--minutes", "0.1", "--subjects", "1"],
                 ["simulate", "--out", str(f / "sub"), "--minutes", "0.1", "--subjects", "1"],
                 ["train-classifier", "--dataset", str(tmp_path / "nodata"), "--out", str(f)]):
        capsys.readouterr()
        assert main(argv) == 2, argv
        one_line_error(capsys, str(f))
        assert f.read_text() == "x"


def test_predict_out_equal_to_the_units_file_is_refused(env, rec, tmp_path, capsys):
    meta = tmp_path / "dataset.json"
    meta.write_text('{"acc_unit": "m/s^2", "gyro_unit": "rad/s", "time_unit": "ms"}')
    before = meta.read_bytes()
    capsys.readouterr()
    rc = main(["predict", "--model", str(env["bundle"]), "--input", str(rec), "--out", str(tmp_path / "p.csv"),
               "--meta", str(meta), "--timeline", str(meta), "--force"])
    assert rc == 2
    one_line_error(capsys, "--meta", "the input")
    assert meta.read_bytes() == before


def test_clean_stale_temps_rules(tmp_path):
    from crossmodal_har.io import atomic_write_text, clean_stale_temps

    out = tmp_path / "r.json"
    now = time.time()
    live_old = tmp_path / f".r.json.{os.getpid()}.aaaaaaaa.tmp"  # live pid, untouched for 2 days: a reused pid
    live_new = tmp_path / f".r.json.{os.getpid()}.bbbbbbbb.tmp"
    legacy_old = tmp_path / ".r.json.cccccccc.tmp"  # older versions' names, no pid
    legacy_new = tmp_path / ".r.json.dddddddd.tmp"
    for p in (live_old, live_new, legacy_old, legacy_new):
        p.write_text("x")
    os.utime(live_old, (now - 2 * 86400, now - 2 * 86400))
    os.utime(legacy_old, (now - 1200, now - 1200))
    removed = set(clean_stale_temps(out))
    assert removed == {live_old, legacy_old}
    assert live_new.exists() and legacy_new.exists()
    # the writer's own temporaries carry its pid, and a finished write leaves none
    atomic_write_text(out, "{}")
    assert out.read_text() == "{}" and oct(out.stat().st_mode & 0o777) != "0o600"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([out.name, live_new.name, legacy_new.name])


def test_embed_parquet_output_has_ordinary_permissions(env, rec, tmp_path):
    out = tmp_path / "e.parquet"
    assert main(["embed", "--model", str(env["bundle"]), "--input", str(rec), "--out", str(out), *UNITS]) == 0
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o666 & ~umask  # not mkstemp's 0600
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_outputs_beside_the_bundle_files_are_not_inputs(tmp_path, capsys):
    b = make_bundle(tmp_path / "b")
    rec = make_recording(tmp_path / "rec.csv", seconds=40)
    out = b / "p.csv"  # an earlier output next to bundle.json is replaced with --force, not called an input
    assert predict({"bundle": b}, rec, out) == 0
    assert predict({"bundle": b}, rec, out, "--force") == 0
    other = b / "other.onnx"
    assert main(["export", "--model", str(b), "--out", str(other)]) == 0
    capsys.readouterr()
    assert main(["export", "--model", str(b), "--out", str(other)]) == 2
    one_line_error(capsys, "--force")
    assert main(["export", "--model", str(b), "--out", str(other), "--force"]) == 0
    assert main(["export", "--model", str(b)]) == 0 and main(["export", "--model", str(b)]) == 0  # its own export


def test_ingest_store_is_never_written_into_its_source(tmp_path, capsys):
    src = tmp_path / "src"
    (src / "sess").mkdir(parents=True)
    (src / "sess" / "imu.csv").write_text("time,acc_x,acc_y,acc_z,gyro_x,gyro_y,gyro_z\n")
    snapshot = sorted(p.relative_to(src) for p in src.rglob("*"))
    for out in (src, tmp_path / "link"):
        if out.name == "link":
            out.symlink_to(src)
        capsys.readouterr()
        assert main(["ingest", "--layout", "paired", "--src", str(src), "--out", str(out)]) == 2, out
        one_line_error(capsys, "--src")
        assert sorted(p.relative_to(src) for p in src.rglob("*")) == snapshot


def test_sigterm_cleans_up_like_ctrl_c(env, tmp_path):
    """SIGTERM (what a job scheduler or `kill` sends) stops a command as an interrupt: its temporary
    output is removed at once, nothing half-written is left, exit status 143."""
    import signal

    rec = make_recording(tmp_path / "rec.csv", seconds=40)
    out = tmp_path / "p.csv"
    proc = _stalled_predict(env, rec, out)
    try:
        _wait_until_writing(proc, tmp_path)
        assert list(tmp_path.glob(".p.csv.*")), "predict never started writing"
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err = proc.stderr.read().decode()
    assert rc == 143, err
    assert "Traceback" not in err and "terminated" in err
    assert not list(tmp_path.glob(".p.csv.*")) and not out.exists()
