"""A pure-Python reader for GPMF, the GoPro Metadata Format (no I/O, no MP4 knowledge).

Written from GoPro's public format description (README of github.com/gopro/gpmf-parser).

Format, in short:
    Every item is a KLV triple: a 4-byte ASCII key (FourCC), a 4-byte "length" made of
    ``type`` (1 byte, an ASCII type char, or 0 for a nested list of KLVs), ``size`` (1 byte, bytes
    per sample) and ``repeat`` (2 bytes, big-endian, number of samples); then ``size * repeat``
    bytes of big-endian data, padded with junk to the next multiple of 4 bytes.
    Payloads are ``DEVC`` (a device) containing ``STRM`` (one sensor stream each).
    Inside a stream, properties (``SCAL``, ``SIUN``, ``UNIT``, ``TYPE``, ``TSMP``, ``STMP``,
    ``ORIN`` ...) apply to the data KLV that follows them at the same nesting level.

Public API:
    :func:`parse` bytes -> list of :class:`KLV` (nested items parsed recursively);
    :meth:`KLV.values` / :meth:`KLV.text` decode one item;
    :func:`iter_samples` walks DEVC/STRM and yields :class:`SensorBlock` (data + its properties);
    :func:`scaled` applies SCAL; :func:`axis_map` / :func:`apply_axis_map` reorder axes.

Errors are :class:`GpmfError` (a ``ValueError`` carrying the byte offset); callers that know the
file turn them into :class:`crossmodal_har.errors.DataError`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Dict, Iterator, List, Optional, Sequence, Tuple, Union

import numpy as np

__all__ = [
    "GpmfError", "KLV", "SensorBlock", "parse", "parse_typedef", "iter_samples", "scaled",
    "axis_map", "apply_axis_map", "PROPERTY_KEYS", "TYPE_SIZES",
]

# Bytes per element of each type char ('?' complex and 0 nested have no fixed size).
TYPE_SIZES: Dict[str, int] = {
    "b": 1, "B": 1, "c": 1, "d": 8, "f": 4, "F": 4, "G": 16, "j": 8, "J": 8,
    "l": 4, "L": 4, "q": 4, "Q": 8, "s": 2, "S": 2, "U": 16,
}
# Numeric type chars and their big-endian numpy dtypes. 'q'/'Q' are fixed point (Q15.16 / Q31.32),
# read as signed integers then divided by 2**16 / 2**32.
_NUMERIC: Dict[str, str] = {
    "b": ">i1", "B": ">u1", "d": ">f8", "f": ">f4", "j": ">i8", "J": ">u8",
    "l": ">i4", "L": ">u4", "q": ">i4", "Q": ">i8", "s": ">i2", "S": ">u2",
}
_FIXED_POINT = {"q": 2.0**16, "Q": 2.0**32}
_TEXT_TYPES = ("c", "U", "F")

# Keys that describe the data KLV that follows them in a stream (sticky properties), rather
# than being sensor data themselves.
PROPERTY_KEYS = frozenset({
    "DVID", "DVNM", "STNM", "RMRK", "SCAL", "SIUN", "UNIT", "TYPE", "TSMP", "TIMO", "EMPT",
    "STMP", "TMPC", "ORIN", "ORIO", "MTRX", "TICK", "TOCK", "QUAN", "VERS",
})


class GpmfError(ValueError):
    """Malformed GPMF. ``offset`` is the byte offset in the buffer given to :func:`parse`."""

    def __init__(self, message: str, offset: Optional[int] = None):
        self.offset = offset
        super().__init__(message if offset is None else f"{message} (byte {offset})")


@dataclass
class KLV:
    """One GPMF item.

    Attributes:
        key: the FourCC, e.g. ``"ACCL"``.
        type: the type char (``"s"``, ``"f"``, ``"?"`` ...), or ``""`` for a nested container.
        size: bytes per sample (struct size).
        repeat: number of samples.
        raw: the ``size * repeat`` value bytes (padding removed); empty for containers.
        children: parsed items of a nested container (``type == ""``), else empty.
        offset: byte offset of the key in the parsed buffer.
    """

    key: str
    type: str
    size: int
    repeat: int
    raw: bytes = b""
    children: List["KLV"] = field(default_factory=list)
    offset: int = 0

    @property
    def nested(self) -> bool:
        return self.type == ""

    def find(self, key: str) -> List["KLV"]:
        """Direct children with this key, in order."""
        return [c for c in self.children if c.key == key]

    def text(self) -> Union[str, List[str]]:
        """Decode a text item ('c', 'U' or 'F' type), latin-1 (GPMF writes °, ², µ as one byte).

        A 'c' item of ``size`` 1 is one string of ``repeat`` characters; with ``size`` > 1 it is
        ``repeat`` strings of ``size`` characters (e.g. per-axis SIUN). Trailing NULs and spaces go.
        """
        if self.type not in _TEXT_TYPES:
            raise GpmfError(f"{self.key}: type {self.type!r} is not text", self.offset)
        if self.type == "c" and self.size == 1:
            return _clean(self.raw)
        width = 4 if self.type == "F" else self.size
        if self.type == "F" and self.size % 4:
            raise GpmfError(f"{self.key}: FourCC item of size {self.size} (not a multiple of 4)", self.offset)
        parts = [_clean(self.raw[i:i + width]) for i in range(0, len(self.raw), width)]
        return parts

    def values(self, typedef: Optional[str] = None) -> np.ndarray:
        """Decode numeric samples as a 2-D array ``[repeat, elements_per_sample]``.

        Integer and float types keep their natural numpy dtype (native byte order); fixed-point
        'q'/'Q' and complex '?' items (described by ``typedef``, the stream's TYPE string) come back
        as float64. Unscaled: apply :func:`scaled` for SCAL.
        """
        if self.nested:
            raise GpmfError(f"{self.key}: a nested container has no values", self.offset)
        if self.type == "?":
            if typedef is None:
                raise GpmfError(f"{self.key}: complex ('?') samples without a preceding TYPE", self.offset)
            return _decode_complex(self, typedef)
        if self.type not in _NUMERIC:
            raise GpmfError(f"{self.key}: type {self.type!r} is not numeric", self.offset)
        dt = np.dtype(_NUMERIC[self.type])
        if self.size % dt.itemsize:
            raise GpmfError(
                f"{self.key}: sample size {self.size} is not a multiple of {dt.itemsize} for type {self.type!r}",
                self.offset)
        n_el = self.size // dt.itemsize
        arr = np.frombuffer(self.raw, dtype=dt, count=self.repeat * n_el).reshape(self.repeat, n_el)
        if self.type in _FIXED_POINT:
            return arr.astype(np.float64) / _FIXED_POINT[self.type]
        return arr.astype(dt.newbyteorder("="))


def _clean(b: bytes) -> str:
    return b.split(b"\0", 1)[0].decode("latin-1").rstrip()


def parse(buf: bytes, *, base_offset: int = 0) -> List[KLV]:
    """Parse a GPMF buffer into a list of top-level :class:`KLV` items (nested ones recursively).

    A key of four zero bytes ends the list (trailing padding). Raises :class:`GpmfError` on a
    non-ASCII key, an unknown type char, or an item that runs past the end of the buffer
    (truncated data).
    """
    buf = bytes(buf)
    items: List[KLV] = []
    pos = 0
    n = len(buf)
    while pos < n:
        if n - pos < 8:
            if buf[pos:].strip(b"\0"):
                raise GpmfError(f"truncated KLV header ({n - pos} bytes left)", base_offset + pos)
            break
        key_b = buf[pos:pos + 4]
        if key_b == b"\0\0\0\0":
            break  # padding to the end of the payload
        if not all(0x20 <= c < 0x7F for c in key_b):
            raise GpmfError(f"invalid FourCC {key_b!r}", base_offset + pos)
        key = key_b.decode("ascii")
        type_b = buf[pos + 4]
        size = buf[pos + 5]
        repeat = int.from_bytes(buf[pos + 6:pos + 8], "big")
        length = size * repeat
        start = pos + 8
        if start + length > n:
            raise GpmfError(
                f"{key}: item declares {length} bytes but only {n - start} remain (truncated)", base_offset + pos)
        value = buf[start:start + length]
        if type_b == 0:
            children = parse(value, base_offset=base_offset + start)
            item = KLV(key, "", size, repeat, b"", children, base_offset + pos)
        else:
            tchar = chr(type_b)
            if tchar not in TYPE_SIZES and tchar != "?":
                raise GpmfError(f"{key}: unknown type char {tchar!r}", base_offset + pos)
            item = KLV(key, tchar, size, repeat, value, [], base_offset + pos)
        items.append(item)
        pos = start + ((length + 3) & ~3)  # 32-bit alignment
    return items


_TYPEDEF_RE = re.compile(r"([A-Za-z?])(?:\[(\d+)\])?")


def parse_typedef(typedef: str) -> List[str]:
    """Expand a TYPE string into one type char per element: ``"f[3]sL"`` -> f f f s L."""
    out: List[str] = []
    pos = 0
    while pos < len(typedef):
        m = _TYPEDEF_RE.match(typedef, pos)
        if not m or m.group(1) not in TYPE_SIZES:
            raise GpmfError(f"bad TYPE string {typedef!r} at character {pos}")
        out.extend(m.group(1) * int(m.group(2) or 1))
        pos = m.end()
    return out


def _decode_complex(item: KLV, typedef: str) -> np.ndarray:
    chars = parse_typedef(typedef)
    if any(c in ("c", "U", "F", "G") for c in chars):
        # Text members: keep numbers only would silently shift columns; refuse instead.
        raise GpmfError(f"{item.key}: TYPE {typedef!r} has text members; only numeric structs are decoded",
                        item.offset)
    dtype = np.dtype([(f"f{i}", _NUMERIC[c]) for i, c in enumerate(chars)])
    if dtype.itemsize != item.size:
        raise GpmfError(
            f"{item.key}: TYPE {typedef!r} is {dtype.itemsize} bytes but samples are {item.size} bytes", item.offset)
    rec = np.frombuffer(item.raw, dtype=dtype, count=item.repeat)
    out = np.empty((item.repeat, len(chars)), dtype=np.float64)
    for i, c in enumerate(chars):
        col = rec[f"f{i}"].astype(np.float64)
        out[:, i] = col / _FIXED_POINT[c] if c in _FIXED_POINT else col
    return out


@dataclass
class SensorBlock:
    """A data item of one stream in one payload, with the properties in force for it.

    Attributes:
        key: data FourCC (``ACCL``, ``GYRO``, ``GPS5`` ...).
        item: the data :class:`KLV`.
        device_id: DVID of the enclosing DEVC (int or FourCC text), or None.
        device_name: DVNM of the enclosing DEVC, e.g. ``"Camera"``, ``"GoPro Max"``.
        props: property items seen before the data in the same STRM (``SCAL``, ``SIUN``, ``TSMP``,
            ``STMP``, ``ORIN`` ...), the last one of each key winning.
    """

    key: str
    item: KLV
    device_id: Union[int, str, None]
    device_name: str
    props: Dict[str, KLV]

    @property
    def repeat(self) -> int:
        return self.item.repeat

    def prop_text(self, key: str) -> Optional[Union[str, List[str]]]:
        p = self.props.get(key)
        return None if p is None else p.text()

    def prop_number(self, key: str) -> Optional[float]:
        """First value of a numeric property (TSMP, STMP, TIMO, TMPC ...), or None."""
        p = self.props.get(key)
        if p is None or p.repeat == 0:
            return None
        return float(p.values().ravel()[0])

    def units(self) -> Optional[Union[str, List[str]]]:
        """SIUN if present, else UNIT; a per-axis list collapses to one string when all agree."""
        u = self.prop_text("SIUN")
        if u is None:
            u = self.prop_text("UNIT")
        if isinstance(u, list) and u and all(x == u[0] for x in u):
            return u[0]
        return u

    def typedef(self) -> Optional[str]:
        t = self.prop_text("TYPE")
        if isinstance(t, list):
            t = "".join(t)
        return t

    def values(self) -> np.ndarray:
        """Scaled samples, float64 ``[repeat, elements]`` (SCAL applied; axes in stored order)."""
        return scaled(self.item.values(self.typedef()), self.props.get("SCAL"), key=self.key)


def scaled(values: np.ndarray, scal: Optional[KLV], *, key: str = "") -> np.ndarray:
    """Divide raw samples ``[n, e]`` by SCAL: one divisor for all elements, or one per element."""
    out = np.asarray(values, dtype=np.float64)
    if scal is None:
        return out
    div = scal.values().astype(np.float64).ravel()
    if div.size == 1:
        d = div[0]
    elif out.ndim == 2 and div.size == out.shape[1]:
        d = div[None, :]
    else:
        raise GpmfError(f"{key}: SCAL has {div.size} divisors for {out.shape[-1]} elements per sample", scal.offset)
    if np.any(div == 0):
        raise GpmfError(f"{key}: SCAL divisor of zero", scal.offset)
    return out / d


def iter_samples(items: Sequence[KLV], keys: Optional[Sequence[str]] = None) -> Iterator[SensorBlock]:
    """Yield every data item inside ``DEVC``/``STRM`` with the properties in force for it.

    Properties are sticky within a STRM: each applies to data items that follow it in the
    same stream (GPMF's "property hierarchy"). Device-level DVID/DVNM apply to all its streams.

    Args:
        items: top-level items from :func:`parse` (normally DEVC containers).
        keys: only yield these data keys (e.g. ``("ACCL", "GYRO")``); all when None.
    """
    wanted = None if keys is None else set(keys)
    for dev in items:
        if dev.key != "DEVC" or not dev.nested:
            continue
        dev_id: Union[int, str, None] = None
        dev_name = ""
        for child in dev.children:
            if child.key == "DVID" and child.repeat:
                dev_id = child.text()[0] if child.type == "F" else int(child.values().ravel()[0])
            elif child.key == "DVNM" and child.type == "c":
                t = child.text()
                dev_name = t if isinstance(t, str) else "".join(t)
            elif child.key == "STRM" and child.nested:
                props: Dict[str, KLV] = {}
                for it in child.children:
                    if it.key in PROPERTY_KEYS:
                        props[it.key] = it
                    elif not it.nested and (wanted is None or it.key in wanted):
                        yield SensorBlock(it.key, it, dev_id, dev_name, dict(props))


AxisMap = Tuple[Tuple[int, float], ...]


def axis_map(orin: str, orio: str = "XYZ") -> AxisMap:
    """Axis map from an ORIN (input order) to an ORIO (output order) string.

    ``ORIN`` names, for each stored channel, the camera axis it measures; lowercase is the
    negative axis (``"ZXY"`` on HERO5 or ``"YxZ"`` = Y, -X, Z on HERO6+). Returns, for each output
    axis, ``(input channel index, sign)`` such that ``out[k] = sign * in[index]``.
    """
    orin = orin.strip()
    orio = orio.strip() or "XYZ"
    if len(orin) != len(orio):
        raise GpmfError(f"ORIN {orin!r} and ORIO {orio!r} differ in length")
    upper = [c.upper() for c in orin]
    if len(set(upper)) != len(upper):
        raise GpmfError(f"ORIN {orin!r} names an axis twice")
    out = []
    for axis in orio:
        if axis.upper() not in upper:
            raise GpmfError(f"ORIO axis {axis!r} is not in ORIN {orin!r}")
        i = upper.index(axis.upper())
        sign = 1.0 if orin[i].isupper() else -1.0
        if axis.islower():
            sign = -sign
        out.append((i, sign))
    return tuple(out)


def apply_axis_map(values: np.ndarray, amap: AxisMap) -> np.ndarray:
    """Reorder/negate the columns of ``values [n, e]`` with a map from :func:`axis_map`."""
    values = np.asarray(values)
    if values.ndim != 2 or values.shape[1] < len(amap):
        raise GpmfError(f"cannot apply a {len(amap)}-axis map to samples of shape {values.shape}")
    return np.stack([sign * values[:, i] for i, sign in amap], axis=1)
