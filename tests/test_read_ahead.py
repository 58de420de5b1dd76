"""ReadAhead: a recording's chunks decoded a chunk ahead on a thread of their own — the same items in
the same order, the producer's error where it happened, stopping early and reading on, closing; the
calibration pass's decoded-chunk cache replays them bit for bit."""

import threading
import time

import numpy as np
import pytest

from crossmodal_har.errors import DataError
from crossmodal_har.infer.source import ReadAhead


def produced(n, fail_at=None, log=None):
    try:
        for k in range(n):
            if k == fail_at:
                raise DataError("rec.cwa", "corrupt block", line=k)
            if log is not None:
                log.append((k, threading.get_ident()))
            yield k
    finally:
        if log is not None:
            log.append(("closed", threading.get_ident()))


def test_items_in_order_made_on_another_thread():
    log = []
    assert list(ReadAhead(produced(50, log=log), depth=2)) == list(range(50))
    assert {tid for _, tid in log} and threading.get_ident() not in {tid for _, tid in log}
    assert log[-1][0] == "closed"


def test_the_producers_error_comes_after_the_items_before_it():
    it = ReadAhead(produced(10, fail_at=6))
    got = []
    with pytest.raises(DataError, match="corrupt block") as exc:
        for x in it:
            got.append(x)
    assert got == [0, 1, 2, 3, 4, 5] and exc.value.line == 6
    assert list(it) == []  # ended


def test_stop_early_then_read_on_as_the_calibration_pass_and_predict_do():
    it = ReadAhead(produced(30))
    first = [x for _, x in zip(range(12), it)]
    time.sleep(0.05)  # the producer is ahead, waiting for room
    assert first + list(it) == list(range(30))


def test_close_stops_the_producer_and_closes_its_generator_on_its_thread():
    log = []
    it = ReadAhead(produced(10 ** 6, log=log))
    assert next(it) == 0
    it.close()
    deadline = time.monotonic() + 5
    while (not log or log[-1][0] != "closed") and time.monotonic() < deadline:
        time.sleep(0.01)
    assert log[-1][0] == "closed" and len(log) < 10  # at most a few ahead, never the whole recording
    assert log[-1][1] != threading.get_ident()
    with pytest.raises(StopIteration):
        next(it)


def test_an_abandoned_read_ahead_leaves_no_thread_file_or_chunk_behind():
    """A recording abandoned after an error (a study runs many in one process): when the ReadAhead is
    garbage-collected its producer stops and its generator (the open file) is closed."""
    import gc

    log = []
    it = ReadAhead(produced(10 ** 6, log=log))
    assert next(it) == 0
    thread = it._thread
    del it
    gc.collect()
    thread.join(5)
    assert not thread.is_alive() and log[-1][0] == "closed"


def test_close_from_another_thread_ends_a_consumer_waiting_for_the_next_item():
    """A consumer iterating in one thread while another thread closes the ReadAhead ends, never
    hangs (the producer, stopped, still sends the end)."""
    def endless():
        k = 0
        while True:
            yield k
            k += 1

    hung = 0
    for trial in range(20):
        it = ReadAhead(endless())
        consumer = threading.Thread(target=lambda it=it: [None for _ in it], daemon=True)
        consumer.start()
        time.sleep(0.001 * (trial % 5))
        it.close()
        consumer.join(2)
        hung += consumer.is_alive()
    assert hung == 0


def test_decoded_cache_replays_chunks_bit_for_bit_acc_only_ones_without_their_nan_columns():
    from crossmodal_har.infer.source import DecodedCache
    from crossmodal_har.signals.recording import RawChunk

    rng = np.random.default_rng(0)
    acc_only = rng.normal(size=(1000, 6))
    acc_only[:, 3:] = np.nan
    partly = acc_only.copy()
    partly[5, 4] = 0.25  # a table declared accelerometer-only that holds a gyroscope value: kept whole
    both = rng.normal(size=(700, 6))
    both[3, 1] = np.inf
    chunks = [RawChunk(np.arange(len(d)) + k * 1e4, d, k * 1000, None, channels=ch)
              for k, (d, ch) in enumerate([(acc_only, "acc"), (partly, "acc"), (both, "acc+gyro")])]
    cache = DecodedCache()
    for c in chunks:
        cache.put(c)
    got = list(cache.replay())
    assert [g.channels for g in got] == ["acc", "acc", "acc+gyro"]
    for a, b in zip(chunks, got):
        assert np.array_equal(a.t, b.t) and np.array_equal(a.data, b.data, equal_nan=True)
        assert b.data.shape == a.data.shape and b.data.dtype == np.float64 and b.first_row == a.first_row
