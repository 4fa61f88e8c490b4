"""The ceiling for any Python milter here: pymilter, every callback, accept at the end.

``python3 -m bench.nullmilter [--floor] unix:/path``. It negotiates like authmilter (header
and body without replies), receives the whole message and accepts; it adds nothing, or
with ``--floor`` one header at end of message: the least a Python milter that reports
anything can cost (issue 15's floor).
"""

from __future__ import annotations

import sys

import Milter


class Null(Milter.Base):  # type: ignore[misc]
    """Accept everything."""

    @Milter.noreply  # type: ignore[misc,untyped-decorator]
    def connect(self, hostname: str, family: int, hostaddr: object) -> int:
        return int(Milter.CONTINUE)

    @Milter.noreply  # type: ignore[misc,untyped-decorator]
    def hello(self, name: str) -> int:
        return int(Milter.CONTINUE)

    def envfrom(self, mailfrom: str, *esmtp: str) -> int:
        return int(Milter.CONTINUE)

    @Milter.noreply  # type: ignore[misc,untyped-decorator]
    def envrcpt(self, rcpt: str, *esmtp: str) -> int:
        return int(Milter.CONTINUE)

    @Milter.noreply  # type: ignore[misc,untyped-decorator]
    def header(self, name: str, value: str) -> int:
        return int(Milter.CONTINUE)

    @Milter.noreply  # type: ignore[misc,untyped-decorator]
    def eoh(self) -> int:
        return int(Milter.CONTINUE)

    @Milter.noreply  # type: ignore[misc,untyped-decorator]
    def body(self, chunk: bytes) -> int:
        return int(Milter.CONTINUE)

    def eom(self) -> int:
        return int(Milter.ACCEPT)


class Floor(Null):
    """Accept everything, with one header added at end of message."""

    def eom(self) -> int:
        self.addheader("X-Floor", "bench")
        return int(Milter.ACCEPT)


def main(argv: list[str]) -> int:
    """Run until SIGTERM."""
    floor = argv[:1] == ["--floor"]
    argv = argv[1:] if floor else argv
    Milter.factory = Floor if floor else Null
    Milter.set_flags(Milter.ADDHDRS)
    Milter.runmilter("nullmilter", argv[0], 240)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
