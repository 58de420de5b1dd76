"""Regenerate the committed corpus of bad paired sessions in tests/data/bad/sessions/.

    python tests/data/make_bad_sessions.py

One folder per bad-input case of issue 3 (plus one good session), small enough to commit.
"""

import shutil
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from helpers.sessions import make_session  # noqa: E402


def main() -> None:
    out = HERE / "bad" / "sessions"
    shutil.rmtree(out, ignore_errors=True)
    make_session(out, "good", seconds=6)
    d = make_session(out, "corrupt_video", seconds=6)
    (d / "video.mp4").write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(range(256)) * 8)
    d = make_session(out, "truncated_video", seconds=6)
    data = (d / "video.mp4").read_bytes()
    (d / "video.mp4").write_bytes(data[: len(data) // 2])
    d = make_session(out, "missing_imu", seconds=6)
    (d / "imu.csv").unlink()
    make_session(out, "imu_not_overlapping", seconds=6, imu_start=100.0)
    make_session(out, "imu_shorter_than_video", seconds=8, imu_seconds=2.0)
    d = make_session(out, "non_monotonic_time", seconds=6)
    lines = (d / "imu.csv").read_text().splitlines()
    lines[10], lines[11] = lines[11], lines[10]
    (d / "imu.csv").write_text("\n".join(lines) + "\n")
    d = make_session(out, "unreadable_session_json", seconds=6)
    (d / "session.json").write_text('{"imu_offset_s": 0.0,\n "acc_unit": ')
    make_session(out, "unknown_unit", seconds=6, session_json={"acc_unit": "furlongs"})
    (out / "README.md").write_text(
        "Bad paired sessions, one per case of issue 3 (made by tests/data/make_bad_sessions.py);\n"
        "`good` is the control. tests/test_bad_corpus.py ingests this folder.\n")


if __name__ == "__main__":
    main()
