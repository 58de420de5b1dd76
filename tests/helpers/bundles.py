"""A tiny random classifier bundle and a simulated long recording, for the predict / embed / export
tests (tests/test_predict.py, tests/test_bundle_export.py), a bundle trained by the library, and predict /
embed run through the library."""

from pathlib import Path

import numpy as np
import pandas as pd

CLASSES = ["rest", "walk", "turn"]
COLS = ["time", "acc_x", "acc_y", "acc_z", "gyro_x", "gyro_y", "gyro_z"]


def make_bundle(out: Path, model: str = "patchtst-tiny", normalization: str = "none", seed: int = 0,
                channels: str = "acc+gyro") -> Path:
    """A random classifier bundle of ``model``; ``channels="acc"`` for accelerometer-only recordings."""
    import torch

    from crossmodal_har.models.bundle import save_bundle
    from crossmodal_har.models.classifier import WindowClassifier, build_head
    from crossmodal_har.models.registry import create_model, with_input_channels
    from crossmodal_har.signals.types import PreprocessConfig

    torch.manual_seed(seed)
    pre = PreprocessConfig(normalization=normalization, channels=channels)
    enc = create_model(model, **with_input_channels(model, {}, pre.n_channels)) if channels == "acc" else \
        create_model(model)
    spec = {"type": "linear", "in_features": enc.embed_dim, "num_classes": len(CLASSES)}
    head = build_head(spec)
    with torch.no_grad():  # make logits differ clearly so labels are not decided by rounding
        head.weight.mul_(20.0)
    m = WindowClassifier(enc, head, normalization)
    save_bundle(out, m, encoder_name=model, encoder_config=enc.model_cfg, head_spec=spec,
                preprocess=pre, class_names=CLASSES,
                metrics={"balanced_accuracy": 0.5}, provenance={"made_by": "test"})
    return out


def make_recording(path: Path, rate: float = 100.0, seconds: float = 240.0, seed: int = 0) -> Path:
    """ms timestamps with jitter, acc in m/s^2: activities change every 40 s; one 3 s gap, a run of
    empty cells, and a 20 s dead-sensor stretch."""
    rng = np.random.default_rng(seed)
    n = int(seconds * rate)
    t = np.arange(n) / rate + rng.uniform(0, 0.3 / rate, n)
    x = rng.normal(0, 0.03, (n, 6))
    x[:, 2] += 1.0
    seg = (t // 40).astype(int) % 3
    x[seg == 1, 0] += 0.6 * np.sin(2 * np.pi * 1.8 * t[seg == 1])
    x[seg == 2, 5] += 2.0
    dead = (t > 150) & (t < 170)
    x[dead] = [0.0, 0.0, 1.0, 0.0, 0.0, 0.0]
    df = pd.DataFrame(np.column_stack([t * 1000.0, x[:, :3] * 9.80665, x[:, 3:]]), columns=COLS)
    df = df[~((t > 60.0) & (t < 63.0))]  # gap
    df.iloc[9000:9004, 1:4] = np.nan  # empty cells
    if path.suffix == ".parquet":
        df.to_parquet(path, index=False)
    else:
        df.to_csv(path, index=False, float_format="%.6f")
    return path


UNITS = ["--acc-unit", "m/s^2", "--gyro-unit", "rad/s", "--time-unit", "ms"]


def train_bundle(dataset: Path, out: Path, **flags):
    """A bundle trained through the library as ``crossmodal-har train-classifier`` trains it (no
    progress bars); ``flags`` are TrainClassifierConfig keys, dotted for nesting
    (``fit.supervised.epochs``). Returns the :class:`TrainedClassifier`."""
    from crossmodal_har.config import build_config
    from crossmodal_har.evaluate.train_classifier import TrainClassifierConfig, train_classifier

    cfg = build_config(TrainClassifierConfig, flags={"dataset": str(dataset), **flags}, where="test")
    return train_classifier(cfg, out, progress=False)


# UNITS as PredictConfig / EmbedConfig keys
UNIT_KEYS = {"units.acc_unit": "m/s^2", "units.gyro_unit": "rad/s", "units.time_unit": "ms"}


def _keys(keys):
    return {k: str(v) if isinstance(v, Path) else v for k, v in keys.items()}


def predict_recording(model: Path, rec: Path, out: Path, **keys):
    """``predict`` through the library as the command runs it (no progress bar); ``keys`` are
    PredictConfig keys, dotted for nesting (``nonwear.enabled``; paths may be Paths). Returns the
    :class:`~crossmodal_har.infer.predict_config.PredictResult`."""
    from crossmodal_har.config import build_config
    from crossmodal_har.infer.predict import run_predict
    from crossmodal_har.infer.predict_config import PredictConfig

    cfg = build_config(PredictConfig, flags=_keys({"model": model, "input": rec, "out": out, **keys}), where="test")
    return run_predict(cfg, progress=False)


def embed_recording(rec: Path, out: Path, **keys):
    """``embed`` through the library as the command runs it; ``keys`` are EmbedConfig keys (``model`` or
    ``encoder``, dotted for nesting). Returns the :class:`~crossmodal_har.infer.embed.EmbedResult`."""
    from crossmodal_har.config import build_config
    from crossmodal_har.infer.embed import EmbedConfig, run_embed

    return run_embed(build_config(EmbedConfig, flags=_keys({"input": rec, "out": out, **keys}), where="test"))


def make_acc_bundle(out: Path, model: str = "patchtst-tiny", seed: int = 0) -> Path:
    """A random accelerometer-only bundle (``preprocess.channels = acc``): reads AX3 / GENEActiv files."""
    import torch

    from crossmodal_har.evaluate.protocols import EncoderSource
    from crossmodal_har.models.bundle import save_bundle
    from crossmodal_har.models.classifier import WindowClassifier
    from crossmodal_har.signals.types import PreprocessConfig

    torch.manual_seed(seed)
    pre = PreprocessConfig(channels="acc", normalization="none")
    src = EncoderSource.random(model, pre)
    enc = src.build(pretrained=False)
    head = torch.nn.Linear(enc.embed_dim, 2)
    save_bundle(out, WindowClassifier(enc, head, "none"), encoder_name=src.model_name, encoder_config=enc.model_cfg,
                head_spec={"type": "linear", "in_features": enc.embed_dim, "num_classes": 2}, preprocess=pre,
                class_names=["still", "move"])
    return out
