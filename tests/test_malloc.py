"""predict's allocator setting (crossmodal_har.infer.malloc): glibc keeps freed blocks in its heap."""

import os
import subprocess
import sys

import pytest

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator (Linux)")

# a fresh process: how many bytes glibc maps for a 30 MiB array (above its default and dynamic mmap
# thresholds: a block of its own, mapped on malloc and unmapped on free), with or without the setting
PROBE = """
import ctypes, sys
import numpy as np
from crossmodal_har.infer.malloc import keep_freed_blocks

class MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks",
                                                 "fsmblks", "uordblks", "fordblks", "keepcost")]

libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = MallInfo2
was_set = keep_freed_blocks() if sys.argv[1] == "set" else False
base = libc.mallinfo2().hblkhd
a = np.ones(30 << 17)  # 30 MiB
print(int(was_set), libc.mallinfo2().hblkhd - base)
"""


def probe(mode, **env):
    out = subprocess.run([sys.executable, "-c", PROBE, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **env})
    was_set, mapped = out.stdout.split()
    return was_set == "1", int(mapped)


def mapped_alone(result):
    return result[1] >= 30 << 20


def test_blocks_below_32_mib_come_from_the_heap():
    unset = probe("unset")
    assert unset[0] is False and mapped_alone(unset)  # glibc's default: mapped on its own
    assert probe("set") == (True, 0)  # in the heap: reused after free, not faulted in anew


def test_a_users_own_malloc_settings_are_left_alone():
    for env in ({"GLIBC_TUNABLES": "glibc.malloc.arena_test=8"}, {"MALLOC_TRIM_THRESHOLD_": "1000000"}):
        result = probe("set", **env)
        assert result[0] is False and mapped_alone(result)
