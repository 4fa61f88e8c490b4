"""The ceiling for any Python milter here: pymilter, every callback, accept at the end.

``python3 -m bench.nullmilter unix:/path``. It negotiates like authmilter (header and body
without replies), receives the whole message, adds nothing and accepts.
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


def main(argv: list[str]) -> int:
    """Run until SIGTERM."""
    Milter.factory = Null
    Milter.set_flags(Milter.ADDHDRS)
    Milter.runmilter("nullmilter", argv[0], 240)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
