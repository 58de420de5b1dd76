"""Artefact files are data (issue 13): a file can never turn on the network, every artefact config is
validated against its schema (allowed keys, bounded sizes) before any model is built, every bundle kind
exports to ONNX with parity, and fuzzed artefact files give either a load or a one-line error."""

import copy
import hashlib
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossmodal_har.cli import main
from crossmodal_har.errors import DataError, UserError
from helpers.bundles import UNITS, make_bundle, make_recording

REPO = Path(__file__).resolve().parents[1]
IMU_TINY = ["patchtst-tiny", "convgru-tiny"]  # every registered IMU encoder family's tiny variant


def _digest(paths):
    return {str(p): hashlib.sha256(Path(p).read_bytes()).hexdigest() for p in paths}


def _edit_json(path: Path, fn) -> None:
    meta = json.loads(path.read_text())
    fn(meta)
    path.write_text(json.dumps(meta))


def _run_cli(argv, capsys):
    rc = main(argv)
    err = capsys.readouterr().err
    return rc, err


def test_imu_tiny_list_covers_every_registered_imu_family():
    from crossmodal_har.models.registry import _entry, list_models

    families = {_entry(n).builder for n in list_models("imu")}
    assert families == {_entry(n).builder for n in IMU_TINY}


# ----------------------------------------------------------------------------- item 2: loading keys

@pytest.fixture(scope="module")
def bundle_dir(tmp_path_factory):
    return make_bundle(tmp_path_factory.mktemp("b") / "bundle", model="convgru-tiny")


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    return make_recording(tmp_path_factory.mktemp("r") / "rec.csv", seconds=30)


def _copy_bundle(src: Path, dst: Path) -> Path:
    dst.mkdir(parents=True)
    for f in src.iterdir():
        (dst / f.name).write_bytes(f.read_bytes())
    return dst


def _encoder_dir(d: Path, model: str = "convgru-tiny") -> Path:
    from crossmodal_har.models.encoder_file import save_encoder
    from crossmodal_har.models.registry import create_model
    from crossmodal_har.signals.types import PreprocessConfig

    save_encoder(create_model(model), d, PreprocessConfig())
    return d


@pytest.mark.parametrize("key,value", [("pretrained", "some/hub-id"), ("allow_download", True),
                                       ("cache_dir", "/tmp/x"), ("revision", "main")])
def test_bundle_config_loading_keys_are_refused(tmp_path, bundle_dir, recording, capsys, monkeypatch, key, value):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    d = _copy_bundle(bundle_dir, tmp_path / "b")
    _edit_json(d / "bundle.json", lambda m: m["encoder"]["config"].update({key: value}))
    before = _digest([d / "bundle.json", d / "model.safetensors", recording])
    rc, err = _run_cli(["predict", "--model", str(d), "--input", str(recording), "--out",
                        str(tmp_path / "p.csv"), *UNITS], capsys)
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "bundle.json" in err and repr(key) in err and "loading option" in err
    assert _digest([d / "bundle.json", d / "model.safetensors", recording]) == before
    assert not (tmp_path / "p.csv").exists()


def test_encoder_json_loading_keys_are_refused(tmp_path, recording, capsys, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    d = _encoder_dir(tmp_path / "enc")
    _edit_json(d / "encoder.json", lambda m: m["config"].update({"pretrained": "some/hub-id", "allow_download": True}))
    rc, err = _run_cli(["embed", "--encoder", str(d), "--input", str(recording), "--out",
                        str(tmp_path / "e.npy"), *UNITS], capsys)
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "encoder.json" in err and ("'allow_download'" in err or "'pretrained'" in err)


def test_run_model_json_cannot_load_or_download(tmp_path):
    """model.json: the architecture's config may not name a loading key, and the method's own config
    (which records the CLI's --allow-download / pretrained ids of training) never reaches the build."""
    from crossmodal_har.models.run_file import load_run_model, save_run_model
    from crossmodal_har.models.registry import create_model

    enc = create_model("convgru-tiny")
    arch = {"imu_encoder": {"model": "convgru-tiny", "config": dict(enc.model_cfg)}, "video_encoder": None}
    save_run_model(enc, tmp_path, {"method": "siglip", "config": {"imu_pretrained": "some/hub-id",
                                                                    "allow_download": True}, "data": {},
                                   "architecture": arch})
    seen = {}

    def build(meta, path):
        seen.update(meta["config"])
        return create_model("convgru-tiny")

    load_run_model(tmp_path, build)
    assert seen == {"imu_pretrained": None, "allow_download": False}
    _edit_json(tmp_path / "model.json",
               lambda m: m["architecture"]["imu_encoder"]["config"].update({"pretrained": "some/hub-id"}))
    with pytest.raises(DataError, match=r"model.json: architecture.imu_encoder.config: 'pretrained' is a loading"):
        load_run_model(tmp_path, build)


_NET_CHILD = textwrap.dedent('''
    import http.server, json, os, sys, threading
    requests = []

    class H(http.server.BaseHTTPRequestHandler):
        def _any(self):
            requests.append(self.command + " " + self.path)
            self.send_response(404); self.send_header("Content-Length", "0"); self.end_headers()
        do_GET = do_HEAD = do_POST = _any
        def log_message(self, *a): pass

    srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), H)
    srv.timeout = 1
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True).start()
    stopper = threading.Timer(240, srv.shutdown)  # bounded: the server stops itself
    stopper.daemon = True
    stopper.start()
    os.environ["HF_ENDPOINT"] = "http://127.0.0.1:%d" % srv.server_address[1]
    from crossmodal_har.cli import main
    out = {}
    for name, argv in json.loads(sys.argv[1]):
        rc = main(argv)
        out[name] = [rc, len(requests)]
    # positive control: the same machinery with the CLI's permission does reach the (local) hub
    from crossmodal_har.models.registry import create_model
    try:
        create_model("patchtst-tiny", pretrained="some/hub-id", allow_download=True)
    except Exception:
        pass
    out["control"] = [0, len(requests)]
    srv.shutdown()
    print("RESULT " + json.dumps(out))
''')


@pytest.mark.slow
def test_no_file_turns_on_the_network(tmp_path, recording):
    """HF_HUB_OFFLINE=0 in the environment, no --allow-download, crafted bundle/encoder.json asking
    for a hub download: the local 'hub' on 127.0.0.1 records zero requests (and does record them
    when the download is allowed from code, so the probe works)."""
    b = make_bundle(tmp_path / "b", model="patchtst-tiny")  # transformers-backed: it could download
    crafted = {"pretrained": "some/hub-id", "allow_download": True}
    _edit_json(b / "bundle.json", lambda m: m["encoder"]["config"].update(crafted))
    e = _encoder_dir(tmp_path / "enc", "patchtst-tiny")
    _edit_json(e / "encoder.json", lambda m: m["config"].update(crafted))
    cmds = [["predict", ["-q", "predict", "--model", str(b), "--input", str(recording), "--out",
                         str(tmp_path / "p.csv"), *UNITS]],
            ["embed", ["-q", "embed", "--encoder", str(e), "--input", str(recording), "--out",
                       str(tmp_path / "e.npy"), *UNITS]],
            ["export", ["-q", "export", "--model", str(b)]]]
    # a pretraining config file (and so a resumed run's config.json) may not allow downloads either
    for name, extra in (("pretrain", {"imu_pretrained": "some/hub-id", "allow_download": True}),
                        ("pretrain-overrides", {"imu_encoder_overrides": crafted})):
        cfg = tmp_path / f"{name}.json"
        cfg.write_text(json.dumps({"method": "siglip", "imu_encoder": "patchtst-tiny", **extra}))
        cmds.append([name, ["-q", "pretrain", "--synthetic", "--config", str(cfg), "--out", str(tmp_path / name),
                            "--max-steps", "1", "--no-progress"]])
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HF_", "TRANSFORMERS_"))}
    env.update(HF_HUB_OFFLINE="0", TRANSFORMERS_OFFLINE="0", HF_HOME=str(tmp_path / "hf"),
               PYTHONPATH=str(REPO / "src"))
    proc = subprocess.run([sys.executable, "-c", _NET_CHILD, json.dumps(cmds)], capture_output=True, text=True,
                          timeout=280, env=env, cwd=tmp_path)
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    assert line, proc.stdout + proc.stderr
    res = json.loads(line[0][7:])
    assert all(res[c[0]] == [2, 0] for c in cmds), res  # refused, and the local hub saw nothing
    assert res["control"][1] > 0, res  # the probe does see a download attempt
    assert "Traceback" not in proc.stderr
    assert proc.stderr.count("loading option") == 4 and "--allow-download" in proc.stderr, proc.stderr


# ----------------------------------------------------------------------------- schemas before building

def _bundle_case(meta, case):
    enc, head = meta["encoder"], meta["head"]
    if case == "num_classes-abc":
        head["num_classes"] = "abc"
    elif case == "encoder-not-dict":
        meta["encoder"] = ["convgru-tiny"]
    elif case == "config-not-dict":
        enc["config"] = "big"
    elif case == "knn-bank-1e12":
        head.update(type="knn", bank_size=10 ** 12, k=5, temperature=0.1)
    elif case == "ffn-1e9":
        meta["encoder"] = {"model": "patchtst-tiny", "config": {"ffn_dim": 10 ** 9}, "embed_dim": 96}
        head["in_features"] = 96
    elif case == "hidden-1e6":
        enc["config"]["hidden_size"] = 10 ** 6
    elif case == "layers-huge":
        meta["encoder"] = {"model": "patchtst-tiny", "config": {"num_hidden_layers": 100, "d_model": 8192,
                                                                "num_attention_heads": 8, "ffn_dim": 65536}}
        head["in_features"] = 6 * 8192
    elif case == "unknown-config-key":
        enc["config"]["d_modle"] = 3
    elif case == "video-encoder":
        meta["encoder"] = {"model": "videomae-tiny", "config": {}, "embed_dim": 32}
    elif case == "in_features-mismatch":
        head["in_features"] = 5
    elif case == "class_names-not-str":
        meta["class_names"] = [1, 2, 3]
    elif case == "class_names-count":
        meta["class_names"] = ["a", "b"]
    elif case == "num_classes-0":
        head["num_classes"] = 0
        meta["class_names"] = []
    elif case == "num_classes-huge":
        head["num_classes"] = 10 ** 7
    elif case == "bank-10e400":
        head.update(type="knn", bank_size=10 ** 400, k=5, temperature=0.1)
    elif case == "head-type":
        head["type"] = "mlp"
    elif case == "unknown-top-key":
        meta["encoder_overrides"] = {"pretrained": "x"}
    elif case == "preprocess-bad":
        meta["preprocess"] = {"rate_hz": "fast"}
    elif case == "patch-0":
        meta["encoder"] = {"model": "patchtst-tiny", "config": {"patch_length": 0}}
    elif case == "heads-0":
        meta["encoder"] = {"model": "patchtst-tiny", "config": {"num_attention_heads": 0}}
    elif case == "groups-0":
        enc["config"]["input_groups"] = 0
    elif case == "k-0":
        head.update(type="knn", bank_size=4, k=0, temperature=0.1)
    elif case == "temperature-nan":
        head.update(type="knn", bank_size=4, k=1, temperature=float("nan"))
    elif case == "model-unknown":
        enc["model"] = "gpt-17"
    elif case == "knn-bank-vs-file":
        head.update(type="knn", bank_size=10 ** 6, k=5, temperature=0.1)
    elif case == "arch-vs-file":
        enc["config"].update(hidden_size=4096, conv_channels=512, feature_groups=2)
        head["in_features"] = enc["embed_dim"] = 4096
    else:  # pragma: no cover
        raise AssertionError(case)


BUNDLE_CASES = ["num_classes-abc", "encoder-not-dict", "config-not-dict", "knn-bank-1e12", "ffn-1e9", "hidden-1e6",
                "layers-huge", "unknown-config-key", "video-encoder", "in_features-mismatch", "class_names-not-str",
                "class_names-count", "num_classes-0", "num_classes-huge", "head-type", "unknown-top-key",
                "preprocess-bad", "patch-0", "heads-0", "groups-0", "k-0", "temperature-nan", "model-unknown",
                "knn-bank-vs-file", "arch-vs-file", "bank-10e400"]


@pytest.mark.parametrize("case", BUNDLE_CASES)
def test_crafted_bundle_is_one_line_error_before_building(tmp_path, bundle_dir, recording, capsys, monkeypatch,
                                                          case):
    import torch

    d = _copy_bundle(bundle_dir, tmp_path / "b")
    _edit_json(d / "bundle.json", lambda m: _bundle_case(m, case))
    before = _digest([d / "bundle.json", d / "model.safetensors", recording])
    built = []
    real_init = torch.nn.Module.__init__

    def spy(self, *a, **k):  # any module construction = a model was (being) built
        built.append(type(self).__name__)
        real_init(self, *a, **k)

    monkeypatch.setattr(torch.nn.Module, "__init__", spy)
    rc, err = _run_cli(["predict", "--model", str(d), "--input", str(recording), "--out",
                        str(tmp_path / "p.csv"), *UNITS], capsys)
    monkeypatch.undo()
    assert rc == 2, err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "bundle.json" in err, err
    assert built == [], (case, built[:5])
    assert _digest([d / "bundle.json", d / "model.safetensors", recording]) == before


ENCODER_CASES = {
    "config-not-dict": lambda m: m.update(config=[1]),
    "ffn-1e9": lambda m: m.update(model="patchtst-tiny", config={"ffn_dim": 10 ** 9}),
    "unknown-key": lambda m: m["config"].update(bogus=1),
    "embed_dim-mismatch": lambda m: m.update(embed_dim=17),
    "embed_dim-str": lambda m: m.update(embed_dim="16"),
    "kind-wrong": lambda m: m.update(kind="video"),
    "format": lambda m: m.update(format_version="1"),
    "not-object": lambda m: (m.clear(), m.update(x=1)),
    "top-key": lambda m: m.update(allow_download=True),
    "arch-vs-file": lambda m: m["config"].update(hidden_size=2048),
}


@pytest.mark.parametrize("case", sorted(ENCODER_CASES))
def test_crafted_encoder_json_is_one_line_error(tmp_path, recording, capsys, case):
    d = _encoder_dir(tmp_path / "enc")
    _edit_json(d / "encoder.json", ENCODER_CASES[case])
    rc, err = _run_cli(["embed", "--encoder", str(d), "--input", str(recording), "--out",
                        str(tmp_path / "e.npy"), *UNITS], capsys)
    assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, err
    assert "encoder.json" in err, err


def test_valid_artefacts_still_load(tmp_path, bundle_dir):
    from crossmodal_har.models.bundle import load_bundle, read_bundle
    from crossmodal_har.models.encoder_file import load_encoder

    assert load_bundle(bundle_dir).class_names == ["rest", "walk", "turn"]
    assert read_bundle(bundle_dir, with_model=False).model is None
    for model in IMU_TINY:
        enc, meta = load_encoder(_encoder_dir(tmp_path / model, model))
        assert meta["model"] == model


def test_cli_overrides_and_code_keep_working_and_are_bounded():
    from crossmodal_har.errors import ConfigError
    from crossmodal_har.models.registry import create_model

    assert create_model("patchtst-tiny", d_model=32).embed_dim == 6 * 32
    with pytest.raises(ConfigError, match="ffn_dim = 1000000000 is out of range"):
        create_model("patchtst-tiny", ffn_dim=10 ** 9)
    with pytest.raises(ConfigError, match="parameters"):
        create_model("patchtst-tiny", d_model=8192, num_hidden_layers=128, num_attention_heads=8, ffn_dim=65536)


# ----------------------------------------------------------------------------- item 7: ONNX parity

def _knn_or_linear_bundle(out: Path, model: str, kind: str, normalization: str) -> Path:
    import torch

    from crossmodal_har.models.bundle import save_bundle
    from crossmodal_har.models.classifier import (KnnHead, StandardizedLinear, WindowClassifier, build_head,
                                                  embed_windows, head_spec)
    from crossmodal_har.models.registry import create_model
    from crossmodal_har.signals.types import PreprocessConfig

    torch.manual_seed(0)
    enc = create_model(model).eval()
    if kind == "knn":  # a random encoder, as `train-classifier --encoder random --protocol knn` fits it
        rng = np.random.default_rng(1)
        x = rng.normal(0, 0.5, (24, 250, 6)).astype(np.float32)
        x[:, :, 2] += 1.0
        head = KnnHead(embed_windows(enc, x, normalization), np.arange(24) % 3, 3, 5, 0.1)
    elif kind == "standardized-linear":  # linear-probe's head: statistics of the same embeddings
        rng = np.random.default_rng(1)
        x = rng.normal(0, 0.5, (24, 250, 6)).astype(np.float32)
        z = embed_windows(enc, x, normalization)
        head = StandardizedLinear(z.mean(0), z.std(0) + 1e-6, 3)
    else:
        head = build_head({"type": "linear", "in_features": enc.embed_dim, "num_classes": 3})
    m = WindowClassifier(enc, head, normalization)
    save_bundle(out, m, encoder_name=model, encoder_config=enc.model_cfg, head_spec=head_spec(head, 3),
                preprocess=PreprocessConfig(normalization=normalization), class_names=["a", "b", "c"])
    return out


@pytest.mark.parametrize("normalization", ["none", "zscore"])
@pytest.mark.parametrize("kind", ["linear", "standardized-linear", "knn"])
@pytest.mark.parametrize("model", IMU_TINY)
def test_every_bundle_kind_exports_with_parity(tmp_path, model, kind, normalization):
    from crossmodal_har.infer.export import export_bundle

    d = _knn_or_linear_bundle(tmp_path / "b", model, kind, normalization)
    path, diff = export_bundle(d)
    assert path.is_file() and diff <= 1e-4


def test_knn_head_breaks_near_ties_by_index_not_by_rounding_noise():
    """The cause of the patchtst kNN export failure: a random encoder's embeddings are almost
    collinear (all similarities 1 - O(1e-7)), so top-k was decided by float noise."""
    import torch

    from crossmodal_har.models.classifier import KnnHead

    rng = np.random.default_rng(0)
    base = rng.normal(size=16).astype(np.float32)
    bank = base + 1e-5 * rng.normal(size=(30, 16)).astype(np.float32)
    head = KnnHead(bank, np.arange(30) % 3, 3, 4, 0.1)
    z = torch.as_tensor(base + 1e-5 * rng.normal(size=(5, 16)).astype(np.float32))
    out = head(z)
    for noise in (1e-7, -1e-7, 3e-7):  # runtime-sized perturbations do not change the vote
        assert torch.allclose(head(z * (1 + noise)), out, atol=1e-4)
    # and the chosen neighbours are the first bank rows when everything ties
    assert torch.allclose(out[0].exp(), torch.tensor([0.5, 0.25, 0.25]), atol=1e-4)  # rows 0-3: labels 0,1,2,0


@pytest.mark.slow
def test_train_classifier_random_patchtst_knn_then_export(tmp_path, capsys):
    """The issue's reproduction through the CLI."""
    from test_bundle_export import make_dataset

    ds = make_dataset(tmp_path / "ds", n_subjects=4, seconds=12)
    out = tmp_path / "m"
    assert main(["-q", "train-classifier", "--dataset", str(ds), "--encoder", "random", "--arch", "patchtst-tiny",
                 "--protocol", "knn", "--out", str(out), "--no-progress"]) in (0, 3)
    capsys.readouterr()
    assert main(["export", "--model", str(out)]) == 0, capsys.readouterr().err
    assert (out / "model.onnx").is_file()


# ----------------------------------------------------------------------------- fuzz layer

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8) | st.sampled_from([0, -1, 1, 10 ** 12, 2 ** 63, 10 ** 400, 1e300, "abc", "", [], {}]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3),
    max_leaves=6)
FUZZ = settings(max_examples=50, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)


def _paths(obj, prefix=()):
    """Every key path of a JSON object (dicts only), the root included."""
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))


def _mutate(meta, data):
    """Replace the value at a random existing key path, add a random key somewhere, or delete one."""
    meta = copy.deepcopy(meta)
    paths = [p for p in _paths(meta) if p]
    path = data.draw(st.sampled_from(paths))
    parent = meta
    for k in path[:-1]:
        parent = parent[k]
    action = data.draw(st.sampled_from(["set", "add", "delete"]))
    if action == "set":
        parent[path[-1]] = data.draw(JSON)
    elif action == "add":
        parent[data.draw(st.text(max_size=12))] = data.draw(JSON)
    else:
        del parent[path[-1]]
    return meta


def _write(path: Path, meta) -> None:
    path.write_text(json.dumps(meta, allow_nan=True))


def _loads_or_user_error(fn):
    try:
        fn()
    except UserError as exc:  # DataError and ConfigError are UserErrors
        assert "\n" not in str(exc).strip(), str(exc)


@pytest.fixture(scope="module")
def fuzz_dirs(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    b = make_bundle(root / "bundle", model="convgru-tiny")
    e = _encoder_dir(root / "enc")
    return {"bundle": b, "bundle_meta": json.loads((b / "bundle.json").read_text()),
            "enc": e, "enc_meta": json.loads((e / "encoder.json").read_text())}


@FUZZ
@given(data=st.data())
def test_fuzz_bundle_json(fuzz_dirs, data):
    from crossmodal_har.models.bundle import load_bundle, read_bundle

    d = fuzz_dirs["bundle"]
    _write(d / "bundle.json", _mutate(fuzz_dirs["bundle_meta"], data))
    try:
        _loads_or_user_error(lambda: read_bundle(d, with_model=False))
        _loads_or_user_error(lambda: load_bundle(d))
    finally:
        _write(d / "bundle.json", fuzz_dirs["bundle_meta"])


@FUZZ
@given(value=JSON)
def test_fuzz_bundle_json_whole_file(fuzz_dirs, value):
    from crossmodal_har.models.bundle import load_bundle

    d = fuzz_dirs["bundle"]
    _write(d / "bundle.json", value)
    try:
        _loads_or_user_error(lambda: load_bundle(d))
    finally:
        _write(d / "bundle.json", fuzz_dirs["bundle_meta"])


@FUZZ
@given(data=st.data())
def test_fuzz_encoder_json(fuzz_dirs, data):
    from crossmodal_har.models.encoder_file import load_encoder

    d = fuzz_dirs["enc"]
    _write(d / "encoder.json", _mutate(fuzz_dirs["enc_meta"], data))
    try:
        _loads_or_user_error(lambda: load_encoder(d))
    finally:
        _write(d / "encoder.json", fuzz_dirs["enc_meta"])


def test_fuzzed_bundle_through_cli_has_no_traceback(tmp_path, bundle_dir, recording, capsys):
    """A few fuzz-like bundles through cli.main: exit 0 or 2, never a traceback."""
    meta = json.loads((bundle_dir / "bundle.json").read_text())
    cases = [None, [], "x", {"kind": meta["kind"]}, {**meta, "head": None}, {**meta, "class_names": "abc"},
             {**meta, "encoder": {**meta["encoder"], "config": {"hidden_size": -1}}}]
    for i, value in enumerate(cases):
        d = _copy_bundle(bundle_dir, tmp_path / f"b{i}")
        _write(d / "bundle.json", value)
        rc, err = _run_cli(["predict", "--model", str(d), "--input", str(recording), "--out",
                            str(tmp_path / f"p{i}.csv"), *UNITS], capsys)
        assert rc == 2 and "Traceback" not in err and len(err.strip().splitlines()) == 1, (value, err)


def _valid_results():
    return {"summary": [{"method": "m", "protocol": "knn", "shots": 1, "balanced_accuracy_mean": 0.5}],
            "runs": [], "sources": []}


@FUZZ
@given(data=st.data())
def test_fuzz_results_json(tmp_path_factory, data):
    from crossmodal_har.evaluate.results import load_results

    d = tmp_path_factory.mktemp("res")
    meta = _mutate(_valid_results(), data) if data.draw(st.booleans()) else data.draw(JSON)
    _write(d / "results.json", meta)
    _loads_or_user_error(lambda: load_results(d))


def _valid_store_meta():
    return {"format_version": 1, "video_mode": "none", "num_windows": 2, "class_names": ["a", "b"],
            "preprocess": {}, "shards": [{"name": "s-0000", "n": 2}]}


@FUZZ
@given(data=st.data())
def test_fuzz_store_json(tmp_path_factory, data):
    from crossmodal_har.pairs.store import WindowStore
    from crossmodal_har.pairs.store_file import STORE_JSON

    d = tmp_path_factory.mktemp("store")
    meta = _mutate(_valid_store_meta(), data) if data.draw(st.booleans()) else data.draw(JSON)
    _write(d / STORE_JSON, meta)

    def load():
        s = WindowStore(d)
        len(s), s.shards, s.class_names, s.video_mode, s.preprocess, repr(s)

    _loads_or_user_error(load)


def _valid_ledger_entry():
    return {"session": "s1", "status": "ok", "shards": [{"name": "s1-0000", "session": "s1", "n": 3, "chunk": 0}]}


@FUZZ
@given(data=st.data())
def test_fuzz_ingest_ledger(tmp_path_factory, data):
    from crossmodal_har.pairs.ledger import LEDGER_DIR, read_ledger

    d = tmp_path_factory.mktemp("ledger")
    (d / LEDGER_DIR).mkdir()
    meta = _mutate(_valid_ledger_entry(), data) if data.draw(st.booleans()) else data.draw(JSON)
    name = data.draw(st.sampled_from(["s1.json", "x.json"]))
    _write(d / LEDGER_DIR / name, meta)
    _loads_or_user_error(lambda: read_ledger(d))


@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
@given(data=st.data())
def test_fuzz_results_json_through_report_cli(tmp_path_factory, data):
    """``report`` on a fuzzed results.json: a report or one line and exit 2, never a traceback."""
    import contextlib
    import io

    d = tmp_path_factory.mktemp("rep")
    meta = _mutate(_valid_results(), data) if data.draw(st.booleans()) else data.draw(JSON)
    _write(d / "results.json", meta)
    before = (d / "results.json").read_bytes()
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["-q", "report", str(d / "results.json"), "--out", str(d / "out")])
    assert rc in (0, 2), err.getvalue()
    assert "Traceback" not in err.getvalue()
    assert rc == 0 or len(err.getvalue().strip().splitlines()) == 1, err.getvalue()
    assert (d / "results.json").read_bytes() == before
