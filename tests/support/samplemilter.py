"""A tiny pymilter milter for the milter client's self-tests (run as a subprocess).

``python -m tests.support.samplemilter unix:/path REJECT_SENDER``: rejects MAIL FROM
REJECT_SENDER with 550 5.7.1, and at end of message inserts ``X-Sample-Top`` at index 0,
appends ``X-Sample: <queue id> <auth user> <header count>``, deletes the first ``X-Drop``
header and quarantines when the subject is "quarantine me". Header values are recorded with
their leading space (``SMFIP_HDR_LEADSPC``) when ``--leadspc`` is given.
"""

from __future__ import annotations

import sys

import Milter


class Sample(Milter.Base):  # type: ignore[misc]
    """Per-connection state lives on the instance."""

    reject_sender = ""

    def __init__(self) -> None:
        self.headers: list[tuple[str, str]] = []
        self.body_bytes = 0

    @Milter.noreply  # type: ignore[misc]
    def connect(self, hostname: str, family: int, hostaddr: object) -> int:
        self.client = hostaddr
        return Milter.CONTINUE

    def envfrom(self, mailfrom: str, *esmtp: str) -> int:
        self.headers = []
        self.body_bytes = 0
        self.auth = self.getsymval("{auth_authen}") or "-"
        if mailfrom.strip("<>").lower() == self.reject_sender.lower():
            self.setreply("550", "5.7.1", "sender refused by sample")
            return Milter.REJECT
        return Milter.CONTINUE

    @Milter.noreply  # type: ignore[misc]
    def header(self, name: str, value: str) -> int:
        self.headers.append((name, value))
        return Milter.CONTINUE

    def body(self, chunk: bytes) -> int:
        self.body_bytes += len(chunk)
        return Milter.CONTINUE

    def eom(self) -> int:
        qid = self.getsymval("i") or "-"
        self.addheader("X-Sample-Top", "top", 0)
        first = repr(self.headers[0][1]) if self.headers else "-"
        self.addheader(
            "X-Sample",
            f"{qid} {self.auth} {len(self.headers)} {self.body_bytes} {first}",
        )
        if any(n.lower() == "x-drop" for n, _ in self.headers):
            self.chgheader("X-Drop", 1, None)
        subject = next((v for n, v in self.headers if n.lower() == "subject"), "")
        if subject.strip() == "quarantine me":
            self.quarantine("sample says so")
        return Milter.ACCEPT


def main(argv: list[str]) -> int:
    """Run until killed."""
    sock, Sample.reject_sender = argv[0], argv[1]
    if "--leadspc" in argv:
        Milter.header_leading_space(Sample)
    Milter.factory = Sample
    Milter.set_flags(Milter.ADDHDRS | Milter.CHGHDRS | Milter.QUARANTINE)
    print("ready", flush=True)
    Milter.runmilter("samplemilter", sock, 60)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
