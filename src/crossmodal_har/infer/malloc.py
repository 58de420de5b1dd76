"""The C allocator set for a process that streams recordings (``predict``): freed blocks kept.

``predict`` turns a recording into a stream of blocks: every block's arrays (a chunk of samples,
its transposed copy, the resampled block, the windows) are allocated and freed again, a few hundred
times a day of recording. glibc serves an allocation above its *mmap threshold* (128 KiB at first;
glibc raises it by itself, up to 32 MiB, as such blocks are freed) with a fresh ``mmap`` and unmaps
it on ``free``, so that block's memory is faulted in (and zeroed by the kernel) anew the next time;
and it trims the top of a heap once more than its *trim threshold* lies free there (128 KiB at
first, twice the mmap threshold once glibc has raised that). With the mmap threshold set to 32 MiB
and the trim threshold to 256 MiB those blocks stay in the heap and are reused from one block to the
next: on the build machine the 7-day AX6 ``.cwa`` predict took 0.976x the CPU time and 0.967x the
wall time (0.7 s less kernel time a run; paired runs, n = 3) for 6 MB more peak memory.

The cost: the process keeps up to 256 MiB of freed memory per heap for as long as it lives, instead
of handing it back. So the commands set it for their own process (``crossmodal-har predict``, which
exits when it is done, and a study's worker processes), and ``run_predict`` does not: a program that
calls it in a long-lived process (a notebook, a server) decides for itself, by calling
:func:`keep_freed_blocks`.

Only glibc's allocator (Linux) is set, through ``mallopt``; elsewhere (macOS, musl) nothing is done.
Any ``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or ``glibc.malloc.*`` entry of
``GLIBC_TUNABLES`` in the environment leaves glibc's settings to it.
"""

from __future__ import annotations

import ctypes
import logging
import os
import sys

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # mallopt parameters (malloc.h)
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 32 << 20  # the ceiling of glibc's own adjustment on 64-bit systems
TRIM_THRESHOLD = 256 << 20

_set = False


def keep_freed_blocks() -> bool:
    """Set glibc's mmap and trim thresholds for streaming, for the rest of the process's life (once);
    True when they are set."""
    global _set
    if _set:
        return True
    if not sys.platform.startswith("linux") or _user_settings():
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    _set = mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD) == 1 and mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) == 1
    log.debug("glibc malloc: mmap threshold %d, trim threshold %d: %s", MMAP_THRESHOLD, TRIM_THRESHOLD,
              "set" if _set else "refused")
    return _set


def _user_settings() -> bool:
    """Whether the environment already sets glibc's malloc thresholds."""
    return any(os.environ.get(v) for v in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")) or \
        "glibc.malloc." in os.environ.get("GLIBC_TUNABLES", "")
