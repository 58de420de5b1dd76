"""Non-wear detection from the raw accelerometer, streaming (van Hees et al. 2013, as GGIR does it),
and the device's own idle sleep (:func:`in_stretches`).

The method (GGIR ``detect_nonwear_clipping``, defaults ``windowsizes = c(5, 900, 3600)``,
``sdcriter = 0.013``, ``racriter = 0.05``): windows of 60 min in steps of 15 min; a window is
non-wear when, for at least 2 of the 3 accelerometer axes, the standard deviation is below 13 mg
*and* the value range (max - min) is below 50 mg. GGIR has two ways to flag it:

* ``approach="2023"`` (our default): the 60-min window starts at the left edge of its 15-min step and
  the *whole* window is flagged. A still stretch of 4 h is flagged entirely (with the edge
  refinement below, to the minute whatever the grid's alignment).
* ``approach="2013"``: the 60-min window is centred on its 15-min step and only that 15-min step is
  flagged (the original method; it misses about 22.5 min at each end of a still stretch).

Edge refinement (approach 2023, ``edge_step_s`` = 60 s by default; 0 = GGIR's grid exactly): on the
15-min grid alone a still stretch that is off the grid loses up to 15 min. At each edge of a flagged
stretch (a grid step flagged after one that was not, or the reverse), the same 60-min test is applied
to the windows that start between the two grid steps, every ``edge_step_s``, and the stretch is
extended as far as they are still. Every flagged minute still lies in a 60-min window that meets the
criteria. Deciding grid step ``k`` can then flag back to step ``k - 1``, so :meth:`final_until`
lags one step more (rows wait about 75 min).

Streaming with bounded memory: samples are reduced on the fly to statistics of sub-blocks of
``gcd(step, offsets, edge_step_s)`` seconds (1 min by default) on the absolute time grid (count, mean, M2 merged by Chan's formula,
min, max per axis), so the rolling buffer holds one window and one step (75 min) of sub-block statistics,
not samples. Results do not depend on how the recording is cut into chunks (up to float rounding of the
merged variances). A window is evaluated only when its samples span at least ``min_coverage`` of it
(the first and last partial hour of a recording are not judged); gaps inside a window are allowed.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Dict, List, Mapping, Optional, Tuple

import numpy as np

from crossmodal_har.signals.windows import finite_rows


@dataclass
class NonwearConfig:
    """Thresholds and windows of the non-wear detector (written into the summary and the report)."""

    enabled: bool = True
    window_s: float = 3600.0
    step_s: float = 900.0
    std_g: float = 0.013
    range_g: float = 0.05
    min_axes: int = 2
    approach: str = "2023"
    min_coverage: float = 0.75
    edge_step_s: float = 60.0

    def validate(self) -> None:
        if not (self.window_s > 0 and self.step_s > 0 and self.window_s >= self.step_s):
            raise ValueError("nonwear: need window_s >= step_s > 0")
        if not (self.std_g > 0 and self.range_g > 0):
            raise ValueError("nonwear: std_g and range_g must be > 0")
        if self.min_axes not in (1, 2, 3):
            raise ValueError("nonwear: min_axes must be 1, 2 or 3")
        if self.approach not in ("2013", "2023"):
            raise ValueError("nonwear: approach must be 2013 or 2023")
        if not 0 < self.min_coverage <= 1:
            raise ValueError("nonwear: min_coverage must be in (0, 1]")
        if self.edge_step_s < 0 or (self.edge_step_s > 0 and (self.edge_step_s >= self.step_s or abs(
                self.step_s / self.edge_step_s - round(self.step_s / self.edge_step_s)) > 1e-9)):
            raise ValueError("nonwear: edge_step_s must be 0 (off) or divide step_s into >= 2 parts")

    def to_dict(self) -> dict:
        d = asdict(self)
        d["method"] = ("van Hees et al. 2013 (GGIR): non-wear when >= min_axes accelerometer axes have "
                       "std < std_g and range < range_g over window_s, in steps of step_s")
        return d


def nonwear_settings(bundle_section: Optional[Mapping[str, Any]], overrides: Mapping[str, Any]) -> Dict[str, Any]:
    """The settings to build a :class:`NonwearConfig` from (through ``config.from_dict``): the defaults,
    then a bundle's ``nonwear`` section (the settings it was validated with; its descriptive
    ``method`` text, as :meth:`NonwearConfig.to_dict` writes it, is dropped), then ``overrides``
    (the command line's flags)."""
    d = {k: v for k, v in (bundle_section or {}).items() if k != "method"}
    d.update(overrides)
    return d


class NonwearDetector:
    """Feed accelerometer samples (t seconds, acc [n, 3] in g) in time order; ask which times are final
    (:meth:`final_until`) and whether a time is non-wear (:meth:`is_nonwear`)."""

    def __init__(self, cfg: NonwearConfig):
        cfg.validate()
        self.cfg = cfg
        B, L = float(cfg.step_s), float(cfg.window_s)
        if cfg.approach == "2023":
            self.win_off = 0.0  # window of step k: [k*B + win_off, k*B + win_off + L)
            self.flag = (0.0, L)  # flagged: [k*B + flag[0], k*B + flag[1])
        else:
            self.win_off = -(L - B) / 2.0
            self.flag = (0.0, B)
        # edge refinement (approach 2023): windows between grid steps every edge_step_s at the edges
        self.refine = cfg.approach == "2023" and cfg.edge_step_s > 0
        self.sub = _gcd_s([B, L, self.win_off] + ([cfg.edge_step_s] if self.refine else []))
        self.edge = int(round(cfg.edge_step_s / self.sub)) if self.refine else 0
        self.prev_flagged = False
        self.edge_minutes = 0.0
        self.per_step = int(round(B / self.sub))
        self.per_win = int(round(L / self.sub))
        self.off_sub = int(round(self.win_off / self.sub))
        self.blocks: Dict[int, np.ndarray] = {}  # sub index -> [5, 3]: n, mean, M2, min, max; + times
        self.btimes: Dict[int, Tuple[float, float]] = {}
        self.cur = None  # highest sub-block index seen
        self.next_k = None  # first undecided step
        self.done = False
        self.intervals: List[List[float]] = []  # flagged [start, end), merged, in time order
        self.windows_evaluated = 0
        self.windows_nonwear = 0

    # ------------------------------------------------------------------ input

    def push(self, t: np.ndarray, acc: np.ndarray) -> None:
        # the axes as contiguous rows [3, n] (a column of [n, 6] is strided: each reduction below was
        # 3x slower; over rows of [3, n] 0.6x the time of columns of [n, 3], the same sums in the same order)
        acc = np.ascontiguousarray(acc.T)
        good = finite_rows(t, acc.T)
        if good is not None:  # (no copies when every row is good, the usual case)
            t, acc = t[good], acc[:, good]
        if not len(t):
            return
        idx = np.floor(t / self.sub).astype(np.int64)
        if self.next_k is None:
            k0 = int(idx[0]) // self.per_step
            self.next_k = k0 - int(math.ceil(self.per_win / self.per_step))
        starts = np.concatenate([[0], np.flatnonzero(np.diff(idx)) + 1])
        ends = np.concatenate([starts[1:], [len(t)]])
        # statistics of every sub-block run at once (numpy), then merged one by one into the buffer;
        # each run's deviations from its mean, squared in place
        n = (ends - starts).astype(np.float64)
        mean = (np.add.reduceat(acc, starts, axis=1) / n[None, :]).T  # [runs, 3]
        dev = np.empty(acc.shape, mean.dtype)  # float64 (the mean's) whatever the input's float type
        for j, (a, b) in enumerate(zip(starts.tolist(), ends.tolist())):
            np.subtract(acc[:, a:b], mean[j][:, None], out=dev[:, a:b])
        np.multiply(dev, dev, out=dev)
        m2 = np.add.reduceat(dev, starts, axis=1).T
        lo, hi = np.minimum.reduceat(acc, starts, axis=1).T, np.maximum.reduceat(acc, starts, axis=1).T
        for j, (a, b) in enumerate(zip(starts, ends)):
            new = np.stack([np.full(3, n[j]), mean[j], m2[j], lo[j], hi[j]])
            self._merge(int(idx[a]), float(t[a]), float(t[b - 1]), new)
        self.cur = int(idx[-1])
        self._decide(final=False)

    def finish(self) -> None:
        self._decide(final=True)
        self.done = True

    def _merge(self, i: int, t0: float, t1: float, new: np.ndarray) -> None:
        """Merge the statistics ``new`` ([5, 3]: n, mean, M2, min, max) of samples at times
        ``t0 .. t1`` into sub-block ``i``."""
        old = self.blocks.get(i)
        if old is None:
            self.blocks[i] = new
            self.btimes[i] = (t0, t1)
            return
        na, nb = old[0], new[0]
        nt = na + nb
        d = new[1] - old[1]
        old[2] = old[2] + new[2] + d * d * na * nb / nt
        old[1] = old[1] + d * nb / nt
        old[0] = nt
        old[3] = np.minimum(old[3], new[3])
        old[4] = np.maximum(old[4], new[4])
        self.btimes[i] = (self.btimes[i][0], t1)

    # ------------------------------------------------------------------ decisions

    def _decide(self, final: bool) -> None:
        if self.next_k is None or self.cur is None:
            return
        keep_back = 1 if self.refine else 0  # edge refinement looks one step back
        while True:
            k = self.next_k
            s0 = k * self.per_step + self.off_sub
            s1 = s0 + self.per_win  # sub-blocks [s0, s1)
            if s0 > self.cur:
                break
            if s1 > self.cur and not final:  # its last sub-block may still grow
                break
            if not self.prev_flagged and self.blocks:
                # no data before the next sub-block (a gap, a jump of years): its windows are all
                # undecided and flag nothing, so skip to the first one that holds it (bounded by the
                # number of sub-blocks with data, not by the span of time)
                first = min(self.blocks)
                k_data = -(-(first - self.off_sub - self.per_win + 1) // self.per_step)
                if k_data > k:
                    self.next_k = k_data
                    continue
            still = self._window(s0)
            flagged = bool(still)
            if still is not None:
                self.windows_evaluated += 1
                if still:
                    self.windows_nonwear += 1
            if self.refine and flagged != self.prev_flagged:
                self._refine_edge(k, leading=flagged)
            if flagged:
                self._flag(k * self.cfg.step_s + self.flag[0], k * self.cfg.step_s + self.flag[1])
            self.prev_flagged = flagged
            self.next_k = k + 1
            # keep only the sub-blocks later windows (and edge refinements) need
            keep_from = (k + 1 - keep_back) * self.per_step + self.off_sub
            for i in [i for i in self.blocks if i < keep_from]:
                del self.blocks[i]
                del self.btimes[i]

    def _window(self, s0: int) -> "bool | None":
        """Whether the window of sub-blocks ``[s0, s0 + per_win)`` is still; None when its samples span
        less than ``min_coverage`` of it (not judged)."""
        present = [i for i in range(s0, s0 + self.per_win) if i in self.blocks]
        if not present:
            return None
        t_lo = self.btimes[present[0]][0]
        t_hi = self.btimes[present[-1]][1]
        if t_hi - t_lo < self.cfg.min_coverage * self.cfg.window_s:
            return None
        return self._still(present)

    def _refine_edge(self, k: int, leading: bool) -> None:
        """Windows between grid steps ``k - 1`` and ``k``, every ``edge_step_s``: at a leading edge
        (``k`` flagged, ``k - 1`` not) extend the stretch back while they are still; at a trailing
        edge (``k - 1`` flagged, ``k`` not) extend it forward while they are still."""
        base = (k - 1) * self.per_step + self.off_sub
        ms = range(self.per_step - self.edge, 0, -self.edge) if leading else \
            range(self.edge, self.per_step, self.edge)
        best = None
        for m in ms:
            if not self._window(base + m):
                break
            best = m
        if best is not None:
            a = (k - 1) * self.cfg.step_s + best * self.sub
            self._flag(a, a + self.cfg.window_s)
            self.edge_minutes += abs(best - (self.per_step if leading else 0)) * self.sub / 60.0

    def _still(self, present: List[int]) -> bool:
        st = np.stack([self.blocks[i] for i in present])  # [m, 5, 3]: n, mean, M2, min, max
        n, mean, m2 = st[:, 0], st[:, 1], st[:, 2]
        tot = n.sum(axis=0)
        mu = (n * mean).sum(axis=0) / tot
        m2_all = m2.sum(axis=0) + (n * (mean - mu) ** 2).sum(axis=0)  # Chan et al.'s merge, all at once
        lo, hi = st[:, 3].min(axis=0), st[:, 4].max(axis=0)
        sd = np.sqrt(m2_all / np.maximum(tot - 1, 1))  # sample std, as R's sd()
        axes = (sd < self.cfg.std_g) & ((hi - lo) < self.cfg.range_g)
        return int(axes.sum()) >= self.cfg.min_axes

    def _flag(self, a: float, b: float) -> None:
        if self.intervals and a <= self.intervals[-1][1]:
            self.intervals[-1][1] = max(self.intervals[-1][1], b)
        else:
            self.intervals.append([a, b])

    # ------------------------------------------------------------------ queries

    def final_until(self) -> float:
        """Times below this are decided (no later window can flag them)."""
        if self.done:
            return math.inf
        if self.next_k is None:
            return -math.inf
        # deciding step next_k may also flag (edge refinement) back to step next_k - 1
        return (self.next_k - (1 if self.refine else 0)) * self.cfg.step_s + self.flag[0]

    def is_nonwear(self, t: np.ndarray) -> np.ndarray:
        """[n] bool: which times lie in a flagged interval (only meaningful below :meth:`final_until`)."""
        t = np.asarray(t, dtype=np.float64)
        out = np.zeros(len(t), bool)
        for a, b in self.intervals:
            out |= (t >= a) & (t < b)
        return out

    def forget_before(self, t: float) -> None:
        """Drop flagged intervals that end before ``t`` (bounded memory over days)."""
        while self.intervals and self.intervals[0][1] < t:
            self.intervals.pop(0)

    def stats(self) -> dict:
        return {"windows_evaluated": self.windows_evaluated, "windows_nonwear": self.windows_nonwear,
                "edge_refinement_min": self.edge_minutes}


def _gcd_s(values: List[float]) -> float:
    """Greatest common divisor of durations in seconds (to 1 ms)."""
    g = 0
    for v in values:
        g = math.gcd(g, abs(int(round(v * 1000))))
    return g / 1000.0


def in_stretches(t: np.ndarray, stretches: List[Tuple[float, float]]) -> np.ndarray:
    """True where ``t`` lies in one of the ``[start, end)`` stretches (sorted, not overlapping): the
    windows of a device's idle sleep (``DeviceInfo.idle_sleep``) by their middle."""
    t = np.asarray(t, np.float64)
    if not stretches:
        return np.zeros(t.shape, bool)
    s = np.asarray(stretches, np.float64)
    k = np.searchsorted(s[:, 0], t, side="right") - 1
    return (k >= 0) & (t < s[np.clip(k, 0, None), 1])
