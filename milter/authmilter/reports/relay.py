"""Sending report messages through the configured SMTP relay (``reports.relay``).

The default relay is the local Postfix (``smtp://127.0.0.1:25``), so the local authmilter
signs the reports. ``smtp+starttls://`` requires STARTTLS; ``smtps://`` is TLS from the
start; AUTH is used when ``reports.relay_user`` is set (the password is read from
``reports.relay_password_file`` and never logged).
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from pathlib import Path
from urllib.parse import urlsplit

from authmilter.config import ReportsConfig
from authmilter.errors import ConfigError
from authmilter.files import read_text


class RelayTempError(Exception):
    """The relay could not take the message now (connection trouble, 4xx): try next run."""


class RelayPermError(Exception):
    """The relay refused the message for good (5xx)."""


@dataclass(frozen=True, slots=True)
class Relay:
    """Where and how report messages are handed over."""

    host: str
    port: int
    tls: str = "none"  # "none" | "starttls" | "tls"
    user: str = ""
    password: str = ""
    timeout: float = 60.0

    @classmethod
    def from_config(cls, cfg: ReportsConfig, config_dir: Path = Path()) -> Relay:
        """The relay of ``reports.relay`` (ConfigError naming the key on trouble)."""
        url = urlsplit(cfg.relay)
        tls = {"smtp": "none", "smtp+starttls": "starttls", "smtps": "tls"}[url.scheme]
        try:
            port = url.port or (465 if tls == "tls" else 25)
        except ValueError:
            raise ConfigError(f"reports.relay: bad port in {cfg.relay!r}") from None
        if not url.hostname:
            raise ConfigError(f"reports.relay: no host in {cfg.relay!r}")
        password = ""
        if cfg.relay_user:
            if not cfg.relay_password_file:
                raise ConfigError("reports.relay_user: set, but reports.relay_password_file is not")
            password = read_text(
                config_dir / cfg.relay_password_file, "reports.relay_password_file"
            ).strip()
        return cls(url.hostname, port, tls, cfg.relay_user, password)

    def send(
        self, message: EmailMessage, sender: str, recipients: Sequence[str]
    ) -> dict[str, tuple[int, bytes]]:
        """Hand one message over: the recipients refused while others were taken ({} when
        all were). RelayTempError or RelayPermError when the message was not taken at all
        (so that a retry never sends it twice to a recipient that took it).

        Permanent: every recipient refused with 5xx, or the message refused at DATA with 5xx
        (too big, content). Temporary: connection and TLS trouble, 4xx, and a refused AUTH
        or MAIL FROM (the relay settings need fixing; the report waits for that). Trouble
        after the message was taken (at QUIT) is ignored.
        """
        smtp: smtplib.SMTP | None = None
        try:
            if self.tls == "tls":
                smtp = smtplib.SMTP_SSL(
                    self.host, self.port, timeout=self.timeout, context=ssl.create_default_context()
                )
            else:
                smtp = smtplib.SMTP(self.host, self.port, timeout=self.timeout)
            if self.tls == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if self.user:
                smtp.login(self.user, self.password)
            refused = smtp.send_message(message, sender, list(recipients))
        except smtplib.SMTPRecipientsRefused as exc:
            raise _classify(exc.recipients) from None
        except (smtplib.SMTPAuthenticationError, smtplib.SMTPSenderRefused) as exc:
            what = "AUTH" if isinstance(exc, smtplib.SMTPAuthenticationError) else "MAIL FROM"
            raise RelayTempError(
                f"relay {self.host}:{self.port} refused {what} with {exc.smtp_code}: "
                "check reports.relay, relay_user, email"
            ) from None
        except smtplib.SMTPResponseException as exc:
            cls = RelayPermError if exc.smtp_code >= 500 else RelayTempError
            raise cls(f"relay answered {exc.smtp_code}") from None
        except (OSError, smtplib.SMTPException) as exc:
            raise RelayTempError(f"relay {self.host}:{self.port}: {type(exc).__name__}") from None
        finally:
            if smtp is not None:
                _quit(smtp)
        return dict(refused)


def _quit(smtp: smtplib.SMTP) -> None:
    try:
        smtp.quit()
    except (OSError, smtplib.SMTPException):
        smtp.close()


def _classify(refused: dict[str, tuple[int, bytes]]) -> RelayTempError | RelayPermError:
    codes = sorted(code for code, _ in refused.values())
    if codes and codes[0] >= 500:
        return RelayPermError(f"relay refused {len(codes)} recipient(s) with {codes[0]}")
    return RelayTempError(f"relay deferred {len(codes)} recipient(s)")
