"""Progress of a long step, for a person at a terminal and for a log file alike.

:func:`progress` gives a tqdm bar when the output is a terminal, and otherwise a :class:`LogProgress`
that writes one log line (``done/total unit, rate, ETA``) every ``interval_s`` seconds (default 30;
``$CROSSMODAL_HAR_PROGRESS_S`` sets it, e.g. for a test) from a timer thread, so that a step whose
updates are far apart (or that stalls) is still heard from; the timer stops at ``close`` or after ten
intervals without an update. ``enabled=False`` (``--no-progress``)
silences both; ``enabled=True`` forces a bar.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time
from typing import Any, Iterable, Iterator, Optional

from tqdm.auto import tqdm

log = logging.getLogger(__name__)
INTERVAL_ENV = "CROSSMODAL_HAR_PROGRESS_S"
DEFAULT_INTERVAL_S = 30.0


def _clock(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}" if s >= 3600 else f"{s // 60}:{s % 60:02d}"


class LogProgress:
    """tqdm's small API (``update``, ``set_postfix``, ``close``, iteration, ``with``) as log lines."""

    def __init__(self, iterable: Optional[Iterable] = None, *, total: Optional[float] = None, desc: str = "",
                 unit: str = "it", interval_s: Optional[float] = None, logger: Optional[logging.Logger] = None,
                 enabled: bool = True):
        self.iterable = iterable
        if total is None and iterable is not None and hasattr(iterable, "__len__"):
            total = len(iterable)  # type: ignore[arg-type]
        self.total, self.desc, self.unit, self.enabled = total, desc, unit, enabled
        env = os.environ.get(INTERVAL_ENV, "")
        self.interval = float(interval_s if interval_s is not None else (env or DEFAULT_INTERVAL_S))
        self.log = logger or log
        self.n = 0.0
        self.postfix = ""
        self.t0 = self.last = self.last_update = time.monotonic()
        self.lines = 0
        self._stop = threading.Event()
        if enabled and self.interval > 0:
            threading.Thread(target=self._tick, name=f"progress {desc}", daemon=True).start()

    def _tick(self) -> None:
        while not self._stop.wait(self.interval):
            if time.monotonic() - self.last_update > 10 * self.interval:
                return  # nobody updates any more (a step left without close): stop talking
            self._emit()

    def _emit(self) -> None:
        now = time.monotonic()
        self.last = now
        self.lines += 1
        self.log.info(self.line(now))

    def __iter__(self) -> Iterator[Any]:
        for item in self.iterable or ():
            yield item
            self.update(1)

    def __enter__(self) -> "LogProgress":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def set_postfix(self, **kw: Any) -> None:
        self.postfix = ", ".join(f"{k} {v}" for k, v in kw.items())

    def set_postfix_str(self, text: str) -> None:
        self.postfix = text

    def set_description(self, desc: str) -> None:
        self.desc = desc

    def update(self, n: float = 1) -> None:
        self.n += n
        self.last_update = time.monotonic()
        if self.enabled and self.interval <= 0:  # no timer: a line per update
            self._emit()

    def line(self, now: Optional[float] = None) -> str:
        """``desc: done/total unit (pct), rate unit/s, ETA m:ss (postfix)``."""
        elapsed = max((now or time.monotonic()) - self.t0, 1e-9)
        rate = self.n / elapsed
        done = f"{self.n:,.0f}/{self.total:,.0f} {self.unit}" if self.total else f"{self.n:,.0f} {self.unit}"
        text = f"{self.desc}: {done}"
        if self.total:
            text += f" ({100.0 * self.n / self.total:.0f} %)"
        text += f", {rate:.3g} {self.unit}/s"
        if self.total and rate > 0:
            text += f", ETA {_clock(max(self.total - self.n, 0.0) / rate)}"
        text += f", {_clock(elapsed)} elapsed"
        return text + (f" ({self.postfix})" if self.postfix else "")

    def close(self) -> None:
        self._stop.set()
        if self.enabled and self.lines:  # a step long enough to have reported says when it ended
            self.log.info(self.line() + " - done")
        self.enabled = False


def progress(iterable: Optional[Iterable] = None, *, total: Optional[float] = None, desc: str = "",
             unit: str = "it", enabled: Optional[bool] = None, leave: bool = True,
             logger: Optional[logging.Logger] = None) -> Any:
    """A tqdm bar on a terminal (``enabled`` None) or when forced (True); log lines otherwise; nothing when False."""
    if enabled is False:
        return LogProgress(iterable, total=total, desc=desc, unit=unit, enabled=False)
    if enabled or sys.stderr.isatty():
        return tqdm(iterable, total=total, desc=desc, unit=unit, leave=leave)
    return LogProgress(iterable, total=total, desc=desc, unit=unit, logger=logger)
