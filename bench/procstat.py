"""CPU time and memory of a process tree, read from /proc (Linux only).

CPU is utime+stime of the process, of every live descendant, and of children it has
already waited for (cutime+cstime); memory is the peak resident set: VmHWM (reset with
``/proc/PID/clear_refs`` before a measurement) and a sampled sum of VmRSS over the tree.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

TICK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str] | None:
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # the command name may contain spaces and parentheses: split after the last ")"
    return text[text.rindex(")") + 2 :].split()


def children_map() -> dict[int, list[int]]:
    """ppid -> child pids for every process visible now."""
    tree: dict[int, list[int]] = {}
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        fields = _stat_fields(int(entry.name))
        if fields is not None:
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def descendants(pid: int) -> list[int]:
    """``pid`` and all its live descendants."""
    tree = children_map()
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(tree.get(p, []))
    return out


def cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by ``pid``'s tree (live descendants and reaped children)."""
    total = 0
    for i, p in enumerate(descendants(pid)):
        fields = _stat_fields(p)
        if fields is None:
            continue
        # fields[0] is field 3 (state): utime=14, stime=15, cutime=16, cstime=17
        total += int(fields[11]) + int(fields[12])
        if i == 0:
            total += int(fields[13]) + int(fields[14])
    return total / TICK


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        pass
    return 0


def rss_kb(pid: int) -> int:
    """Current VmRSS summed over the tree, in KiB."""
    return sum(_status_kb(p, "VmRSS") for p in descendants(pid))


def hwm_kb(pid: int) -> int:
    """VmHWM (peak RSS since start or the last reset) summed over the tree, in KiB."""
    return sum(_status_kb(p, "VmHWM") for p in descendants(pid))


def reset_hwm(pid: int) -> bool:
    """Reset VmHWM of the tree to the current RSS (``echo 5 > clear_refs``); False if refused."""
    ok = True
    for p in descendants(pid):
        try:
            Path(f"/proc/{p}/clear_refs").write_text("5")
        except OSError:
            ok = False
    return ok


@dataclass
class Usage:
    """What a :class:`Meter` saw between start and stop."""

    cpu_s: float = 0.0
    peak_rss_kb: int = 0  # max(VmHWM after reset, sampled VmRSS)
    sampled_rss_kb: int = 0


class Meter:
    """Measure CPU seconds and peak RSS of some process trees over a ``with`` block."""

    def __init__(self, pids: list[int], interval: float = 0.05) -> None:
        self.pids = pids
        self.interval = interval
        self.usage = {p: Usage() for p in pids}
        self._cpu0: dict[int, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.hwm_reset = False

    def __enter__(self) -> Meter:
        resets = [reset_hwm(p) for p in self.pids]  # every one, no short-circuit
        self.hwm_reset = all(resets)
        self._cpu0 = {p: cpu_seconds(p) for p in self.pids}
        self._thread = threading.Thread(target=self._sample, name="rss-sampler", daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            for p in self.pids:
                u = self.usage[p]
                u.sampled_rss_kb = max(u.sampled_rss_kb, rss_kb(p))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5)
        for p in self.pids:
            u = self.usage[p]
            u.cpu_s = cpu_seconds(p) - self._cpu0[p]
            u.sampled_rss_kb = max(u.sampled_rss_kb, rss_kb(p))
            u.peak_rss_kb = max(u.sampled_rss_kb, hwm_kb(p) if self.hwm_reset else 0)
