import dataclasses
from typing import List, Optional

import pytest

from crossmodal_har.cli import main
from crossmodal_har.config import apply_overrides, from_dict, to_dict
from crossmodal_har.errors import ConfigError, DataError
from crossmodal_har.io import atomic_write_json, read_json
from crossmodal_har.signals.types import PreprocessConfig


@dataclasses.dataclass
class Inner:
    a: int = 1
    b: Optional[float] = None


@dataclasses.dataclass
class Outer:
    name: str = "x"
    inner: Inner = dataclasses.field(default_factory=Inner)
    tags: List[str] = dataclasses.field(default_factory=list)


def test_from_dict_nested_and_roundtrip():
    cfg = from_dict(Outer, {"name": "y", "inner": {"a": 3, "b": 2}, "tags": ["t"]})
    assert cfg.inner.a == 3 and cfg.inner.b == 2.0 and cfg.tags == ["t"]
    assert from_dict(Outer, to_dict(cfg)) == cfg


def test_unknown_key_is_an_error():
    with pytest.raises(ConfigError, match="unknown key.*nmae"):
        from_dict(Outer, {"nmae": "typo"})
    with pytest.raises(ConfigError, match=r"config\.inner: unknown key\(s\) c\b"):
        from_dict(Outer, {"inner": {"c": 1}})


def test_wrong_type_is_an_error():
    with pytest.raises(ConfigError, match="expected an integer"):
        from_dict(Outer, {"inner": {"a": "three"}})


def test_preprocess_validation():
    assert from_dict(PreprocessConfig, {}).window_samples == 250
    with pytest.raises(ConfigError):
        from_dict(PreprocessConfig, {"normalization": "minmax"})
    with pytest.raises(ConfigError):
        from_dict(PreprocessConfig, {"median_kernel": 4})


def test_overrides():
    d = apply_overrides({"a": {"b": 1}}, ["a.b=2", "c=[1, 2]", "d=hello", "lr=3e-4", "e=1e5x"])
    assert d == {"a": {"b": 2}, "c": [1, 2], "d": "hello", "lr": 3e-4, "e": "1e5x"}


def test_atomic_json_and_errors(tmp_path):
    p = atomic_write_json(tmp_path / "x" / "a.json", {"k": 1})
    assert read_json(p) == {"k": 1}
    assert not list((tmp_path / "x").glob("*.tmp"))
    bad = tmp_path / "bad.json"
    bad.write_text('{\n "k": \n}')
    with pytest.raises(DataError) as ei:
        read_json(bad)
    assert str(ei.value).startswith(f"{bad}:3:")


def test_cli_help_and_version(capsys):
    with pytest.raises(SystemExit) as ei:
        main(["--version"])
    assert ei.value.code == 0
    assert "crossmodal-har" in capsys.readouterr().out


def test_atomic_write_uses_umask_permissions(tmp_path):
    import os
    import stat

    p = atomic_write_json(tmp_path / "perm.json", {})
    umask = os.umask(0)
    os.umask(umask)
    assert stat.S_IMODE(p.stat().st_mode) == 0o666 & ~umask


def test_partial_nested_section_keeps_the_owners_defaults(tmp_path):
    from crossmodal_har.evaluate.harness import EvaluateConfig
    from crossmodal_har.splits import SplitConfig
    from crossmodal_har.train.config import load_pretrain_config

    assert from_dict(SplitConfig, {}).test_fraction == 0.20  # the class default is the evaluation's
    cfg = load_pretrain_config("siglip-tiny", ["split.seed=3"])  # pretraining: 15 % test
    assert (cfg.split.val_fraction, cfg.split.test_fraction, cfg.split.seed) == (0.15, 0.15, 3)
    f = tmp_path / "run.yaml"
    f.write_text("method: siglip\nsplit:\n  val_fraction: 0.2\n")
    cfg = load_pretrain_config(str(f))
    assert (cfg.split.val_fraction, cfg.split.test_fraction, cfg.split.max_tries) == (0.2, 0.15, 200)
    ev = from_dict(EvaluateConfig, {"split": {"seed": 1}, "preprocess": {"window_s": 2.56},
                                    "fit": {"finetune": {"lr": 0.01}}})
    assert (ev.split.test_fraction, ev.split.seed) == (0.20, 1)
    assert ev.preprocess.normalization == "none"  # the evaluation's own preprocess default
    assert ev.fit.finetune.backbone_lr is None  # None = lr / 10


def test_build_config_precedence_and_errors():
    from crossmodal_har.config import build_config

    out = build_config(Outer, {"name": "file", "inner": {"a": 1}}, flags={"name": "flag", "inner.b": None},
                       overrides=["inner.a=5"], where="cmd")
    assert out.name == "flag" and out.inner.a == 5  # defaults < data < flags < --set; None = flag not given
    assert build_config(Outer, flags={"name": None}).name == Outer().name
    with pytest.raises(ConfigError) as ei:
        build_config(Outer, flags={"inner.a": "x"}, where="cmd")
    assert str(ei.value).startswith("cmd.inner.a: expected an integer") and "\n" not in str(ei.value)
