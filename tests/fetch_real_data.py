"""Fetch the real test files that ``../shared`` does not hold (see ``helpers/real_data.py``).

An install step, run by ``.ci/run`` before the tests; the tests themselves never use the network.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from helpers.real_data import apdm_sample, fetch_apdm_sample  # noqa: E402

if __name__ == "__main__":
    have = apdm_sample()
    print(f"APDM six-Opal sample: {have or fetch_apdm_sample()}")
