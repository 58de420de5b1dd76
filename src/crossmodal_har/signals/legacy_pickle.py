"""A restricted unpickler for old pandas DataFrame pickles (read as data, nothing executed).

Pickles written by old pandas reference classes that no longer exist or cannot be rebuilt by
modern pandas (``object.__new__(BlockManager)`` is refused). Instead of importing anything named in
the pickle, :class:`LegacyFrameUnpickler` allows only an explicit whitelist of globals and maps
each to an inert stand-in here that records its pickled state; :func:`frame_columns` then rebuilds
the columns as numpy arrays. Any other global (``os.system``, ``builtins.eval``, ...) is an error,
so a malicious file cannot run code.
"""

from __future__ import annotations

import pickle
from typing import Any, Dict, Tuple

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references something outside the whitelist."""


class _Stub:
    """An inert object that records the state it is given."""

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: Any = None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class FrameStub(_Stub):
    """Stands in for ``pandas.DataFrame``; state is ``{"_data": ManagerStub, ...}``."""


class ManagerStub(_Stub):
    """Stands in for ``pandas...BlockManager``; state is (axes, block values, block items, extra)."""


class IndexStub(_Stub):
    """Stands in for pandas Index classes; ``attrs`` holds ``data`` / ``start, stop, step`` / ``name``."""

    kind = "Index"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.attrs: Dict[str, Any] = {}


class RangeIndexStub(IndexStub):
    kind = "RangeIndex"


class BlockStub(_Stub):
    """Stands in for a pandas Block (only in some pickle versions)."""


class ArrayStub(_Stub):
    """Stands in for ``numpy.ndarray`` until its state arrives; ``array`` is the real array."""

    array: Any = None

    def __setstate__(self, state: Any) -> None:
        # numpy ndarray state: (version, shape, dtype, is_fortran, rawdata)
        if not isinstance(state, tuple) or len(state) not in (4, 5):
            raise UnsafePickleError("unexpected ndarray state")
        if len(state) == 5:
            _, shape, dtype, fortran, raw = state
        else:
            shape, dtype, fortran, raw = state
        dtype = _as_dtype(dtype)
        shape = tuple(int(s) for s in shape)
        if dtype == np.dtype(object):
            if not isinstance(raw, list):
                raise UnsafePickleError("object array without a list of items")
            items = [_plain(v) for v in raw]
            arr = np.empty(len(items), dtype=object)
            arr[:] = items
            arr = arr.reshape(shape, order="F" if fortran else "C")
        else:
            if isinstance(raw, str):
                raw = raw.encode("latin1")
            if not isinstance(raw, (bytes, bytearray)):
                raise UnsafePickleError("array data is not bytes")
            arr = np.frombuffer(bytes(raw), dtype=dtype).reshape(shape, order="F" if fortran else "C")
        self.array = arr


class _NdarrayType:
    """Marker for the ``numpy.ndarray`` global (only used as an argument of ``_reconstruct``)."""


class DtypeStub(_Stub):
    """Stands in for ``numpy.dtype(spec, align, copy)``; the BUILD state sets the byte order."""

    def __init__(self, spec: Any = "f8", align: Any = 0, copy: Any = 1) -> None:
        super().__init__(spec)
        if not isinstance(spec, str) or not spec.isascii() or len(spec) > 8:
            raise UnsafePickleError(f"unexpected dtype spec {spec!r}")
        self.spec = spec

    def __setstate__(self, state: Any) -> None:
        self.state = state

    def real(self) -> np.dtype:
        dt = np.dtype(self.spec)
        order = self.state[1] if isinstance(self.state, tuple) and len(self.state) > 1 else "|"
        if order in ("<", ">"):
            dt = dt.newbyteorder(order)
        return dt


def _as_dtype(obj: Any) -> np.dtype:
    if isinstance(obj, DtypeStub):
        return obj.real()
    raise UnsafePickleError(f"unexpected dtype object {type(obj).__name__}")


def _plain(v: Any) -> Any:
    if v is None or isinstance(v, (str, int, float, bool)):
        return v
    raise UnsafePickleError(f"unexpected object {type(v).__name__} in an object array")


def _reconstructor(cls: Any, base: Any, state: Any) -> Any:
    """``copy_reg._reconstructor`` restricted to the stand-in classes."""
    if not (isinstance(cls, type) and issubclass(cls, _Stub)) or base is not object or state is not None:
        raise UnsafePickleError(f"refusing to reconstruct {cls!r}")
    return cls.__new__(cls)


def _np_reconstruct(subtype: Any, shape: Any, dtype_char: Any) -> ArrayStub:
    if subtype is not _NdarrayType:
        raise UnsafePickleError("refusing to reconstruct an ndarray subclass")
    return ArrayStub()


def _codecs_encode(text: Any, encoding: Any = "utf-8", errors: Any = "strict") -> bytes:
    if not isinstance(text, str) or encoding != "latin1":
        raise UnsafePickleError("unexpected _codecs.encode call")
    return text.encode("latin1")


def _new_index(cls: Any, d: Any) -> IndexStub:
    if not (isinstance(cls, type) and issubclass(cls, IndexStub)) or not isinstance(d, dict):
        raise UnsafePickleError("unexpected pandas _new_Index call")
    obj = cls()
    obj.attrs = dict(d)
    return obj


_WHITELIST = {
    ("copy_reg", "_reconstructor"): _reconstructor,
    ("copyreg", "_reconstructor"): _reconstructor,
    ("__builtin__", "object"): object,
    ("builtins", "object"): object,
    ("__builtin__", "slice"): slice,
    ("builtins", "slice"): slice,
    ("_codecs", "encode"): _codecs_encode,
    ("numpy.core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _np_reconstruct,
    ("numpy", "ndarray"): _NdarrayType,
    ("numpy", "dtype"): DtypeStub,
    ("pandas.core.frame", "DataFrame"): FrameStub,
    ("pandas.core.internals.managers", "BlockManager"): ManagerStub,
    ("pandas.core.internals", "BlockManager"): ManagerStub,
    ("pandas.core.internals.blocks", "Block"): BlockStub,
    ("pandas.core.internals.blocks", "FloatBlock"): BlockStub,
    ("pandas.core.internals.blocks", "IntBlock"): BlockStub,
    ("pandas.core.indexes.base", "_new_Index"): _new_index,
    ("pandas.core.indexes.base", "Index"): IndexStub,
    ("pandas.core.indexes.numeric", "Int64Index"): IndexStub,
    ("pandas.core.indexes.numeric", "Float64Index"): IndexStub,
    ("pandas.core.indexes.range", "RangeIndex"): RangeIndexStub,
}


class LegacyFrameUnpickler(pickle.Unpickler):
    """Unpickler that resolves only whitelisted globals, to inert stand-ins."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _WHITELIST[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"global {module}.{name} is not allowed in this data file") from None


def _unwrap(obj: Any) -> Any:
    return obj.array if isinstance(obj, ArrayStub) else obj


def index_values(idx: Any) -> np.ndarray:
    """Values of a pickled Index / RangeIndex stand-in."""
    if isinstance(idx, RangeIndexStub):
        a = idx.attrs
        return np.arange(int(a.get("start", 0)), int(a["stop"]), int(a.get("step", 1)))
    if isinstance(idx, IndexStub):
        return np.asarray(_unwrap(idx.attrs["data"]))
    raise UnsafePickleError(f"unexpected index object {type(idx).__name__}")


def frame_columns(frame: Any) -> Tuple[Dict[str, np.ndarray], int]:
    """Rebuild ``{column: 1-D array}`` and the row count from a :class:`FrameStub`."""
    if not isinstance(frame, FrameStub) or not isinstance(frame.state, dict):
        raise UnsafePickleError("expected a pickled DataFrame")
    mgr = frame.state.get("_data") or frame.state.get("_mgr")
    if not isinstance(mgr, ManagerStub) or not isinstance(mgr.state, tuple):
        raise UnsafePickleError("expected a pickled BlockManager")
    state = mgr.state
    extra = state[3] if len(state) > 3 and isinstance(state[3], dict) else {}
    new = extra.get("0.14.1")
    columns: Dict[str, np.ndarray] = {}
    if isinstance(new, dict):
        axes = new["axes"]
        names = [str(c) for c in index_values(axes[0])]
        n_rows = len(index_values(axes[1]))
        for blk in new["blocks"]:
            values = np.asarray(_unwrap(blk["values"]))
            locs = blk["mgr_locs"]
            if isinstance(locs, slice):
                locs = range(*locs.indices(len(names)))
            else:
                locs = np.asarray(_unwrap(locs)).ravel().tolist()
            values = values.reshape(len(locs), -1)
            for j, loc in enumerate(locs):
                columns[names[int(loc)]] = values[j]
    else:  # pre-0.14.1 layout: (axes, block values, block items)
        axes, block_values, block_items = state[0], state[1], state[2]
        n_rows = len(index_values(axes[1]))
        for values, items in zip(block_values, block_items):
            values = np.asarray(_unwrap(values))
            item_names = [str(c) for c in index_values(items)]
            values = values.reshape(len(item_names), -1)
            for j, name in enumerate(item_names):
                columns[name] = values[j]
    for name, col in columns.items():
        if len(col) != n_rows:
            raise UnsafePickleError(f"column {name} has {len(col)} rows, index has {n_rows}")
    return columns, n_rows
