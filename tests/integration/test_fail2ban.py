"""conf/fail2ban/filter.d/authmilter.conf against the log of a real daemon, with fail2ban-regex.

The daemon rejects some messages for DMARC (550 5.7.26) and some recipients for SPF fail
(550 5.7.23), accepts others, and is sent envelopes that try to plant another address in
the line. Its stderr log is checked as it is (a file), as syslog writes it and as
``journalctl`` shows it: the filter must find exactly the clients of the rejected messages,
and never a planted address.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.integration.test_daemon import BAD_IP, GOOD_IP, config, example_zone, send, signed
from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.fixtures import in_ci
from tests.support.keys import new_rsa_key
from tests.support.mail import make_message, zone

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
FILTER = REPO / "conf" / "fail2ban" / "filter.d" / "authmilter.conf"
JAIL = REPO / "conf" / "fail2ban" / "jail.d" / "authmilter.conf"

SPOOFER = "203.0.113.66"  # sends "From: our own domain" that DMARC rejects
SPOOFER6 = "2001:db8::66"
PLANTED = "192.0.2.250"  # what a hostile envelope would like fail2ban to ban


def fail2ban_regex() -> str:
    found = shutil.which("fail2ban-regex")
    if found is None:
        if in_ci():
            pytest.fail("fail2ban-regex is missing (scripts/deps --test installs fail2ban)")
        pytest.skip("fail2ban-regex is not installed")
    return found


def matched_ips(log: Path, mode: str = "") -> list[str]:
    """The address of each line the filter matches, in order."""
    target = f"{FILTER}[mode={mode}]" if mode else str(FILTER)
    out = subprocess.run(
        [fail2ban_regex(), "--out", "ip", str(log), target],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.split()


def as_syslog(lines: list[str]) -> list[str]:
    """What rsyslog writes for ``log_target = "syslog"`` (no date or level of our own)."""
    out = []
    for line in lines:
        message = re.sub(r"^\S+ \S+ [A-Z]+ ", "", line)
        out.append(f"Dec  7 02:57:49 mx authmilter[4242]: {message}")
    return out


def as_journal(lines: list[str]) -> list[str]:
    """``journalctl -u authmilter`` of the stderr lines (the Debian unit's journal)."""
    return [f"Dec 07 02:57:49 mx authmilter[4242]: {line}" for line in lines]


@pytest.fixture
def daemon_log(
    dns_server: DnsServer, authmilter_daemon: Callable[..., AuthmilterDaemon], tmp_path: Path
) -> list[str]:
    """The per-message lines of a daemon that rejected, accepted and was attacked."""
    key = new_rsa_key(2048)
    dns_server.add_zone(example_zone(key))
    # a domain whose SPF never fails but whose DMARC rejects: DMARC rejects at end of data
    spf, dmarc = '@ TXT "v=spf1 ?all"', '_dmarc TXT "v=DMARC1; p=reject"'
    dns_server.add_zone(zone("spoofed.example", spf, dmarc))
    daemon = authmilter_daemon(config(dns_server, spf={"reject_fail_at_rcpt": True}))
    spoof = make_message(from_addr="ceo@spoofed.example")

    def reject(ip: str, name: str, mail_from: str = "ceo@spoofed.example") -> None:
        reply = send(daemon, spoof, client_ip=ip, client_name=name, mail_from=mail_from)
        assert reply.code == 550 and "5.7.26" in reply.text, (reply, daemon.log())

    for _ in range(3):
        reject(SPOOFER, "mail.spoofer.example")
    reject(SPOOFER6, f"[{SPOOFER6}]")
    reject(SPOOFER, "unknown")
    # hostile envelopes: the line keeps the real address last, right before " from=<"
    reject(SPOOFER, f"evil[{PLANTED}]")
    reject(SPOOFER, "evil", mail_from=f"x@spoofed.example>[{PLANTED}] from=<y")
    reject(SPOOFER, f"a[{PLANTED}] from=<x> action=reject(550 5.7.26)")
    # accepted: signed, and from the permitted address
    for _ in range(2):
        assert send(daemon, signed(key), client_ip=GOOD_IP).smtp_class == "accept"
    # SPF fail refused at RCPT TO (550 5.7.23): aggressive mode only
    reply = send(daemon, signed(key), client_ip=BAD_IP)
    assert reply.code == 550 and "5.7.23" in reply.text, reply
    daemon.wait_for_log("5.7.23")
    lines = [line for line in daemon.log().splitlines() if " qid=" in line]
    assert len(lines) == 11, daemon.log()
    return lines


def expected(aggressive: bool = False) -> Counter[str]:
    want = Counter({SPOOFER: 7, SPOOFER6: 1})
    if aggressive:
        want[BAD_IP] += 1
    return want


@pytest.mark.parametrize("rendering", ["file", "syslog", "journal"])
def test_the_filter_finds_exactly_the_dmarc_rejected_clients(
    daemon_log: list[str], rendering: str, tmp_path: Path
) -> None:
    lines = {"file": daemon_log, "syslog": as_syslog(daemon_log), "journal": as_journal(daemon_log)}
    log = tmp_path / f"{rendering}.log"
    log.write_text("\n".join(lines[rendering]) + "\n", encoding="utf-8")
    assert Counter(matched_ips(log)) == expected()
    assert Counter(matched_ips(log, "aggressive")) == expected(aggressive=True)
    assert Counter(matched_ips(log, "spf")) == Counter({BAD_IP: 1})


def test_fail2ban_accepts_the_jail_and_the_filter(tmp_path: Path) -> None:
    """``fail2ban-client -t`` on Debian's fail2ban configuration with only our jail."""
    fail2ban_regex()
    client = shutil.which("fail2ban-client")
    assert client is not None and Path("/etc/fail2ban/jail.conf").exists()
    conf = tmp_path / "fail2ban"
    shutil.copytree("/etc/fail2ban", conf)
    shutil.rmtree(conf / "jail.d")  # Debian's enables sshd, whose log is not here
    (conf / "jail.d").mkdir()
    shutil.copy(JAIL, conf / "jail.d" / "authmilter.conf")
    shutil.copy(FILTER, conf / "filter.d" / "authmilter.conf")
    test = subprocess.run(
        [client, "-c", str(conf), "-t"], capture_output=True, text=True, timeout=60, check=False
    )
    assert test.returncode == 0, test.stdout + test.stderr
    dump = subprocess.run(
        [client, "-c", str(conf), "-d"], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert "['add', 'authmilter', 'systemd']" in dump
    assert "'addjournalmatch', '_SYSTEMD_UNIT=authmilter.service'" in dump
    assert r"5\\.7\\.26" in dump and r"5\\.7\\.23" not in dump  # mode = dmarc
