"""The shipped Postfix hardening set (conf/postfix/) on a real private Postfix.

Both files are read with Postfix's own ``postconf`` and used as they are, with only what
a private instance must change: paths (milter socket, login map, Dovecot auth socket, a
TLS certificate), listening addresses (free loopback ports instead of 25 and 587), no
chroot, and where our domain's mail goes (``relay_domains``, to the SMTP sink). So
postscreen answers on the "port 25" and the submission service on the "port 587" exactly
as shipped. The blocklists stay commented out, as shipped: the tests have no internet.

The roaming user connects from 127.0.0.77: loopback, but with no name in /etc/hosts and
no PTR record, and says ``EHLO laptop`` (not a fully qualified name), as a laptop on a
hotel network does. ``mynetworks`` is empty, so no loopback client is "ours" to Postfix,
and ``trust.internal_hosts`` is empty, so none is ours to authmilter: only a SASL login is.
"""

from __future__ import annotations

import datetime
import re
import shutil
import smtplib
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dkim
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from authmilter.dnsresolver import DnspythonResolver
from tests.support.daemon import AuthmilterDaemon
from tests.support.dnsserver import DnsServer
from tests.support.fixtures import require_postfix
from tests.support.keys import DkimKey, new_rsa_key
from tests.support.mail import dkim_sign, make_message, quoted, zone
from tests.support.postfix import PostfixInstance, make_shared_dir
from tests.support.smtpsink import ReceivedMessage, SmtpSink

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "conf" / "postfix"
POSTCONF = "/usr/sbin/postconf"
AUTHSERV = "mx.test.example"
ROAMING_IP = "127.0.0.77"  # no PTR record, not in /etc/hosts
LOGIN = "c-login"  # carol's SASL login
PASSWORD = "s3cret"


# --------------------------------------------------------------------------- the files


def postconf(config_dir: Path, *args: str) -> str:
    """``postconf -c DIR ARGS``: its output; it must not warn about anything."""
    proc = subprocess.run(
        [POSTCONF, "-c", str(config_dir), *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    assert proc.stderr == "", proc.stderr
    return proc.stdout


def shipped_dir(base: Path) -> Path:
    """A config directory holding the two shipped files, unchanged."""
    base.mkdir(parents=True, exist_ok=True)
    directory = Path(tempfile.mkdtemp(prefix="shipped-", dir=base))
    for name in ("main.cf", "master.cf"):
        shutil.copyfile(SHIPPED / name, directory / name)
    return directory


def shipped_main_cf(base: Path) -> dict[str, str]:
    """The shipped main.cf as Postfix reads it (``postconf -n``)."""
    directory = shipped_dir(base)
    params = {}
    for line in postconf(directory, "-n").splitlines():
        key, _, value = line.partition(" = ")
        params[key] = value
    del params["config_directory"]
    return params


def shipped_services(base: Path) -> list[str]:
    """The shipped master.cf services as Postfix reads them (``postconf -M``), one line each."""
    return postconf(shipped_dir(base), "-M").splitlines()


def adapt_services(services: list[str], pf: PostfixInstance) -> str:
    """The private instance's changes: loopback ports, no chroot, its Dovecot auth socket."""
    ports = {"smtp": pf.port, "submission": pf.submission_port}
    out = []
    for line in services:
        fields = line.split(None, 7)
        name, kind = fields[0], fields[1]
        if kind == "inet":
            fields[0] = f"127.0.0.1:{ports[name]}"
        fields[4] = "n"  # chroot
        if name == "submission":
            fields[7] += f" -o smtpd_sasl_path={pf.dir / 'auth'}"
        out.append(" ".join(fields))
    out.append("tlsmgr unix - - n 1000? 1 tlsmgr")  # in every stock master.cf
    return "\n".join(out) + "\n"


def test_the_shipped_files_are_clean_postfix_and_keep_the_readme_submission_service(
    tmp_path: Path,
) -> None:
    if not Path(POSTCONF).exists():
        pytest.skip("postconf is not installed")
    main = shipped_main_cf(tmp_path / "a")
    # every check of where a client comes from is after permit_sasl_authenticated
    for name in ("client", "helo", "sender", "recipient", "relay"):
        items = [i.strip() for i in main[f"smtpd_{name}_restrictions"].split(",")]
        sasl = items.index("permit_sasl_authenticated")
        assert all(not i.startswith("reject") for i in items[:sasl]), items
    assert main["smtpd_sasl_auth_enable"] == "no"  # port 25: no AUTH
    services = shipped_services(tmp_path / "b")
    (smtp,) = (s for s in services if s.startswith("smtp "))
    assert smtp.split()[7] == "postscreen"
    (submission,) = (s for s in services if s.startswith("submission "))
    # the README's submission service (section "Who is us") is the shipped one
    readme = (REPO / "README.md").read_text()
    snippet = readme.split("\nsubmission inet n - y - - smtpd\n", 1)[1].split("```", 1)[0]
    for option in snippet.split():
        assert option == "-o" or f"-o {option}" in submission, option
    assert "-o smtpd_sender_restrictions=reject_sender_login_mismatch," in submission


# --------------------------------------------------------------------------- the instance


@dataclass
class Hardened:
    """A daemon, the shipped Postfix set in front of it, a DNS server and an SMTP sink."""

    dns: DnsServer
    sink: SmtpSink
    daemon: AuthmilterDaemon
    base: Path
    main: dict[str, str]  # the shipped main.cf, adapted
    services: list[str]  # the shipped master.cf
    postfix: PostfixInstance | None = None

    def instance(self, main: dict[str, str]) -> PostfixInstance:
        """A private Postfix (not started) with ``main`` and the shipped services."""
        services = self.services
        return PostfixInstance(
            self.base,
            milter=self.daemon.socket,
            sink_port=self.sink.port,
            extra_main_cf=main,
            mynetworks="",
            sasl_users={LOGIN: PASSWORD},
            hostname=AUTHSERV,
            listeners=lambda pf: adapt_services(services, pf),
        )


def self_signed(directory: Path) -> tuple[Path, Path]:
    """A certificate for the submission port's STARTTLS (clients here do not verify it)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, AUTHSERV)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "cert.pem", directory / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    key_path.chmod(0o600)
    return cert_path, key_path


@pytest.fixture(scope="module")
def inbound_key() -> DkimKey:
    return new_rsa_key(2048)


@pytest.fixture(scope="module")
def hardened(inbound_key: DkimKey) -> Iterator[Hardened]:
    require_postfix()
    try:
        socket.getnameinfo((ROAMING_IP, 0), socket.NI_NAMEREQD)
    except OSError:
        pass  # no name: what the roaming user's address must be
    else:
        pytest.fail(f"{ROAMING_IP} has a name on this machine: no address without PTR")
    base = make_shared_dir()
    outbound_key = new_rsa_key(2048)
    started: list[DnsServer | SmtpSink | AuthmilterDaemon | PostfixInstance] = []
    try:
        dns = DnsServer(
            zone(
                "example.org",  # a stranger's domain, sending to us on port 25
                '@ TXT "v=spf1 ip4:127.0.0.1 -all"',
                '_dmarc TXT "v=DMARC1; p=reject"',
                f"sel._domainkey TXT {quoted(inbound_key.txt)}",
                "$ORIGIN example.net.",  # ours
                '@ TXT "v=spf1 -all"',
                '_dmarc TXT "v=DMARC1; p=reject"',
                f"out._domainkey TXT {quoted(outbound_key.txt)}",
            )
        ).start()
        started.append(dns)
        sink = SmtpSink().start()
        started.append(sink)
        login_map = base / "sender_login"  # one file for Postfix and authmilter
        login_map.write_text(f"carol@example.net  {LOGIN}\n@example.net  admin\n")
        login_map.chmod(0o644)
        daemon_dir = base / "daemon"
        daemon_dir.mkdir(mode=0o755)
        key_file = outbound_key.write(daemon_dir / "out.private")
        daemon = AuthmilterDaemon(
            daemon_dir,
            {
                "milter": {"authserv_id": AUTHSERV, "umask": "0000"},
                "dns": {"nameservers": [dns.address], "timeout": 2.0},
                "trust": {"internal_hosts": []},
                "signing": {
                    "keys": [
                        {"domain": "example.net", "selector": "out", "key_file": str(key_file)}
                    ],
                    "sender_login_map": str(login_map),
                },
            },
        ).start()
        started.append(daemon)
        cert, key = self_signed(base)
        main = shipped_main_cf(base)
        main.update(
            {
                "smtpd_milters": daemon.socket,
                "non_smtpd_milters": daemon.socket,
                "smtpd_sender_login_maps": f"texthash:{login_map}",
                "smtpd_tls_cert_file": str(cert),
                "smtpd_tls_key_file": str(key),
                "relay_domains": "example.net",  # our domain: inbound mail goes to the sink
                "relay_transport": f"relay:[127.0.0.1]:{sink.port}",
            }
        )
        h = Hardened(dns, sink, daemon, base, main, shipped_services(base))
        h.postfix = h.instance(main)
        started.append(h.postfix)
        h.postfix.start()
        yield h
    finally:
        for service in reversed(started):
            service.stop()
        shutil.rmtree(base, ignore_errors=True)


@dataclass
class Outcome:
    code: int
    text: str


def send(
    port: int,
    mail_from: str,
    rcpt: str,
    data: bytes,
    *,
    source: str = "127.0.0.1",
    helo: str = "client.test",
    tls: bool = False,
    login: tuple[str, str] | None = None,
) -> Outcome:
    """One SMTP transaction from ``source``; the reply that ended it (250 when queued)."""
    try:
        with smtplib.SMTP(
            "127.0.0.1", port, local_hostname=helo, timeout=60, source_address=(source, 0)
        ) as client:
            client.ehlo()
            if tls:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE  # the test's self-signed certificate
                client.starttls(context=context)
                client.ehlo()
            if login:
                client.login(*login)
            client.sendmail(mail_from, [rcpt], data)
    except smtplib.SMTPRecipientsRefused as exc:
        code, text = next(iter(exc.recipients.values()))
        return Outcome(code, text.decode())
    except smtplib.SMTPResponseException as exc:
        return Outcome(exc.smtp_code, exc.smtp_error.decode())
    return Outcome(250, "queued")


def arrived(h: Hardened, mail_from: str) -> ReceivedMessage:
    """The message from ``mail_from`` that reached the sink (a bounded wait)."""
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        found = [m for m in h.sink.messages if m.mail_from == mail_from]
        if found:
            return found[-1]
        time.sleep(0.1)
    raise AssertionError(f"nothing from {mail_from} arrived:\n{h.daemon.log()}")


def verifies(h: Hardened, msg: ReceivedMessage) -> bool:
    resolver = DnspythonResolver([h.dns.address], timeout=2)

    def dnsfunc(name: bytes, timeout: float = 5) -> bytes:
        return b"".join(resolver.query(name.decode(), "TXT").txt())

    return bool(dkim.verify(msg.data, dnsfunc=dnsfunc))


def submit(pf: PostfixInstance, mail_from: str, from_field: str, **kwargs: object) -> Outcome:
    """The roaming user's client: from the address without PTR, "EHLO laptop", over TLS."""
    raw = make_message(from_addr=from_field, to_addr="dave@example.com")
    return send(
        pf.submission_port,
        mail_from,
        "dave@example.com",
        raw,
        source=ROAMING_IP,
        helo="laptop",
        tls=True,
        **kwargs,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- behaviours


@pytest.fixture
def pf(hardened: Hardened) -> PostfixInstance:
    """The shipped set, running."""
    assert hardened.postfix is not None
    return hardened.postfix


def test_roaming_user_without_ptr_can_send_authenticated(
    hardened: Hardened, pf: PostfixInstance
) -> None:
    h = hardened
    outcome = submit(pf, "carol@example.net", "carol@example.net", login=(LOGIN, PASSWORD))
    assert outcome.code == 250, (outcome, pf.maillog(), h.daemon.log())
    msg = arrived(h, "carol@example.net")
    signature = msg.header_values("DKIM-Signature")
    assert len(signature) == 1 and "d=example.net" in signature[0].replace(" ", ""), msg.data
    assert verifies(h, msg), msg.data.decode(errors="replace")
    log = pf.maillog()
    assert f"connect from unknown[{ROAMING_IP}]" in log  # Postfix found no name for it
    assert f"sasl_username={LOGIN}" in log


def test_the_same_client_without_authentication_is_refused(
    hardened: Hardened, pf: PostfixInstance
) -> None:
    h = hardened
    before = len(h.sink.messages)
    # the submission port: a login or nothing
    outcome = submit(pf, "carol@example.net", "carol@example.net")
    assert outcome.code == 554 and outcome.text.startswith("5.7.1 "), outcome
    assert "Client host rejected: Access denied" in outcome.text
    # port 25, through postscreen to smtpd: an address without PTR, unauthenticated
    raw = make_message(from_addr="carol@example.net", to_addr="dave@example.net")
    outcome = send(pf.port, "carol@example.net", "dave@example.net", raw, source=ROAMING_IP)
    assert outcome.code == 450, outcome
    assert "Client host rejected: cannot find your reverse hostname" in outcome.text, outcome
    assert len(h.sink.messages) == before
    connect = rf"postscreen\[\d+\]: CONNECT from \[{re.escape(ROAMING_IP)}\]"
    assert re.search(connect, pf.maillog())  # postscreen answered port 25


def test_mail_from_our_own_domain_sent_from_outside_is_rejected_by_dmarc(
    hardened: Hardened, pf: PostfixInstance, inbound_key: DkimKey
) -> None:
    h = hardened
    # a stranger on port 25 (127.0.0.1 is localhost: it has its PTR), honest mail: delivered
    honest = dkim_sign(
        make_message(from_addr="alice@example.org"), "example.org", "sel", inbound_key
    )
    outcome = send(pf.port, "alice@example.org", "dave@example.net", honest)
    assert outcome.code == 250, (outcome, pf.maillog(), h.daemon.log())
    ars = arrived(h, "alice@example.org").header_values("Authentication-Results")
    assert any(a.startswith(AUTHSERV) and "dmarc=pass" in a for a in ars), ars
    # "from myself": our own domain (p=reject) in From, from outside: refused by DMARC
    before = len(h.sink.messages)
    spoof = make_message(from_addr="ceo@example.net", to_addr="dave@example.net")
    outcome = send(pf.port, "bounce@spoofer.test", "dave@example.net", spoof)
    assert outcome.code == 550 and outcome.text.startswith("5.7.26 "), outcome
    assert "example.net" in outcome.text
    assert len(h.sink.messages) == before


def test_authenticated_user_sending_as_someone_else_gets_553(
    hardened: Hardened, pf: PostfixInstance
) -> None:
    h = hardened
    before = len(h.sink.messages)
    login = (LOGIN, PASSWORD)
    # Postfix (reject_sender_login_mismatch, the same map): the envelope sender
    outcome = submit(pf, "admin@example.net", "admin@example.net", login=login)
    assert outcome.code == 553, outcome
    assert outcome.text == (
        f"5.7.1 <admin@example.net>: Sender address rejected: not owned by user {LOGIN}"
    )
    # authmilter (signing.sender_login_map): the From field, which Postfix does not read
    outcome = submit(pf, "carol@example.net", "admin@example.net", login=login)
    assert outcome.code == 553, (outcome, h.daemon.log())
    assert outcome.text == f"5.7.1 sender address admin@example.net is not owned by user {LOGIN}"
    assert len(h.sink.messages) == before


def test_a_helo_check_before_permit_sasl_authenticated_locks_the_roaming_user_out(
    hardened: Hardened,
) -> None:
    """What the guides' readers meet: the order turned round refuses the logged-in laptop."""
    h = hardened
    helo = h.main["smtpd_helo_restrictions"].split(", ")
    helo.remove("reject_non_fqdn_helo_hostname")
    wrong = {
        **h.main,
        "smtpd_helo_restrictions": ", ".join(["reject_non_fqdn_helo_hostname", *helo]),
    }
    with h.instance(wrong) as pf:
        outcome = submit(pf, "carol@example.net", "carol@example.net", login=(LOGIN, PASSWORD))
    assert outcome.code == 504, outcome
    assert outcome.text == "5.5.2 <laptop>: Helo command rejected: need fully-qualified hostname"
