"""Contract tests across every registered encoder (timm style) + registry and save/load behaviour."""

from __future__ import annotations

import json

import pytest
import torch

from crossmodal_har.errors import ConfigError, DataError, UserError
from crossmodal_har.models.encoder_file import load_encoder, save_encoder
from crossmodal_har.models.registry import create_model, list_models, model_config, model_kind

# Names cheap enough to instantiate in a unit test; every registered family must have one.
TINY = [n for n in list_models() if n.endswith("-tiny") or n.endswith("-small")]
BIG = [n for n in list_models() if n not in TINY]
PREPROCESS = {"rate_hz": 50.0, "window_s": 5.0, "stride_s": 2.5, "normalization": "zscore", "median_kernel": 5}


def _input(model, batch: int = 3, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    if model.kind == "imu":
        return torch.randn(batch, model.window, 6, generator=g)
    return torch.randint(0, 256, (batch, model.num_frames, model.input_size, model.input_size, 3),
                         generator=g, dtype=torch.uint8)


def test_every_family_has_a_tiny_variant():
    families = {n.split("-")[0] for n in list_models()}
    tiny_families = {n.split("-")[0] for n in list_models() if n.endswith("-tiny")}
    assert families == tiny_families
    assert {"patchtst", "patchtst-small", "patchtst-tiny", "convgru", "convgru-tiny"} <= set(list_models())
    assert all(model_kind(n) == "imu" for n in list_models("imu"))


@pytest.mark.parametrize("name", list_models())
def test_named_configs_validate(name):
    """Every JSON config (big ones included) parses into its dataclass without building weights."""
    cfg = model_config(name)
    assert isinstance(cfg, dict) and cfg
    with pytest.raises(ConfigError, match="unknown key"):
        create_model(name, not_a_field=1)


@pytest.mark.parametrize("name", TINY)
def test_encoder_contract(name):
    torch.manual_seed(0)
    model = create_model(name)
    assert model.kind in ("imu", "video") and model.model_name == name
    x = _input(model)
    out = model(x)
    assert out.shape == (3, model.embed_dim)
    assert torch.isfinite(out).all()
    out.square().mean().backward()
    no_grad = [k for k, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not no_grad, f"parameters without gradient: {no_grad}"


@pytest.mark.parametrize("name", TINY)
def test_save_load_round_trip(name, tmp_path):
    torch.manual_seed(1)
    model = create_model(name)
    model.eval()
    x = _input(model, seed=2)
    with torch.no_grad():
        ref = model(x)
    save_encoder(model, tmp_path / "run", PREPROCESS, extra={"method": "test"})
    meta = json.loads((tmp_path / "run" / "encoder.json").read_text())
    assert meta["format_version"] == 1 and meta["model"] == name and meta["embed_dim"] == model.embed_dim
    assert meta["preprocess"] == PREPROCESS and meta["extra"] == {"method": "test"}
    loaded, meta2 = load_encoder(tmp_path / "run")
    assert meta2["model"] == name and not loaded.training
    with torch.no_grad():
        assert torch.equal(loaded(x), ref)
    # also accepts the json file path and a parent run dir with encoder/ inside
    load_encoder(tmp_path / "run" / "encoder.json")


def test_load_rejects_wrong_key_set(tmp_path):
    from safetensors.torch import load_file, save_file

    model = create_model("patchtst-tiny")
    save_encoder(model, tmp_path, PREPROCESS)
    state = load_file(str(tmp_path / "encoder.safetensors"))
    dropped = sorted(state)[0]
    del state[dropped]
    state["bogus.weight"] = torch.zeros(2)
    save_file(state, str(tmp_path / "encoder.safetensors"))
    with pytest.raises(DataError) as err:
        load_encoder(tmp_path)
    assert dropped in str(err.value) and "bogus.weight" in str(err.value)


def test_load_rejects_shape_mismatch_and_bad_meta(tmp_path):
    model = create_model("convgru-tiny")
    save_encoder(model, tmp_path, PREPROCESS)
    meta = json.loads((tmp_path / "encoder.json").read_text())
    meta["config"]["hidden_size"] = 24
    meta["embed_dim"] = 24
    (tmp_path / "encoder.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="shape mismatch"):
        load_encoder(tmp_path)
    meta["config"]["typo_field"] = 1
    (tmp_path / "encoder.json").write_text(json.dumps(meta))
    with pytest.raises(DataError, match="typo_field"):
        load_encoder(tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="encoder.json"):
        load_encoder(tmp_path / "empty")
    with pytest.raises(UserError, match="no such"):
        load_encoder(tmp_path / "missing")


def test_registry_errors():
    with pytest.raises(UserError, match="unknown model"):
        create_model("no-such-model")
    with pytest.raises(ConfigError):
        create_model("patchtst-tiny", d_model="big")
    with pytest.raises(ConfigError, match="divisible"):
        create_model("patchtst-tiny", d_model=15)
    with pytest.raises(ConfigError, match="too short"):
        create_model("convgru-tiny", window=20)


def test_pretrained_needs_local_dir_or_permission(tmp_path):
    with pytest.raises(UserError, match="allow-download"):
        create_model("patchtst-tiny", pretrained="namctin/patchtst_etth1_pretrain")


def test_patchtst_pretrained_from_local_dir(tmp_path):
    """A local Hugging Face directory (safetensors) loads offline and gives the same weights."""
    src = create_model("patchtst-tiny")
    src.backbone.save_pretrained(tmp_path / "hf", safe_serialization=True)
    loaded = create_model("patchtst-tiny", pretrained=str(tmp_path / "hf"))
    x = torch.randn(2, 250, 6)
    src.eval(), loaded.eval()
    with torch.no_grad():
        assert torch.allclose(src(x), loaded(x))


def test_patchtst_embedding_is_flattened_cls_tokens():
    model = create_model("patchtst-tiny").eval()
    x = torch.randn(2, 250, 6)
    with torch.no_grad():
        hidden = model.backbone(past_values=x).last_hidden_state
        assert hidden.shape == (2, 6, 15 + 1, 16)  # 15 patches of 16 + CLS
        assert torch.equal(model(x), hidden[:, :, 0, :].reshape(2, -1))


def test_wrong_window_is_a_clear_error():
    model = create_model("patchtst-tiny")
    with pytest.raises(ValueError, match=r"\[B, 250, 6\]"):
        model(torch.randn(2, 200, 6))


def test_freeze_keeps_eval_mode():
    model = create_model("convgru-tiny").freeze()
    model.train()
    assert not model.training and all(not m.training for m in model.modules())
    assert not any(p.requires_grad for p in model.parameters())
    assert model.trainable_parameters() == []


# ---------------------------------------------------------------- video encoders


def _frames(b=2, k=10, s=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (b, k, s, s, 3), generator=g, dtype=torch.uint8)


def test_pixel_normalisation_and_resize():
    from crossmodal_har.models.video_common import CLIP_MEAN, CLIP_STD, IMAGENET_MEAN, IMAGENET_STD, to_pixel_values

    frames = torch.full((1, 2, 8, 8, 3), 255, dtype=torch.uint8)
    frames[..., 1] = 0
    px = to_pixel_values(frames, 8, IMAGENET_MEAN, IMAGENET_STD)
    assert px.shape == (1, 2, 3, 8, 8)
    assert torch.allclose(px[0, 0, 0], torch.full((8, 8), (1 - 0.485) / 0.229))
    assert torch.allclose(px[0, 0, 1], torch.full((8, 8), (0 - 0.456) / 0.224))
    px = to_pixel_values(frames, 4, CLIP_MEAN, CLIP_STD)  # resized 8 -> 4, constant image stays constant
    assert px.shape == (1, 2, 3, 4, 4)
    assert torch.allclose(px[0, 1, 2], torch.full((4, 4), (1 - CLIP_MEAN[2]) / CLIP_STD[2]), atol=1e-5)


def test_videomae_embedding_is_mean_of_last_hidden_state_and_checks_frames():
    from crossmodal_har.models.video_common import IMAGENET_MEAN, IMAGENET_STD, to_pixel_values

    enc = create_model("videomae-tiny").eval()
    x = _frames()
    with torch.no_grad():
        hidden = enc.backbone(pixel_values=to_pixel_values(x, 32, IMAGENET_MEAN, IMAGENET_STD)).last_hidden_state
        assert hidden.shape == (2, 5 * 2 * 2, 32)  # 10 frames / tubelet 2 × (32/16)² patches
        assert torch.allclose(enc(x), hidden.mean(1))
    with pytest.raises(ValueError, match="10 frames"):
        enc(_frames(k=8))
    with pytest.raises(ValueError, match="uint8"):
        enc(x.float())
    with pytest.raises(ConfigError, match="tubelet"):
        create_model("videomae-tiny", num_frames=9)


def test_clip_frame_selection():
    enc = create_model("clip-tiny").eval()
    x = _frames(k=10)
    with torch.no_grad():
        single = {i: enc(x[:, i:i + 1]) for i in (0, 5, 9)}  # a 1-frame clip: its only frame
        assert torch.allclose(enc(x), single[5], atol=1e-6)  # middle = K // 2
        enc3 = create_model("clip-tiny", frame_pooling="mean3").eval()
        enc3.load_state_dict(enc.state_dict())
        expect = (single[0] + single[5] + single[9]) / 3
        assert torch.allclose(enc3(x), expect, atol=1e-6)


def test_frozen_clip_tower_gets_no_gradient_and_stays_eval():
    enc = create_model("clip-tiny").freeze()
    before = {k: v.clone() for k, v in enc.state_dict().items()}
    enc.train()
    assert not enc.training and not enc.backbone.training
    out = enc(_frames())
    assert not out.requires_grad
    head = torch.nn.Linear(enc.embed_dim, 4)
    opt = torch.optim.SGD(list(head.parameters()) + enc.trainable_parameters(), lr=1.0)
    head(out).sum().backward()
    opt.step()
    assert all(torch.equal(before[k], v) for k, v in enc.state_dict().items())


def test_video_pretrained_from_local_hf_dirs(tmp_path):
    """Full checkpoints (CLIP with its text tower, VideoMAE pretraining with its decoder) load offline
    into the encoders, including VideoMAE at 10 frames from a 16-frame checkpoint."""
    from transformers import CLIPConfig, CLIPModel, VideoMAEConfig, VideoMAEForPreTraining

    small = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2, projection_dim=16)
    clip = CLIPModel(CLIPConfig(text_config=small, vision_config=dict(small, image_size=32, patch_size=16),
                                projection_dim=16))
    clip.save_pretrained(tmp_path / "clip")
    enc = create_model("clip-tiny", pretrained=str(tmp_path / "clip"))
    assert torch.equal(enc.backbone.visual_projection.weight, clip.visual_projection.weight)

    vcfg = VideoMAEConfig(image_size=32, patch_size=16, num_frames=16, hidden_size=32, num_hidden_layers=1,
                          num_attention_heads=2, intermediate_size=64, use_mean_pooling=False,
                          decoder_hidden_size=16, decoder_num_attention_heads=2, decoder_intermediate_size=32,
                          decoder_num_hidden_layers=1)
    vmae = VideoMAEForPreTraining(vcfg)
    vmae.save_pretrained(tmp_path / "vmae")
    venc = create_model("videomae-tiny", pretrained=str(tmp_path / "vmae"))
    w = "embeddings.patch_embeddings.projection.weight"
    assert torch.equal(venc.backbone.state_dict()[w], vmae.videomae.state_dict()[w])
    assert venc(_frames()).shape == (2, 32)


# ---------------------------------------------------------------- IMU encoders: equivalence and export


@pytest.mark.parametrize("overrides", [{}, {"patch_stride": 8}, {"scaling": "std"}, {"context_length": 100, "patch_stride": 5}])
def test_patchtst_own_patchify_equals_transformers_forward(overrides):
    model = create_model("patchtst-tiny", **overrides).eval()
    x = torch.randn(3, model.window, 6)
    with torch.no_grad():
        assert torch.allclose(model.hidden_states(x), model.backbone(past_values=x).last_hidden_state, atol=1e-6)


@pytest.mark.parametrize("name,overrides", [("patchtst-tiny", {}), ("patchtst-tiny", {"patch_stride": 8}),
                                            ("convgru-tiny", {})])
def test_imu_encoders_export_to_onnx(name, overrides, tmp_path):
    import io
    import warnings

    import numpy as np
    import onnxruntime as ort

    model = create_model(name, **overrides).eval()
    buf = io.BytesIO()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, (torch.randn(2, 250, 6),), buf, dynamo=False, opset_version=17,
                          input_names=["x"], output_names=["z"], dynamic_axes={"x": {0: "b"}, "z": {0: "b"}})
    sess = ort.InferenceSession(buf.getvalue(), providers=["CPUExecutionProvider"])
    x = torch.randn(5, 250, 6)
    with torch.no_grad():
        ref = model(x).numpy()
    assert np.abs(sess.run(None, {"x": x.numpy()})[0] - ref).max() < 1e-4


def test_pickle_checkpoints_are_refused(tmp_path):
    """A directory with only pytorch_model.bin (pickle) is not loaded: safetensors only."""
    create_model("patchtst-tiny").backbone.save_pretrained(tmp_path)
    for f in tmp_path.glob("*.safetensors"):
        f.rename(tmp_path / "pytorch_model.bin")
    with pytest.raises(UserError, match="safetensors"):
        create_model("patchtst-tiny", pretrained=str(tmp_path))
    with pytest.raises(UserError, match="convgru has no"):
        create_model("convgru-tiny", pretrained=str(tmp_path))


# ------------------------------------------------------------------- every artefact kind loads strictly

def _save_artefact(kind: str, d):
    """Write one artefact of ``kind`` into ``d``; return (its loader, its weights file)."""
    from crossmodal_har.models.bundle import BUNDLE_WEIGHTS, load_bundle, save_bundle
    from crossmodal_har.models.classifier import WindowClassifier, build_head
    from crossmodal_har.models.encoder_file import ENCODER_WEIGHTS
    from crossmodal_har.models.run_file import RUN_WEIGHTS, load_run_model, save_run_model
    from crossmodal_har.signals.types import PreprocessConfig

    enc = create_model("convgru-tiny")
    if kind == "encoder":
        save_encoder(enc, d, PREPROCESS)
        return (lambda: load_encoder(d)), d / ENCODER_WEIGHTS
    if kind == "run":
        save_run_model(enc, d, {"method": "test"})
        return (lambda: load_run_model(d, lambda meta, path: create_model("convgru-tiny"))), d / RUN_WEIGHTS
    spec = {"type": "linear", "in_features": enc.embed_dim, "num_classes": 2}
    save_bundle(d, WindowClassifier(enc, build_head(spec), "zscore"), encoder_name="convgru-tiny",
                encoder_config=enc.model_cfg, head_spec=spec, preprocess=PreprocessConfig(), class_names=["a", "b"])
    return (lambda: load_bundle(d)), d / BUNDLE_WEIGHTS


@pytest.mark.parametrize("change", ["missing", "unexpected", "shape"])
@pytest.mark.parametrize("kind", ["encoder", "run", "bundle"])
def test_every_artefact_kind_loads_strictly(tmp_path, kind, change):
    """One loader for all formats: a missing, extra or mis-shaped weight is refused, naming it."""
    from safetensors.torch import load_file, save_file

    load, weights = _save_artefact(kind, tmp_path)
    load()  # the untouched artefact loads
    state = load_file(str(weights))
    key = next(k for k in sorted(state) if state[k].ndim)
    if change == "missing":
        del state[key]
    elif change == "unexpected":
        state["bogus.weight"] = torch.zeros(2)
    else:
        state[key] = torch.zeros(tuple(n + 1 for n in state[key].shape))
    save_file(state, str(weights))
    expected = {"missing": rf"missing 1 \[{key}\]", "unexpected": r"unexpected 1 \[bogus.weight\]",
                "shape": rf"shape mismatch 1 \[{key}\]"}[change]
    with pytest.raises(DataError, match=expected):
        load()
