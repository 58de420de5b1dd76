"""BatchedRunner on a worker thread: the same batches, the same outputs, errors raised in order."""

import threading

import numpy as np
import pytest

from crossmodal_har.infer.runtime import BatchedRunner


class Recorder:
    def __init__(self, fail_at=None):
        self.sizes, self.threads, self.fail_at = [], set(), fail_at

    def __call__(self, x):
        self.threads.add(threading.get_ident())
        if self.fail_at is not None and len(self.sizes) == self.fail_at:
            raise RuntimeError("model failed")
        self.sizes.append(len(x))
        return x.reshape(len(x), -1).sum(axis=1, keepdims=True) * np.arange(1, 4)


def feed(runner, chunks):
    got = []
    for c in chunks:
        runner.add(c)
        if runner.done > runner.results_from:
            got.append(runner.take(runner.done))
    runner.flush()
    if runner.done > runner.results_from:
        got.append(runner.take(runner.done))
    return np.concatenate(got)


def test_background_gives_the_same_batches_and_outputs():
    rng = np.random.default_rng(0)
    chunks = [rng.normal(size=(int(n), 4, 6)).astype(np.float32) for n in rng.integers(0, 90, 40)]
    fg, bg = Recorder(), Recorder()
    a = feed(BatchedRunner(fg, 64, lambda z: z), chunks)
    b = feed(BatchedRunner(bg, 64, lambda z: z, background=True), chunks)
    allx = np.concatenate(chunks)  # every window once, in order, in batches cut across the chunks
    assert np.array_equal(a, b) and np.array_equal(a, Recorder()(allx))
    assert fg.sizes == bg.sizes and set(fg.sizes[:-1]) == {64}
    # a runner that does not say it computes the same bits on any thread runs on the worker only
    assert threading.get_ident() in fg.threads and threading.get_ident() not in bg.threads


def test_when_the_model_is_behind_the_caller_runs_batches_itself_same_outputs():
    """With a runner that computes the same bits on any thread (``any_thread``: ONNX Runtime or torch
    with one thread), the caller never waits idle for the model: past the in-flight bound it runs the batch itself, and
    ``flush`` runs the batches the worker has not started (newest first). Each batch is still one call
    on the same windows and the outputs come back in window order, identical to running in order."""
    rng = np.random.default_rng(1)
    x = rng.normal(size=(64 * 40 + 17, 4, 6)).astype(np.float32)
    worker_gate = threading.Event()
    rec, main = Recorder(), threading.get_ident()

    def slow_worker(batch):
        if threading.get_ident() != main:
            worker_gate.wait(30)  # the worker is stuck on its first batch until the caller has helped
        return rec(batch)

    slow_worker.any_thread = True
    runner = BatchedRunner(slow_worker, 64, post=lambda y: y, background=True)
    assert runner.caller_helps
    assert runner.max_in_flight == BatchedRunner.HELPED_IN_FLIGHT_WINDOWS
    runner.max_in_flight = 640  # 10 batches may wait for the worker
    for a in range(0, len(x), 100):
        runner.add(x[a:a + 100])
    assert runner.caller_batches == 40 - 10  # past the bound: run here, not waited for
    timer = threading.Timer(1.0, worker_gate.set)  # flush takes the 9 the worker has not started
    timer.start()
    runner.flush()
    timer.join()
    assert runner.caller_batches == 30 + 9 + 1  # and the last, partial batch
    assert sorted(rec.sizes) == [17] + [64] * 40
    assert np.array_equal(runner.take(len(x)), Recorder()(x))


def test_an_error_in_a_batch_the_caller_ran_is_raised_in_order():
    calls = []

    def fails_on_third(batch):
        calls.append(len(batch))
        if len(calls) == 3:
            raise RuntimeError("model failed")
        return batch.reshape(len(batch), -1)[:, :2]

    fails_on_third.any_thread = True
    runner = BatchedRunner(fails_on_third, 64, post=lambda y: y, background=True)
    runner.max_in_flight = 0  # the caller runs every batch past the first two
    with pytest.raises(RuntimeError, match="model failed"):
        runner.add(np.ones((64 * 5, 4, 6), np.float32))
        runner.flush()


def test_background_error_is_raised_to_the_caller():
    chunks = [np.ones((50, 4, 6), np.float32)] * 6
    with pytest.raises(RuntimeError, match="model failed"):
        feed(BatchedRunner(Recorder(fail_at=2), 64, lambda z: z, background=True), chunks)


def test_model_batch_default_depends_on_the_runtime():
    """ONNX Runtime's default batch is 64 windows (faster a window on one CPU thread than 256:
    benchmarks/RESULTS.md), torch's 256; a given --batch-size wins."""
    from crossmodal_har.infer.predict_config import PredictConfig

    base = dict(model="m", input="i.csv", out="o.csv")
    assert PredictConfig(**base, runtime="onnx").model_batch_size() == 64
    assert PredictConfig(**base, runtime="torch").model_batch_size() == 256
    assert PredictConfig(**base, runtime="onnx", batch_size=512).model_batch_size() == 512


def test_a_chunk_of_windows_is_handed_to_the_model_without_waiting_for_it():
    """The reader must not wait for the model while a chunk's windows fit in flight: with a model that
    has not started yet, ``add`` of 16 batches returns (the old two-batch bound blocked it after 128
    windows, so the model never overlapped reading: 7-day .cwa wall = CPU). Outputs are unchanged."""
    gate = threading.Event()
    rec = Recorder()

    def held(x):
        gate.wait(30)
        return rec(x)

    runner = BatchedRunner(held, 64, post=lambda y: y, background=True)
    x = np.arange(1024 * 6, dtype=np.float32).reshape(1024, 6)
    adder = threading.Thread(target=runner.add, args=(x,))
    adder.start()
    adder.join(10)
    returned = not adder.is_alive()
    gate.set()
    adder.join()
    runner.flush()
    assert returned, "add() waited for the model with only 1024 windows in flight"
    assert rec.sizes == [64] * 16
    ref = Recorder()
    assert np.array_equal(runner.take(1024), ref(x))


def test_the_runtimes_say_when_a_batch_is_the_same_on_any_thread(tmp_path):
    """ONNX Runtime with one intra-op thread, torch on the CPU with one thread: a batch is computed on
    the calling thread; ONNX Runtime's own thread pool (threads unset) is not claimed to be."""
    import torch

    from crossmodal_har.infer.export import export_onnx
    from crossmodal_har.infer.runtime import OnnxRunner, TorchRunner

    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(24, 3))
    path = export_onnx(model, tmp_path / "m.onnx", 4)
    assert OnnxRunner(path, threads=1).any_thread and not OnnxRunner(path).any_thread
    before = torch.get_num_threads()
    try:
        assert TorchRunner(model, threads=1).any_thread
    finally:
        torch.set_num_threads(before)
