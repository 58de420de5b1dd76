"""Real device files the tests read that are not in ``../shared/data/devices``.

scikit-digital-health's six-Opal APDM Mobility Lab sample (``tests/io/data/apdm_sample.h5``, MIT
licence, Pfizer) ships inside skdh's PyPI sdist; skdh's wheel, which this project installs, leaves
it out. ``python tests/fetch_real_data.py`` (run by ``.ci/run`` before the tests, as an install
step: tests never touch the network) downloads that sdist from PyPI, checks its sha256 and
extracts the one file into ``<repo>/.cache/real-data/``. A copy in
``../shared/data/devices/apdm/skdh_apdm_sample.h5`` is used first when there is one.
"""

from __future__ import annotations

import hashlib
import tarfile
import urllib.request
from pathlib import Path
from typing import Optional

REPO = Path(__file__).resolve().parents[2]
DEVICES = REPO.parent / "shared" / "data" / "devices"
CACHE = REPO / ".cache" / "real-data"

SKDH_SDIST = "scikit_digital_health-0.17.18.tar.gz"
SKDH_SDIST_URL = ("https://files.pythonhosted.org/packages/fa/57/44078ea300d0d5b808152f280291f7a3f4c4eb42eb0fb70a6e1b49e82bdb/"
                  + SKDH_SDIST)
SKDH_SDIST_SHA256 = "fd591a452f0e94cbda7e47d68827c9f3a7aa34c1268ad1b2dd187c8366db4c25"
APDM_MEMBER = "scikit_digital_health-0.17.18/tests/io/data/apdm_sample.h5"
APDM_NAME = "skdh_apdm_sample.h5"
APDM_FETCH = "python tests/fetch_real_data.py"


def apdm_sample() -> Optional[Path]:
    """The six-Opal APDM file: ``../shared``'s copy, else the one fetched into the cache, else None."""
    for p in (DEVICES / "apdm" / APDM_NAME, CACHE / APDM_NAME):
        if p.is_file():
            return p
    return None


def fetch_apdm_sample() -> Path:
    """Download skdh's sdist (sha256-checked) and extract the APDM sample into the cache."""
    out = CACHE / APDM_NAME
    if out.is_file():
        return out
    CACHE.mkdir(parents=True, exist_ok=True)
    sdist = CACHE / SKDH_SDIST
    if not sdist.is_file() or _sha256(sdist) != SKDH_SDIST_SHA256:
        part = sdist.with_suffix(".part")
        with urllib.request.urlopen(SKDH_SDIST_URL, timeout=120) as r, open(part, "wb") as f:
            while block := r.read(1 << 20):
                f.write(block)
        got = _sha256(part)
        if got != SKDH_SDIST_SHA256:
            part.unlink()
            raise SystemExit(f"{SKDH_SDIST_URL}: sha256 {got}, expected {SKDH_SDIST_SHA256}")
        part.replace(sdist)
    with tarfile.open(sdist, "r:gz") as tar:
        src = tar.extractfile(APDM_MEMBER)
        if src is None:
            raise SystemExit(f"{sdist}: no {APDM_MEMBER}")
        tmp = out.with_suffix(".part")
        tmp.write_bytes(src.read())
        tmp.replace(out)
    sdist.unlink()
    return out


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()
