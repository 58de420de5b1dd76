"""evaluate/results.py: the typed results files (RunResult, ZeroshotResult), read and written."""

from __future__ import annotations

import json

import pytest

from crossmodal_har.errors import DataError
from crossmodal_har.evaluate.merge import merge_results, read_inputs
from crossmodal_har.evaluate.results import (MERGED_KIND, RunResult, ZeroshotResult, load_results, parse_zeroshot,
                                             write_results)
from crossmodal_har.evaluate.summaries import summarize_runs


def _runs(method, values):
    return [{"method": method, "protocol": "knn", "shots": 5, "seed": s,
             "test": {"accuracy": v, "balanced_accuracy": v, "macro_f1": v}} for s, v in enumerate(values)]


def _evaluation(path, method, values, model="patchtst-tiny", version=True):
    runs = _runs(method, values)
    res = {"method": method, "complete": True, "dataset": {"spec": "toy", "class_names": ["a", "b"]},
           "encoder": {"encoder": method, "model": model}, "runs": runs, "summary": summarize_runs(runs)}
    path.mkdir(parents=True)
    (path / "results.json").write_text(json.dumps({"format_version": 1, **res} if version else res))
    return path


def test_a_results_file_without_a_version_reads_and_knows_its_path(tmp_path):
    d = _evaluation(tmp_path / "a", "siglip", [0.5, 0.7], version=False)
    res = load_results(d)
    assert isinstance(res, RunResult) and res.path == d / "results.json" and res.method == "siglip"
    out = write_results(res, tmp_path / "again.json")
    data = json.loads(out.read_text())
    assert list(data)[0] == "format_version" and data["runs"] == res.runs
    assert "path" not in data and not any(k.startswith("_") for k in data)


def test_a_newer_or_broken_results_file_is_one_line_error(tmp_path):
    d = _evaluation(tmp_path / "a", "siglip", [0.5])
    data = json.loads((d / "results.json").read_text())
    (d / "results.json").write_text(json.dumps({**data, "format_version": 2}))
    with pytest.raises(DataError, match="newer"):
        load_results(d)
    del data["runs"][0]["seed"]
    (d / "results.json").write_text(json.dumps(data))
    with pytest.raises(DataError, match=r"runs\[0\] has no key 'seed'"):
        load_results(d)


def test_merged_results_carry_paths_and_mismatches_as_keys_not_private_ones(tmp_path):
    a = _evaluation(tmp_path / "a", "random", [0.5, 0.6, 0.55])
    b = _evaluation(tmp_path / "b", "siglip", [0.7, 0.8, 0.75], model="convgru-tiny")
    merged = merge_results([a, b], allow_mismatch=True)
    assert merged.kind == MERGED_KIND and merged.reference == "random"
    assert [s["path"] for s in merged.sources] == [str(a / "results.json"), str(b / "results.json")]
    assert merged.sources[1]["mismatch"] == ["architecture"] and "mismatch" not in merged.sources[0]
    text = json.dumps(merged.to_json())
    assert '"_path"' not in text and '"_mismatch"' not in text and '"_pretrain_seed"' not in text
    assert list(merged.to_json())[:4] == ["format_version", "kind", "complete", "sources"]


def test_zeroshot_results_read_with_their_path_and_list_in_their_own_key_order(tmp_path):
    m = {"R@1": 0.1, "R@3": 0.2, "R@10": 0.4, "MRR": 0.15, "chance_R@1": 0.01}
    (tmp_path / "z").mkdir()
    (tmp_path / "z" / "results.json").write_text(json.dumps({"windows": 100, "retrieval": {"imu_to_video": m}}))
    evals, [z] = read_inputs([tmp_path / "z"])
    assert evals == [] and isinstance(z, ZeroshotResult)
    assert z.path == tmp_path / "z" / "results.json" and z.method == "z" and z.evaluated_split == "test"
    assert list(z.listing()) == ["windows", "retrieval", "method", "pretrain_seed", "path"]
    with pytest.raises(DataError, match="no number 'R@3'"):
        parse_zeroshot({"retrieval": {"imu_to_video": {"R@1": 0.1}}}, tmp_path / "x.json")
    written = json.loads(write_results(z, tmp_path / "again.json").read_text())
    assert list(written) == ["format_version", "retrieval", "method", "pretrain_seed", "windows"]
