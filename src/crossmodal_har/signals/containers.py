"""Bounded reading of what a reader opens inside a container: zip members, text lines and Avro blocks.

Every reader that opens a zip (Empatica exports, ActiGraph ``.gt3x``, the HAPT archive) checks its
members with :func:`check_zip` before reading any, and reads them through :class:`BoundedReader`,
so memory stays bounded whatever the file claims:

* a member larger than :data:`MAX_MEMBER_BYTES` uncompressed, or (above :data:`RATIO_FLOOR_BYTES`)
  more than :data:`MAX_RATIO` times its compressed size, is refused as a zip bomb before a byte is
  decompressed (real device exports compress 1x-15x; a deflate bomb ~1000x);
* a text line longer than :data:`MAX_LINE_BYTES` is refused (a file with no newline would otherwise
  be read whole by a line reader or a CSV parser);
* an Avro object container is walked block by block (:func:`check_avro`) before it is decoded: each
  block at most :data:`MAX_AVRO_BLOCK_BYTES` stored and decoded, the file at most
  :data:`MAX_AVRO_FILE_BYTES`.

Every refusal is a :class:`ContainerLimitError` (a DataError: one line naming the file and member).
"""

from __future__ import annotations

import io
import zipfile
import zlib
from typing import BinaryIO, Optional

from crossmodal_har.errors import DataError, PathLike

MiB = 1024 ** 2
#: largest uncompressed zip member (a month of 100 Hz ActiGraph log.bin is ~1.2 GB)
MAX_MEMBER_BYTES = 8 * 1024 ** 3
#: largest uncompressed / compressed ratio of a member above RATIO_FLOOR_BYTES
MAX_RATIO = 100.0
RATIO_FLOOR_BYTES = 64 * MiB
#: longest text line (a recording's CSV line is well under 1 KB)
MAX_LINE_BYTES = 1 * MiB
#: largest Avro block, stored or decoded, and Avro file (an EmbracePlus 30-min file is a few MB)
MAX_AVRO_BLOCK_BYTES = 64 * MiB
MAX_AVRO_FILE_BYTES = 128 * MiB


class ContainerLimitError(DataError):
    """A container member, line or block beyond the limits of this module."""


def _mb(n: float) -> str:
    return f"{n / MiB:.1f} MiB"


def check_zip(zf: zipfile.ZipFile, path: PathLike) -> None:
    """Refuse (:class:`ContainerLimitError`) a zip with a member beyond the size or ratio limits."""
    for info in zf.infolist():
        size, packed = int(info.file_size), max(int(info.compress_size), 1)
        if size > MAX_MEMBER_BYTES:
            raise ContainerLimitError(path, f"zip member {info.filename!r} would decompress to {_mb(size)}, more "
                                            f"than the limit of {_mb(MAX_MEMBER_BYTES)}")
        if size > RATIO_FLOOR_BYTES and size > MAX_RATIO * packed:
            raise ContainerLimitError(path, f"zip member {info.filename!r} would decompress {size / packed:.0f}x "
                                            f"({_mb(packed)} -> {_mb(size)}): refused as a zip bomb (limit "
                                            f"{MAX_RATIO:.0f}x)")


def open_member(zf: zipfile.ZipFile, name: str, path: PathLike, *, max_line: Optional[int] = None) -> BinaryIO:
    """Member ``name`` of ``zf`` (checked by :func:`check_zip`) as a bounded buffered stream."""
    check_zip(zf, path)
    return io.BufferedReader(BoundedReader(zf.open(name), path, what=f"zip member {name!r}",
                                           limit=MAX_MEMBER_BYTES, max_line=max_line))


class BoundedReader(io.RawIOBase):
    """A binary stream that refuses to yield more than ``limit`` bytes, or (``max_line``) a line
    longer than ``max_line`` bytes; closes ``raw`` with it."""

    def __init__(self, raw: BinaryIO, path: PathLike, *, what: str = "file", limit: Optional[int] = None,
                 max_line: Optional[int] = None):
        super().__init__()
        self.raw, self.path, self.what = raw, path, what
        self.limit, self.max_line = limit, max_line
        self.total = 0
        self.line = 0  # bytes since the last newline

    def readable(self) -> bool:
        return True

    def readinto(self, b) -> int:  # noqa: ANN001 (a writable buffer)
        data = self.raw.read(len(b))
        n = len(data)
        self.total += n
        if self.limit is not None and self.total > self.limit:
            raise ContainerLimitError(self.path, f"{self.what} is larger than the limit of {_mb(self.limit)}")
        if self.max_line is not None and n:
            nl = data.rfind(b"\n")
            if nl < 0:
                self.line += n
            else:
                first = data.find(b"\n")
                longest = max(self.line + first, _longest_inner(data, first, nl) if nl - first > self.max_line else 0)
                if longest > self.max_line:
                    self._long_line()
                self.line = n - nl - 1
            if self.line > self.max_line:
                self._long_line()
        self._seen(data)
        b[:n] = data
        return n

    def _seen(self, data: bytes) -> None:
        """Every block read, before the reader gets it (a subclass may refuse it by raising)."""

    def _long_line(self) -> None:
        raise ContainerLimitError(self.path, f"{self.what}: a line is longer than {_mb(self.max_line)} (no "
                                             "newline: not a text file of this format)")

    def close(self) -> None:
        try:
            self.raw.close()
        finally:
            super().close()


def _longest_inner(data: bytes, first: int, last: int) -> int:
    """Longest line strictly between the first and last newline of ``data``."""
    if last - first <= 1:
        return 0
    return max(len(s) for s in data[first + 1:last].split(b"\n"))


def read_line(f: BinaryIO, path: PathLike, what: str = "file") -> bytes:
    """One line of ``f`` (with its newline), refused beyond :data:`MAX_LINE_BYTES`."""
    line = f.readline(MAX_LINE_BYTES + 1)
    if len(line) > MAX_LINE_BYTES:
        raise ContainerLimitError(path, f"{what}: a line is longer than {_mb(MAX_LINE_BYTES)}")
    return line


# --------------------------------------------------------------------------------- Avro

def _long(buf: bytes, pos: int):
    """Avro's zig-zag varint at ``pos`` -> (value, next pos); IndexError/ValueError when malformed."""
    shift = acc = 0
    while True:
        b = buf[pos]
        pos += 1
        acc |= (b & 0x7F) << shift
        if not b & 0x80:
            return (acc >> 1) ^ -(acc & 1), pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def check_avro(data: bytes, path: PathLike, where: str = "") -> None:
    """Walk the Avro object container ``data`` block by block and refuse
    (:class:`ContainerLimitError`) a file, a block or a deflated block beyond the limits. A file
    that is not a well-formed container is left to the decoder (which reports it)."""
    if len(data) > MAX_AVRO_FILE_BYTES:
        raise ContainerLimitError(path, f"{where}Avro file of {_mb(len(data))} is larger than the limit of "
                                        f"{_mb(MAX_AVRO_FILE_BYTES)}")
    if not data.startswith(b"Obj\x01"):
        return
    try:
        pos, codec = 4, b"null"
        while True:  # the metadata map
            count, pos = _long(data, pos)
            if count == 0:
                break
            if count < 0:
                count = -count
                _, pos = _long(data, pos)
            for _ in range(count):
                klen, pos = _long(data, pos)
                key = data[pos:pos + klen]
                pos += klen
                vlen, pos = _long(data, pos)
                if key == b"avro.codec":
                    codec = data[pos:pos + vlen]
                pos += vlen
        pos += 16  # sync marker
        while pos < len(data):
            _, pos = _long(data, pos)
            size, pos = _long(data, pos)
            if size > MAX_AVRO_BLOCK_BYTES:
                raise ContainerLimitError(path, f"{where}Avro block at byte {pos} declares {_mb(size)}, more than "
                                                f"the limit of {_mb(MAX_AVRO_BLOCK_BYTES)}")
            if codec == b"deflate" and size > 0:
                d = zlib.decompressobj(-15)
                d.decompress(data[pos:pos + size], MAX_AVRO_BLOCK_BYTES)
                if d.unconsumed_tail:
                    raise ContainerLimitError(path, f"{where}Avro block at byte {pos} inflates beyond the limit "
                                                    f"of {_mb(MAX_AVRO_BLOCK_BYTES)}")
            pos += max(size, 0) + 16
    except (IndexError, ValueError, zlib.error):
        return  # malformed: the decoder says how
