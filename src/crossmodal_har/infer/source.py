"""The inference source: a recording as a model sees it — read, channels selected, calibrated.

``predict``, ``embed`` and the autocalibration fit read recordings only through
:class:`InferenceSource`, so that ``embed`` embeds exactly the windows ``predict`` classifies:

1. **Reader**: :func:`crossmodal_har.signals.recording.iter_chunks`, lenient (rows with missing
   values pass as NaN rows, for the windower to mark), any table or device file, ``chunk_rows`` rows
   at a time.
2. **Channels**: an accelerometer-only recording is refused (UserError, with ``advice``) by a model
   that reads ``acc+gyro``; for an ``acc`` model the gyroscope is zeroed
   (:func:`crossmodal_har.signals.windows.model_samples`, the one place that selects channels).
3. **Calibration** (:mod:`crossmodal_har.infer.calibration`, van Hees et al. 2014): with ``mode
   auto`` (the default), :meth:`InferenceSource.calibrate` makes a first pass over the file and
   fits per-axis offsets and scales on still 10-s epochs (decoding once: the chunks it read are kept
   on disk, :class:`DecodedCache`, and replayed bit for bit before the reader goes on); every chunk's accelerometer is then
   calibrated — before non-wear detection and windowing — when the fit succeeded and reduced the
   error. ``off``: the recording as read.
4. **Windower** (:meth:`InferenceSource.windower`): for ``recording`` normalisation another first
   pass over the (calibrated) recording gives the statistics the windows are z-scored with, so the
   streamed windows equal the whole-file ones.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import queue
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Dict, Iterator, Optional, Union

import numpy as np

from crossmodal_har.errors import UserError
from crossmodal_har.infer.calibration import (CalibrationConfig, CalibrationResult, StillPointAccumulator,
                                              apply_calibration, fit_sphere)
from crossmodal_har.infer.stream import SignalOps, StreamingWindower, recording_stats_stream
from crossmodal_har.signals.recording import DEFAULT_CHUNK_ROWS, RawChunk, iter_chunks
from crossmodal_har.signals.types import PreprocessConfig
from crossmodal_har.signals.units import Units
from crossmodal_har.signals.windows import model_reads, model_samples

log = logging.getLogger(__name__)

PathLike = Union[str, "os.PathLike[str]"]

#: what to do about an accelerometer-only recording, by who refuses it (``{model}``: the model's channels)
BUNDLE_ADVICE = "this bundle reads {model} — train one with `train-classifier --channels acc`"
MODEL_ADVICE = "this model reads {model} — use a model trained with --channels acc"


def with_stride(preprocess: PreprocessConfig, stride_s: Optional[float]) -> PreprocessConfig:
    """The model's preprocessing with windows every ``stride_s`` seconds (``--stride``; None: its own)."""
    if stride_s is None:
        return preprocess
    if not stride_s > 0:
        raise UserError("--stride must be > 0 seconds")
    return dataclasses.replace(preprocess, stride_s=float(stride_s))


class InferenceSource:
    """One recording for one model: open it (reads the first chunk and checks the channels), then
    optionally :meth:`calibrate`, then iterate: chunks whose ``data`` is what the model reads.

    Args:
        path: table or device file (``fmt``/``tz``: see :func:`crossmodal_har.signals.recording.iter_chunks`).
        units: declared units of a table.
        model_channels: the model's ``PreprocessConfig.channels`` (``acc`` | ``acc+gyro``).
        chunk_rows: rows read at once (memory; results do not depend on it).
        calibration: autocalibration settings (default: ``auto``).
        advice: the end of the refusal of an accelerometer-only recording (:data:`BUNDLE_ADVICE`,
            :data:`MODEL_ADVICE`).
        sensor: which sensor of a device file that holds several (APDM ``.h5``: a label or id).
        damaged: a device file's damaged parts: ``skip`` them (listed in ``device.skipped``) or
            ``refuse`` the file (:mod:`crossmodal_har.signals.devices.base`).

    Raises:
        UserError: an accelerometer-only recording for an ``acc+gyro`` model.
        DataError: what the reader raises on the first chunk.
    """

    def __init__(self, path: PathLike, units: Units, model_channels: str, *, chunk_rows: int = DEFAULT_CHUNK_ROWS,
                 fmt: Optional[str] = None, tz: str = "UTC", calibration: Optional[CalibrationConfig] = None,
                 advice: str = BUNDLE_ADVICE, damaged: str = "skip", sensor: Optional[str] = None):
        self.path = Path(path)
        self.damaged, self.sensor = damaged, sensor
        self.units, self.model_channels, self.chunk_rows, self.fmt, self.tz = units, model_channels, chunk_rows, fmt, tz
        self.calibration = calibration if calibration is not None else CalibrationConfig()
        self.calibration.validate()
        self.fit: Optional[CalibrationResult] = None
        self._iterated = False
        self._cache: Optional[DecodedCache] = None  # the chunks the calibration pass decoded
        self._reread = False  # no room to keep them: the chunks are read again from the start
        self._chunks = self._read()
        self.first: Optional[RawChunk] = next(self._chunks, None)
        #: what a device file says about the recording (None for tables)
        self.device = self.first.device if self.first is not None else None
        #: the recording's channels (``acc`` when it has no gyroscope)
        self.channels = self.first.channels if self.first is not None else "acc+gyro"
        if not model_reads(model_channels, self.channels):
            raise UserError(f"{self.path}: accelerometer-only recording (no gyroscope); "
                            + advice.format(model=model_channels))

    @property
    def first_time(self) -> Optional[float]:
        """The first finite time of the recording (s, the recording's clock), None if it has none."""
        if self.first is None:
            return None
        ft = self.first.t[np.isfinite(self.first.t)]
        return float(ft[0]) if len(ft) else None

    def median_step(self) -> Optional[float]:
        """The median step between the first chunk's finite times (s), None with fewer than two."""
        if self.first is None:
            return None
        ft = self.first.t[np.isfinite(self.first.t)]
        return float(np.median(np.diff(ft))) if len(ft) > 1 else None

    def calibrate(self) -> Optional[CalibrationResult]:
        """With ``calibration.mode == "auto"`` and a non-empty recording: a first pass over the file
        (still 10-s epochs -> sphere fit), whose result the chunks then get when it was applied. Stops
        after ``scan_hours`` when a fit from what was read is already good. None when off or empty."""
        if self.calibration.mode != "auto" or self.first is None:
            return None
        cfg = self.calibration
        acc = StillPointAccumulator(cfg)
        t0 = time.perf_counter()
        tried_at = None
        res: Optional[CalibrationResult] = None
        # Decode once: the calibration pass reads on from the open reader (its first chunk is
        # self.first) and keeps what it decoded on disk; iterating replays those chunks, then reads on.
        self._cache = DecodedCache()
        for k, chunk in enumerate(itertools.chain([self.first], self._chunks)):  # a break leaves the reader open
            if k and self._cache is not None:
                try:
                    self._cache.put(chunk)
                except OSError as e:  # no room: a second read instead (slower, the same chunks)
                    log.warning("%s: no room to keep the decoded recording in %s (%s): the file is read a second "
                                "time instead (set TMPDIR to a disk with room, about 56 bytes a sample, to read "
                                "it once)", self.path, tempfile.gettempdir(), e.strerror or e)
                    self._cache, self._reread = None, True
            acc.push(chunk.t, chunk.data[:, :3])
            if cfg.scan_hours > 0 and tried_at is None and acc.seconds >= cfg.scan_hours * 3600.0:
                tried_at = acc.seconds
                trial = fit_sphere(acc.array(), cfg)
                if trial.applied and trial.error_after_g is not None and trial.error_after_g <= cfg.good_error_g:
                    res = trial
                    break
        if res is None:
            acc.finish()
            res = fit_sphere(acc.array(), cfg)
        res.hours_scanned = acc.seconds / 3600.0
        if res.applied:
            log.info("%s: autocalibration from %d still epochs (%.1f h scanned in %.1f s): offset %s g, scale %s; "
                     "error %.4f -> %.4f g", self.path, res.n_points, res.hours_scanned, time.perf_counter() - t0,
                     np.round(res.offset, 4).tolist(), np.round(res.scale, 4).tolist(), res.error_before_g,
                     res.error_after_g)
        else:
            log.info("%s: autocalibration skipped: %s", self.path, res.reason)
        self.fit = res
        return res

    def calibration_summary(self) -> Dict[str, Any]:
        """The calibration as the summaries write it: mode, and the fit or why there is none."""
        if self.fit is not None:
            return {"mode": self.calibration.mode, **self.fit.to_dict()}
        return {"mode": self.calibration.mode, "applied": False,
                "reason": "off (--calibrate off)" if self.calibration.mode == "off" else "empty recording"}

    def _continue(self, replay: bool = False) -> Iterator[RawChunk]:
        """The first chunk, the calibration pass's decoded chunks (``replay``), then the open reader on;
        or, when they could not be kept, a second pass from the start (its device info replaces the first's)."""
        if self._reread:
            for k, chunk in enumerate(self._read()):
                if k == 0:
                    self.device = chunk.device
                yield chunk
            return
        if self.first is not None:
            yield self.first
        if replay and self._cache is not None:
            yield from self._cache.replay()
            self._cache = None
        yield from self._chunks

    def _read(self) -> Iterator[RawChunk]:
        """One pass over the recording as read (lenient; damaged parts as ``damaged`` says), decoded a
        chunk ahead on a thread of its own (:class:`ReadAhead`)."""
        return ReadAhead(iter_chunks(self.path, self.units, self.chunk_rows, fmt=self.fmt, tz=self.tz,
                                     damaged=self.damaged, sensor=self.sensor))

    def windower(self, cfg: PreprocessConfig, ops: Optional[SignalOps] = None) -> StreamingWindower:
        """The windower for this recording (call after :meth:`calibrate`). With
        ``cfg.normalization == "recording"``: a first pass over the file, through the same reader,
        channels and calibration, gives the recording's statistics."""
        stats = None
        if cfg.normalization == "recording":
            t0 = time.perf_counter()
            chunks = (dataclasses.replace(c, data=self.model_data(c.data))
                      for c in self._read())
            stats = recording_stats_stream(chunks, cfg, ops)
            log.info("%s: recording statistics in %.1f s: mean %s, std %s", self.path, time.perf_counter() - t0,
                     np.round(stats[0], 4).tolist(), np.round(stats[1], 4).tolist())
        return StreamingWindower(cfg, ops, stats=stats)

    def model_data(self, data: np.ndarray) -> np.ndarray:
        """A chunk's samples [n, 6] as the model reads them: channels selected, then the accelerometer
        calibrated when the fit was applied (``data`` itself when neither changes anything)."""
        out = model_samples(data, self.model_channels)
        if self.fit is not None and self.fit.applied:
            if out is data:  # the chunk stays as read: calibrated in a copy (one contiguous copy, then the
                out = data.copy()  # accelerometer in place: 0.6x the time of writing its columns into a new array)
            apply_calibration(out[:, :3], self.fit, out=out[:, :3])
        return out

    def __iter__(self) -> Iterator[Any]:
        """The recording's chunks, ``data`` replaced by :meth:`model_data` (one pass only)."""
        if self._iterated:
            raise RuntimeError("an InferenceSource is read once")
        self._iterated = True
        for chunk in self._continue(replay=True):
            yield dataclasses.replace(chunk, data=self.model_data(chunk.data))
        for part in getattr(self.device, "skipped", None) or []:
            log.warning("%s: damaged part left out: %s", self.path, part.line())


class DecodedCache:
    """Chunks as decoded, kept on disk (a temporary directory under ``$TMPDIR``, removed after the
    replay or with the object): the calibration pass's decoding reused by the predict pass, bit for
    bit (float64 as read: 56 bytes a sample, 0.48 GB a day at 100 Hz, at most ``scan_hours``)."""

    def __init__(self) -> None:
        self._dir: Optional[tempfile.TemporaryDirectory] = None
        self._meta: list = []

    def put(self, chunk: RawChunk) -> None:
        try:
            if self._dir is None:
                self._dir = tempfile.TemporaryDirectory(prefix="crossmodal_har_decoded_")
            stem = Path(self._dir.name) / f"{len(self._meta):06d}"
            # contiguous first: a table's chunk is two views of its [n, 7] block, and np.save writes a
            # strided array element by element (5x slower than a copy and one write)
            np.save(f"{stem}_t.npy", np.ascontiguousarray(chunk.t))
            np.save(f"{stem}_x.npy", np.ascontiguousarray(chunk.data))
        except OSError:
            if self._dir is not None:
                self._dir.cleanup()
            raise
        self._meta.append((stem, dataclasses.replace(chunk, t=None, data=None)))  # not the arrays: memory

    def replay(self) -> Iterator[RawChunk]:
        try:
            for stem, meta in self._meta:
                yield dataclasses.replace(meta, t=np.load(f"{stem}_t.npy"), data=np.load(f"{stem}_x.npy"))
        finally:
            if self._dir is not None:
                self._dir.cleanup()


class ReadAhead:
    """An iterator over ``items`` that produces them on a thread of its own, at most ``depth`` items
    ahead of the consumer (the producer makes the next item only when the consumer has taken one):
    reading and decoding the next chunk of a recording overlaps whatever is done with this one (the
    calibration pass's statistics, the predict pass's resampling and windowing) on a second core, for
    the memory of one more chunk. The items and their order are the producer's; an exception it
    raises is raised by the ``next`` that reaches it, after the items before it.

    The producer is closed on its own thread when it ends, or when the consumer stops early and
    :meth:`close` is called, or when this object is garbage-collected (the thread holds no reference
    to it: a recording abandoned after an error leaves no thread, open file or chunk behind). A
    consumer may stop and come back for more (the calibration pass stops after ``scan_hours``; the
    predict pass reads on from there).
    """

    def __init__(self, items: Iterator[Any], depth: int = 1):
        self._queue: "queue.SimpleQueue[tuple]" = queue.SimpleQueue()
        self._room = threading.Semaphore(max(1, int(depth)))  # items the producer may make before one is taken
        self._closed = threading.Event()
        self._ended = False
        self._thread = threading.Thread(target=_produce, args=(items, self._queue, self._room, self._closed),
                                        name="read-ahead", daemon=True)
        self._thread.start()

    def __iter__(self) -> "ReadAhead":
        return self

    def __next__(self) -> Any:
        if self._ended:
            raise StopIteration
        is_item, value = self._queue.get()
        if is_item:
            self._room.release()  # the producer makes the next one while this one is used
            return value
        self._ended = True
        self._thread.join()
        if value is not None:
            raise value
        raise StopIteration

    def close(self) -> None:
        """Stop the producer (it closes its items on its thread) and drop what it had read ahead."""
        self._ended = True
        self._closed.set()
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:  # at interpreter exit the modules it uses may be gone already
            pass


#: how often a producer waiting for room checks whether its consumer was closed
READ_AHEAD_POLL_S = 0.1


def _produce(items: Iterator[Any], out: "queue.SimpleQueue[tuple]", room: threading.Semaphore,
             closed: threading.Event) -> None:
    """:class:`ReadAhead`'s thread: ``(True, item)`` for each item made while there is room, then
    always an end: ``(False, None)`` (the items ended, or the consumer closed it: one waiting in
    another thread is woken) or ``(False, exception)``; ``items`` closed here, on this thread."""
    end: tuple = (False, None)
    try:
        while _wait_for_room(room, closed):
            try:
                item = next(items)
            except StopIteration:
                return
            out.put((True, item))
    except BaseException as exc:  # handed to the consumer, raised there
        end = (False, exc)
    finally:
        out.put(end)
        close = getattr(items, "close", None)
        if close is not None:
            close()


def _wait_for_room(room: threading.Semaphore, closed: threading.Event) -> bool:
    while not closed.is_set():
        if room.acquire(timeout=READ_AHEAD_POLL_S):
            return not closed.is_set()
    return False
