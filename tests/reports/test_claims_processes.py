"""Claims across processes (both backends): a held claim excludes another process; a killed
holder leaves nothing marked and nothing held, so the next run sends with the same id."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from authmilter.reports.store import open_store
from tests.support.procs import wait_for

DAY = 86400
T0 = 1_780_000_000 - 1_780_000_000 % DAY
REPO = Path(__file__).resolve().parents[2]

HOLDER = textwrap.dedent(
    """
    import sys
    from authmilter.reports.store import open_store
    store = open_store(sys.argv[1], host="holder")
    with store.claim("example.com", int(sys.argv[2]), int(sys.argv[3]), "id-1") as claim:
        assert claim is not None
        print("held", flush=True)
        if sys.stdin.readline().strip() == "sent":
            claim.mark("sent")
    print("done", flush=True)
    """
)


def holder(dsn: str) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'milter'}"}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, dsn, str(T0), str(T0 + DAY)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "held"
    return proc


def claimable(dsn: str) -> bool:
    store = open_store(dsn)
    try:
        with store.claim("example.com", T0, T0 + DAY, "id-1") as claim:
            return claim is not None
    finally:
        store.close()


def test_another_process_holding_then_marking(history_dsn: str) -> None:
    open_store(history_dsn).migrate()
    proc = holder(history_dsn)
    try:
        assert not claimable(history_dsn)
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write("sent\n")
        proc.stdin.flush()
        assert proc.stdout.readline().strip() == "done"
    finally:
        proc.wait(30)
    assert proc.returncode == 0
    assert not claimable(history_dsn)  # marked sent by the other process
    status = open_store(history_dsn).report_status("example.com", T0, T0 + DAY)
    assert status == ("sent", "id-1", "")


def test_a_killed_holder_leaves_the_report_to_the_next_run(history_dsn: str) -> None:
    open_store(history_dsn).migrate()
    proc = holder(history_dsn)
    assert not claimable(history_dsn)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert wait_for(lambda: claimable(history_dsn), timeout=20)
    assert open_store(history_dsn).report_status("example.com", T0, T0 + DAY) is None


MIGRATE = "import sys; from authmilter.reports.store import open_store; " \
    "print(open_store(sys.argv[1]).migrate())"  # fmt: skip


def test_processes_creating_one_sqlite_file_at_once(tmp_path: Path) -> None:
    """Two workers starting together on a new file: both end up migrated (no 'locked')."""
    env = {**os.environ, "PYTHONPATH": f"{REPO / 'milter'}"}
    for n in range(5):
        dsn = f"sqlite:///{tmp_path}/h{n}.db"
        procs = [
            subprocess.Popen(
                [sys.executable, "-c", MIGRATE, dsn], stdout=subprocess.PIPE, text=True, env=env
            )
            for _ in range(3)
        ]
        outputs = [p.communicate(timeout=60)[0].strip() for p in procs]
        assert outputs == ["1", "1", "1"]
