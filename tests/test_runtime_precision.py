"""predict --precision bf16: torch autocast to bfloat16 where supported, refused elsewhere."""

import pandas as pd
import pytest

from crossmodal_har.errors import UserError
from helpers.bundles import UNIT_KEYS, make_bundle, make_recording, predict_recording


def bf16_here() -> bool:
    import torch

    from crossmodal_har.infer.runtime import bf16_supported

    return bf16_supported(torch.device("cpu"))


def test_bf16_needs_torch(tmp_path):
    with pytest.raises(UserError, match="needs --runtime torch"):
        predict_recording(tmp_path / "b", tmp_path / "r.csv", tmp_path / "o.csv", runtime="onnx", precision="bf16")


@pytest.mark.skipif(not bf16_here(), reason="this CPU has no native bfloat16")
def test_bf16_runs_in_bf16_and_agrees_with_fp32(tmp_path):
    bundle = make_bundle(tmp_path / "bundle")
    rec = make_recording(tmp_path / "rec.csv", seconds=600.0)
    out = {}
    for p in ("fp32", "bf16"):
        predict_recording(bundle, rec, tmp_path / f"{p}.csv", **UNIT_KEYS, precision=p)
        out[p] = pd.read_csv(tmp_path / f"{p}.csv", keep_default_na=False)
    a, b = out["fp32"], out["bf16"]
    assert list(a.status) == list(b.status) and len(a) > 100
    probs = [c for c in a.columns if c.startswith("p_")]
    ok = a.status == "ok"
    pa, pb = a.loc[ok, probs].astype(float).to_numpy(), b.loc[ok, probs].astype(float).to_numpy()
    assert (pa != pb).any()  # it did compute in bf16
    assert abs(pa - pb).max() < 0.05
    assert (a.label == b.label).mean() >= 0.97  # measured on the benchmark bundle: 99.9 %
