"""A worker for launcher tests: records its pid, then sleeps (never finishes on its own)."""

import os
import time
from pathlib import Path


def sleep_forever(rank: int, pid_dir: str) -> None:
    (Path(pid_dir) / f"{rank}.pid").write_text(str(os.getpid()))
    time.sleep(600)
