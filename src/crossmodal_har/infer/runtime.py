"""Model runtimes for inference: numpy windows in, numpy outputs out, in fixed batches.

- :class:`TorchRunner`: a torch module (eval mode, inference mode).
- :class:`OnnxRunner`: an exported ``model.onnx`` with ONNX Runtime (CPU); refuses a file exported
  from other weights than the bundle's (:data:`DIGEST_KEY` in the ONNX metadata).
- :class:`BatchedRunner`: queues windows and runs a runner in fixed batches of the global window
  sequence, so outputs never depend on how the input was chunked.

torch and onnxruntime are imported only when a runner of that kind is made: the ONNX path of
``predict`` never imports torch.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable, Deque, List, Optional, Union

import numpy as np

from crossmodal_har.errors import DataError, UserError

PathLike = Union[str, "os.PathLike[str]"]
Runner = Callable[[np.ndarray], np.ndarray]  # windows [B, W, 6] float32 -> outputs [B, C]

DIGEST_KEY = "crossmodal_har.bundle_weights_sha256"  # ties an ONNX file to the weights it came from


class StaleExportError(UserError):
    """An ONNX file exported from other weights than the bundle's (``predict --runtime auto`` then
    runs the bundle with torch, as for an unreadable file; ``--runtime onnx`` stops)."""


class TorchRunner:
    """Runs a torch module (eval mode, inference mode) on numpy windows. ``threads``: torch's CPU
    threads for the whole process (``predict --threads``: the program's choice, asked for by the user);
    ``device``: ``cpu``, ``cuda``, ``auto`` or ``cuda:N`` (``--device``; results come back as numpy);
    ``precision``: ``fp32``, or ``bf16`` (``predict --precision``: torch autocast to bfloat16, matrix
    products and convolutions in bf16, the rest in fp32; refused where the device has no bf16 support)."""

    def __init__(self, model: Any, method: str = "forward", threads: Optional[int] = None, device: str = "cpu",
                 precision: str = "fp32"):
        import torch

        # crossmodal_har.device imports torch at its top: imported here, the ONNX path stays torch-free
        from crossmodal_har.device import resolve_device

        if threads:
            torch.set_num_threads(int(threads))
        self.device = resolve_device(device)
        if precision not in PRECISIONS:
            raise UserError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        if precision == "bf16" and not bf16_supported(self.device):
            raise UserError(f"--precision bf16: {self.device} has no bfloat16 support here; use fp32")
        self.bf16 = precision == "bf16"
        self.model = model.to(self.device).eval()
        self.fn = getattr(self.model, method) if method != "forward" else self.model
        #: one CPU thread (torch's setting is the process's): a batch is computed on the calling thread
        self.any_thread = self.device.type == "cpu" and torch.get_num_threads() == 1

    def __call__(self, x: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode(), torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.bf16):
            batch = torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32)).to(self.device)
            return self.fn(batch).float().cpu().numpy()


PRECISIONS = ("fp32", "bf16")


def bf16_supported(device: Any) -> bool:
    """Whether ``device`` (a torch.device) computes in bfloat16 natively (CPU: oneDNN's check for
    AVX512-BF16/AMX or equivalent; CUDA: the GPU's)."""
    import torch

    if device.type == "cuda":
        return bool(torch.cuda.is_bf16_supported())
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


class OnnxRunner:
    """Runs an exported ``model.onnx`` with ONNX Runtime (CPU).

    Args:
        threads: intra-op threads (default: the runtime's).
        weights_sha256: the bundle's :func:`~crossmodal_har.models.bundle.weights_digest`; a file
            exported from other weights is refused (stale export).
    """

    def __init__(self, path: PathLike, threads: Optional[int] = None, weights_sha256: Optional[str] = None):
        import onnxruntime as ort

        opts = ort.SessionOptions()
        if threads:
            opts.intra_op_num_threads = int(threads)
        # no busy-waiting between batches: on a shared machine spinning threads steal CPU from the
        # parser and from other jobs (measured faster under load, same speed otherwise)
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(os.fspath(path), sess_options=opts,
                                                providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise DataError(path, f"cannot load ONNX model ({str(exc).splitlines()[0]})") from None
        self.input_name = self.session.get_inputs()[0].name
        #: one intra-op thread: a batch is computed on the calling thread, the same bits on any thread
        self.any_thread = threads == 1
        if weights_sha256 is not None:
            made_from = self.session.get_modelmeta().custom_metadata_map.get(DIGEST_KEY)
            if made_from is not None and made_from != weights_sha256:
                raise StaleExportError(f"{path} was exported from other weights than the bundle's "
                                       "model.safetensors (stale export); run `crossmodal-har export` again")

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self.input_name: np.ascontiguousarray(x, dtype=np.float32)})[0]


class BatchedRunner:
    """Queues windows and runs ``runner`` in fixed batches of the global window sequence
    (batch ``j`` = windows ``[j*B, (j+1)*B)``), applying ``post`` to each output.

    ``done`` counts windows with results; :meth:`take` releases them in order. ``seconds`` is the
    time spent in the runner.

    With ``background`` the batches run on one worker thread (ONNX Runtime and torch release the
    GIL), overlapping the model with reading and resampling on a second core; at most
    ``max_in_flight`` windows (and at least two batches) wait for it: ``MAX_IN_FLIGHT_WINDOWS``
    (4096 windows of 6 x 250 float32 are 25 MB) where the caller only waits, ``HELPED_IN_FLIGHT_WINDOWS``
    (1024, 6 MB) where it helps (below): with help a longer queue only holds memory (measured: the
    same wall time, 30 MiB less peak on a 1-day .cwa and a 24 h CSV; with 4096 the 7-day .cwa's peak
    grew 15.7 % over the 1-day's, with 1024 13.9 %). Bounded in windows, not batches: with small batches
    a bound of two batches made the reader wait for the model after every 128 windows, so a chunk's
    windows ran while nothing else did (7-day .cwa: wall = CPU).

    When the runner computes a batch to the same bits on any thread (its ``any_thread`` attribute:
    ONNX Runtime with one intra-op thread, torch on the CPU with one thread) the caller does not wait
    idle at the bound: it runs that batch itself (the model is the slower side, so the caller's core
    helps it), and :meth:`flush` takes the batches the worker has not started, from the newest end,
    while the worker takes them from the oldest: the model on both cores with the same two threads.
    Other runners (any callable) run on the worker only, in batch order, and the caller waits.
    Results are kept in batch order, so the outputs are the same either way; an error in the runner
    is raised by the next call that collects it.
    """

    MAX_IN_FLIGHT_WINDOWS = 4096
    HELPED_IN_FLIGHT_WINDOWS = 1024

    def __init__(self, runner: Runner, batch_size: int, post: Callable[[np.ndarray], np.ndarray],
                 background: bool = False):
        self.runner = runner
        self.bs = int(batch_size)
        self.post = post
        self.queue: List[np.ndarray] = []
        self.queued = 0
        self._done = 0  # windows with results
        self.results: List[np.ndarray] = []  # outputs for windows [results_from, done)
        self.results_from = 0
        self.seconds = 0.0
        self.background = background
        self.caller_helps = background and bool(getattr(runner, "any_thread", False))
        self.max_in_flight = self.HELPED_IN_FLIGHT_WINDOWS if self.caller_helps else self.MAX_IN_FLIGHT_WINDOWS
        self._pool: Optional[ThreadPoolExecutor] = None
        # batches handed on, in order: [windows, future, the batch while the worker may not have started it]
        self._flight: Deque[List[Any]] = deque()
        self._lock = threading.Lock()
        self.caller_batches = 0  # batches the caller ran itself (background mode)

    @property
    def done(self) -> int:
        self._collect(block=False)
        return self._done

    def _call(self, batch: np.ndarray) -> np.ndarray:
        t = time.perf_counter()
        out = self.post(self.runner(batch))
        with self._lock:  # the worker and the caller may both be in here
            self.seconds += time.perf_counter() - t
        return out

    def _collect(self, block: bool) -> None:
        while self._flight and (block or self._flight[0][1].done()):
            n, fut, _ = self._flight.popleft()
            self.results.append(fut.result())
            self._done += n

    def _here(self, batch: np.ndarray) -> "Future[np.ndarray]":
        """Run ``batch`` on the calling thread; its outcome (result or error) as a done future."""
        fut: "Future[np.ndarray]" = Future()
        try:
            fut.set_result(self._call(batch))
        except Exception as exc:  # raised, in batch order, by the call that collects it
            fut.set_exception(exc)
        self.caller_batches += 1
        return fut

    def _help(self) -> None:
        """Run here, newest first, the batches the worker has not started (cancelled from its queue)."""
        for entry in reversed(self._flight):
            n, fut, batch = entry
            if batch is None or fut.done():
                continue
            if not fut.cancel():  # the worker has it: so it has (or had) every older one
                break
            entry[1], entry[2] = self._here(batch), None

    def add(self, x: np.ndarray) -> None:
        if len(x):
            self.queue.append(x)
            self.queued += len(x)
        while self.queued >= self.bs:
            self._run(self.bs)

    def flush(self) -> None:
        if self.queued:
            self._run(self.queued)
        if self.caller_helps:
            self._help()
        self._collect(block=True)
        if self._pool is not None:
            self._pool.shutdown()
            self._pool = None

    def _take(self, n: int) -> np.ndarray:
        """The first ``n`` queued windows: a view of the first queued array when it holds them (the
        usual case), else its windows and the next arrays' joined (one batch copied, not the queue)."""
        parts = []
        while n:
            x = self.queue[0]
            parts.append(x[:n])
            if len(x) > n:
                self.queue[0] = x[n:]
            else:
                self.queue.pop(0)
            self.queued -= len(parts[-1])
            n -= len(parts[-1])
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def _run(self, n: int) -> None:
        batch = self._take(n)
        if not self.background:
            self.results.append(self._call(batch))
            self._done += n
            return
        if self._pool is None:
            self._pool = ThreadPoolExecutor(1, thread_name_prefix="model")
        self._collect(block=False)
        limit = max(self.max_in_flight, 2 * self.bs)
        if self.caller_helps and self._waiting() + n > limit:  # the model is behind: run it here (bounded memory)
            self._flight.append([n, self._here(batch), None])
            return
        while self._flight and self._waiting() + n > limit:
            self._flight[0][1].result()  # wait for the oldest (bounded memory)
            self._collect(block=False)
        # the batch is kept while queued only where the caller may take it back (flush)
        self._flight.append([n, self._pool.submit(self._call, batch), batch if self.caller_helps else None])

    def _waiting(self) -> int:
        """Windows handed to the worker and not done yet."""
        return sum(n for n, fut, _ in self._flight if not fut.done())

    def take(self, upto: int) -> np.ndarray:
        """Outputs for windows ``[results_from, upto)``, released from memory."""
        allr = np.concatenate(self.results) if len(self.results) > 1 else self.results[0]
        k = upto - self.results_from
        taken, rest = allr[:k], allr[k:]
        self.results = [rest] if len(rest) else []
        self.results_from = upto
        return taken
