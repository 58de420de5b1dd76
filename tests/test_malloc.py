"""predict's allocator setting (crossmodal_har.infer.malloc): glibc keeps freed blocks in its heap."""

import ctypes
import os
import subprocess
import sys

import pytest


def has_mallinfo2():
    """glibc 2.33 or later (the probe reads ``mallinfo2``); not musl, not macOS."""
    try:
        return sys.platform.startswith("linux") and hasattr(ctypes.CDLL("libc.so.6"), "mallinfo2")
    except OSError:
        return False


pytestmark = pytest.mark.skipif(not has_mallinfo2(), reason="glibc 2.33 or later (its allocator is what is set)")

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



# predict on a tiny recording, by the command or by the library call, then the same probe
RUN = """
import sys
from pathlib import Path
sys.path.insert(0, sys.argv[3])
from helpers.bundles import UNIT_KEYS, make_bundle, make_recording, predict_recording
from crossmodal_har.cli import main
d = Path(sys.argv[2])
bundle, rec = make_bundle(d / "bundle"), make_recording(d / "rec.csv", seconds=60.0)
if sys.argv[1] == "command":
    assert main(["-q", "predict", "--model", str(bundle), "--input", str(rec), "--out", str(d / "out.csv"),
                 "--acc-unit", "m/s^2", "--time-unit", "ms", "--no-progress"]) == 0
else:
    predict_recording(bundle, rec, d / "out.csv", **UNIT_KEYS)
""" + PROBE  # (its argv[1] is not "set": it only reads the allocator)


@pytest.mark.parametrize("how", ["command", "library"])
def test_the_command_sets_it_and_the_library_call_does_not(tmp_path, how):
    # the command's process exits when it is done; a program that calls run_predict keeps its own
    # allocator (it would otherwise hold up to 256 MiB of freed memory per heap for as long as it lives)
    tests = os.path.dirname(os.path.abspath(__file__))
    out = subprocess.run([sys.executable, "-c", RUN, how, str(tmp_path), tests], capture_output=True, text=True,
                         env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert out.returncode == 0, out.stderr[-2000:]
    mapped = int(out.stdout.split()[-1])
    assert (mapped == 0) if how == "command" else (mapped >= 30 << 20)
