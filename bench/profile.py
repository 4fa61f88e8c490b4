"""Where a milter's time goes: py-spy samples of the running daemon under load.

``py-spy record --format raw`` writes one line per distinct stack (``f1;f2;...;fN COUNT``,
root first). :func:`hotspots` turns that into the functions with the most samples at the
top of the stack (self time) and anywhere on it (inclusive time).
"""

from __future__ import annotations

import collections
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

_LINE = re.compile(r"^(.*) (\d+)$")
_FRAME_LINE = re.compile(r":\d+\)?$")


def find_py_spy(work: Path) -> str | None:
    """py-spy on PATH, or the one ``bench/run`` installs into ``bench/work/tools``."""
    local = work / "tools" / "bin" / "py-spy"
    if local.exists():
        return str(local)
    return shutil.which("py-spy")


def record(py_spy: str, pid: int, seconds: float, out: Path) -> subprocess.Popen[bytes]:
    """Sample ``pid`` for ``seconds`` (200 Hz, only the thread holding the GIL: CPU, not
    waits); returns the py-spy process."""
    out.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        py_spy,
        "record",
        "--pid",
        str(pid),
        "--duration",
        str(int(seconds)),
        "--rate",
        "200",
        "--format",
        "raw",
        "--output",
        str(out),
        "--nonblocking",
        "--gil",
    ]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _name(frame: str) -> str:
    """``func (path/to/file.py:123)`` -> ``func (file.py)``: merge the lines of a function."""
    frame = frame.strip()
    m = re.match(r"^(.*) \((.*?)(?::\d+)?\)$", frame)
    if not m:
        return frame
    func, path = m.groups()
    parts = Path(path).parts
    short = "/".join(parts[-2:]) if len(parts) >= 2 else path
    return f"{func} ({short})"


def hotspots(raw: str, top: int = 15) -> dict[str, Any]:
    """Self and inclusive sample counts per function from py-spy raw output."""
    self_count: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = 0
    for line in raw.splitlines():
        m = _LINE.match(line.strip())
        if not m:
            continue
        stack, n = m.group(1), int(m.group(2))
        frames = [
            _name(f)
            for f in stack.split(";")
            if f and not f.startswith("process ") and not f.startswith("thread ")
        ]
        if not frames:
            continue
        total += n
        self_count[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    return {
        "samples": total,
        "self": self_count.most_common(top),
        "inclusive": incl.most_common(top),
    }
