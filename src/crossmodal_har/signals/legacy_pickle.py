"""A restricted unpickler for old pandas DataFrame pickles (read as data, nothing executed).

Pickles written by old pandas reference classes that no longer exist or cannot be rebuilt by
modern pandas (``object.__new__(BlockManager)`` is refused). Instead of importing anything named in
the pickle, :class:`LegacyFrameUnpickler` allows only an explicit whitelist of globals and maps
each to an inert stand-in here that records its pickled state; :func:`frame_columns` then rebuilds
the columns as numpy arrays. Any other global (``os.system``, ``builtins.eval``, ...) is an error,
so a malicious file cannot run code.

Nor can it change anything in the running process: BUILD (``__setstate__``) is honoured only on
instances of the stand-ins, which record the state as data; on anything else a whitelisted global
resolves to (the stand-in classes themselves, the allowed functions, ``numpy.ndarray``) it is
refused. :func:`load_legacy` also checks the opcode stream before unpickling (:func:`prescan`): no
persistent ids, no memo index or length field larger than the file can back; and
:func:`frame_columns` refuses an index longer than the file could hold (``max_rows``), so a few
hundred bytes cannot ask for 10^12 rows.
"""

from __future__ import annotations

import io
import pickle
import pickletools
from typing import Any, Callable, Dict, Optional, Tuple

import numpy as np


class UnsafePickleError(pickle.UnpicklingError):
    """The pickle references something outside the whitelist."""


def _refuse_build(*_: Any) -> None:
    raise UnsafePickleError("refusing BUILD (setting state) on a class or function named in the file")


class _InstanceOnly:
    """``__setstate__`` that exists on instances only: BUILD on the class itself is refused (else
    ``Class.__setstate__(state)`` would be looked up and a file could target the class)."""

    def __init__(self, fn: Callable[[Any, Any], None]) -> None:
        self.fn = fn

    def __get__(self, obj: Any, objtype: Any = None) -> Callable[..., None]:
        if obj is None:
            return _refuse_build
        return self.fn.__get__(obj, objtype)


class _Global:
    """A whitelisted function as the unpickler hands it out: callable (REDUCE), but with no
    attributes a BUILD could set (``__slots__``) and a ``__setstate__`` that refuses."""

    __slots__ = ("fn", "name")

    def __init__(self, fn: Callable[..., Any], name: str) -> None:
        self.fn = fn
        self.name = name

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)

    def __setstate__(self, state: Any) -> None:
        _refuse_build()

    def __repr__(self) -> str:
        return f"<allowed global {self.name}>"


class _Marker:
    """A whitelisted global that is only ever an argument (``numpy.ndarray``, ``object``): not
    callable, no attributes, BUILD refused."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __setstate__(self, state: Any) -> None:
        _refuse_build()

    def __repr__(self) -> str:
        return f"<allowed global {self.name}>"


_NDARRAY = _Marker("numpy.ndarray")
_OBJECT = _Marker("object")


class _Stub:
    """An inert object that records the state it is given."""

    def __init__(self, *args: Any) -> None:
        self.args = args
        self.state: Any = None

    @_InstanceOnly
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

    @_InstanceOnly
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


class DtypeStub(_Stub):
    """Stands in for ``numpy.dtype(spec, align, copy)``; the BUILD state sets the byte order."""

    def __init__(self, spec: Any = "f8", align: Any = 0, copy: Any = 1) -> None:
        super().__init__(spec)
        if not isinstance(spec, str) or not spec.isascii() or len(spec) > 8:
            raise UnsafePickleError(f"unexpected dtype spec {spec!r}")
        self.spec = spec

    @_InstanceOnly
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
    if not (isinstance(cls, type) and issubclass(cls, _Stub)) or base is not _OBJECT or state is not None:
        raise UnsafePickleError(f"refusing to reconstruct {cls!r}")
    return cls.__new__(cls)


def _np_reconstruct(subtype: Any, shape: Any, dtype_char: Any) -> ArrayStub:
    if subtype is not _NDARRAY:
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


def _slice(*args: Any) -> slice:
    if not 1 <= len(args) <= 3 or not all(a is None or (isinstance(a, int) and not isinstance(a, bool))
                                          for a in args):
        raise UnsafePickleError("unexpected slice arguments")
    return slice(*args)


_RECONSTRUCTOR = _Global(_reconstructor, "copyreg._reconstructor")
_NP_RECONSTRUCT = _Global(_np_reconstruct, "numpy.core.multiarray._reconstruct")
_SLICE = _Global(_slice, "slice")

# Resolved globals: the stand-in classes (whose instances alone accept BUILD), _Global-wrapped
# functions and _Marker arguments (which refuse it).
_WHITELIST = {
    ("copy_reg", "_reconstructor"): _RECONSTRUCTOR,
    ("copyreg", "_reconstructor"): _RECONSTRUCTOR,
    ("__builtin__", "object"): _OBJECT,
    ("builtins", "object"): _OBJECT,
    ("__builtin__", "slice"): _SLICE,
    ("builtins", "slice"): _SLICE,
    ("_codecs", "encode"): _Global(_codecs_encode, "_codecs.encode"),
    ("numpy.core.multiarray", "_reconstruct"): _NP_RECONSTRUCT,
    ("numpy._core.multiarray", "_reconstruct"): _NP_RECONSTRUCT,
    ("numpy", "ndarray"): _NDARRAY,
    ("numpy", "dtype"): DtypeStub,
    ("pandas.core.frame", "DataFrame"): FrameStub,
    ("pandas.core.internals.managers", "BlockManager"): ManagerStub,
    ("pandas.core.internals", "BlockManager"): ManagerStub,
    ("pandas.core.internals.blocks", "Block"): BlockStub,
    ("pandas.core.internals.blocks", "FloatBlock"): BlockStub,
    ("pandas.core.internals.blocks", "IntBlock"): BlockStub,
    ("pandas.core.indexes.base", "_new_Index"): _Global(_new_index, "pandas.core.indexes.base._new_Index"),
    ("pandas.core.indexes.base", "Index"): IndexStub,
    ("pandas.core.indexes.numeric", "Int64Index"): IndexStub,
    ("pandas.core.indexes.numeric", "Float64Index"): IndexStub,
    ("pandas.core.indexes.range", "RangeIndex"): RangeIndexStub,
}


class LegacyFrameUnpickler(pickle.Unpickler):
    """Unpickler that resolves only whitelisted globals, to inert stand-ins (use :func:`load_legacy`
    for untrusted bytes: it checks the opcode stream first)."""

    def find_class(self, module: str, name: str) -> Any:
        try:
            return _WHITELIST[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"global {module}.{name} is not allowed in this data file") from None

    def persistent_load(self, pid: Any) -> Any:
        raise UnsafePickleError("persistent ids are not allowed in this data file")


_PUT_OPS = {"PUT", "BINPUT", "LONG_BINPUT"}


def prescan(data: bytes) -> None:
    """Check a pickle's opcode stream without building anything: every opcode known, every length
    field backed by bytes in ``data``, no persistent id, memo indices no larger than the number of
    objects memoised so far (the C unpickler would allocate a memo table of that size).

    Raises:
        UnsafePickleError: a persistent id or an absurd memo index / frame length.
        pickle.UnpicklingError: the stream is malformed or truncated (with its byte position).
    """
    memoised = 0
    n = len(data)
    try:
        for op, arg, pos in pickletools.genops(io.BytesIO(data)):
            name = op.name
            if name in ("PERSID", "BINPERSID"):
                raise UnsafePickleError(f"persistent ids are not allowed in this data file (byte {pos})")
            if name in _PUT_OPS:
                if not isinstance(arg, int) or arg < 0 or arg > memoised:
                    raise UnsafePickleError(f"memo index {arg} out of range at byte {pos}")
                memoised += 1
            elif name == "MEMOIZE":
                memoised += 1
            elif name == "FRAME" and arg > n - pos:
                raise UnsafePickleError(f"frame of {arg} bytes at byte {pos} is longer than the file")
            elif name in ("GET", "BINGET", "LONG_BINGET") and (not isinstance(arg, int) or arg > memoised):
                raise UnsafePickleError(f"memo index {arg} out of range at byte {pos}")
    except (ValueError, EOFError) as exc:  # pickletools' message names the byte position
        raise pickle.UnpicklingError(str(exc)) from None


def load_legacy(data: bytes) -> Any:
    """Unpickle untrusted ``data`` with :class:`LegacyFrameUnpickler` after :func:`prescan`.

    Raises UnsafePickleError for what the file may not do and pickle.UnpicklingError (or an error
    of the stand-ins: TypeError, ValueError, ...) for a malformed stream.
    """
    prescan(data)
    return LegacyFrameUnpickler(io.BytesIO(data)).load()


def _unwrap(obj: Any) -> Any:
    return obj.array if isinstance(obj, ArrayStub) else obj


def index_values(idx: Any, max_len: Optional[int] = None) -> np.ndarray:
    """Values of a pickled Index / RangeIndex stand-in; a RangeIndex longer than ``max_len`` is
    refused before anything is allocated."""
    if isinstance(idx, RangeIndexStub):
        a = idx.attrs
        bounds = (a.get("start", 0), a["stop"], a.get("step", 1))
        if not all(isinstance(b, int) and not isinstance(b, bool) for b in bounds):
            raise UnsafePickleError("RangeIndex start/stop/step must be integers")
        if bounds[2] == 0:
            raise UnsafePickleError("RangeIndex step is 0")
        n = len(range(*bounds))
        if max_len is not None and n > max_len:
            raise UnsafePickleError(f"RangeIndex of {n:.6g} rows is more than the file can hold")
        return np.arange(*bounds)
    if isinstance(idx, IndexStub):
        return np.asarray(_unwrap(idx.attrs["data"]))
    raise UnsafePickleError(f"unexpected index object {type(idx).__name__}")


def frame_columns(frame: Any, max_rows: Optional[int] = None) -> Tuple[Dict[str, np.ndarray], int]:
    """Rebuild ``{column: 1-D array}`` and the row count from a :class:`FrameStub`.

    ``max_rows`` bounds the row count the index may declare (the size of the pickle is a safe
    bound: every row of a column takes at least one byte of it).
    """
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
        names = [str(c) for c in index_values(axes[0], max_rows)]
        n_rows = len(index_values(axes[1], max_rows))
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
        n_rows = len(index_values(axes[1], max_rows))
        for values, items in zip(block_values, block_items):
            values = np.asarray(_unwrap(values))
            item_names = [str(c) for c in index_values(items, max_rows)]
            values = values.reshape(len(item_names), -1)
            for j, name in enumerate(item_names):
                columns[name] = values[j]
    for name, col in columns.items():
        if len(col) != n_rows:
            raise UnsafePickleError(f"column {name} has {len(col)} rows, index has {n_rows}")
    return columns, n_rows
