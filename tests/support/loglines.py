"""Hostile envelopes and headers that try to split or forge the per-message log line, and
the check that the line survived (issue 13 item 3).

The same cases go through a :class:`~authmilter.session.Session` (tests/pipeline) and
through the real daemon over the milter protocol (tests/integration).
"""

from __future__ import annotations

from dataclasses import dataclass

# what an attacker would like a log reader to see: a second, passing message
PLANT = "qid=FAKE conn=1 client=x from=<a@b> dmarc=pass(from=example.net p=reject) action=accept"
# the keys of the line (values holding a space continue as "s=", "p=", "t=" tokens)
KEYS = frozenset(
    {"qid", "conn", "client", "from", "trusted", "iprev", "spf", "dkim", "s", "dmarc", "p", "t"}
    | {"signed", "why", "action", "ms"}
)


@dataclass(frozen=True)
class Injection:
    """One hostile message; every field is sent as given (``{domain}`` is substituted)."""

    name: str
    signature: bytes = b""  # a DKIM-Signature field, without its name
    mail_from: str = "alice@{domain}"
    helo: str = "mail.example.net"
    client_name: str = "mail.example.net"
    queue_id: str = ""  # appended to the test's own queue id

    def message(self, domain: str) -> bytes:
        """The message, From the domain, with the signature field when there is one."""
        head = b"DKIM-Signature:" + self.signature + b"\r\n" if self.signature else b""
        head += f"From: alice@{domain}\r\nTo: bob@example.net\r\nSubject: hi\r\n".encode()
        return head.replace(b"{domain}", domain.encode()) + b"\r\nbody\r\n"

    def text(self, value: str, domain: str) -> str:
        """An envelope value with the domain filled in."""
        return value.replace("{domain}", domain)


_PLANT = PLANT.encode()
INJECTIONS = (
    Injection(
        "dkim d= and s= folded over planted pairs",
        b" v=1; a=rsa-sha256; c=relaxed/relaxed; d={domain}\r\n " + _PLANT + b";\r\n"
        b" s=sel\r\n " + _PLANT + b"; h=from; bh=AAAA; b=AAAA",
    ),
    Injection(
        "dkim d= that is not a domain",
        b" v=1; a=rsa-sha256; d=not a\x01domain\x7f=x\r\n\taction=accept;"
        b" s=s\x0bel=1 action=accept; h=from; bh=AAAA; b=AAAA",
    ),
    Injection(
        "dkim d= with Unicode line breaks",
        b" v=1; a=rsa-sha256; d=a\xe2\x80\xa8action=accept\xc2\x85.example; s=x\xe2\x80\xa9y;"
        b" h=from; bh=AAAA; b=AAAA",
    ),
    Injection("mail from", mail_from="a\r\n action=accept x=y@{domain}"),
    Injection("helo", helo="h\r\n" + PLANT),
    Injection("client name", client_name="evil.example\r\n" + PLANT),
    Injection("client name with spaces and =", client_name="a b=c action=accept"),
    Injection("queue id", queue_id="\r\n" + PLANT),
)


def check_line(line: str) -> None:
    """One printable line whose only ``action=`` is its own (the last pair) and no plant."""
    assert line.isprintable(), repr(line)
    tokens = line.split(" ")
    keys = [t.partition("=")[0] for t in tokens if "=" in t]  # "5.7.26)" continues a value
    assert set(keys) <= KEYS, (set(keys) - KEYS, line)
    assert keys.count("action") == 1 and keys.count("qid") == 1, line
    assert keys[-1] == "action" or keys[-2:] == ["action", "ms"], line
    assert "action=accept" not in tokens, line  # every case is rejected (DMARC p=reject)
    assert not any(t.startswith("dmarc=pass") for t in tokens), line
    assert PLANT not in line
