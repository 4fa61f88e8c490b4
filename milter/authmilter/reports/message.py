"""The RFC 9990 report message: a short text part and the gzipped XML as an attachment.

Subject ``Report Domain: <policy domain> Submitter: <reporting domain> Report-ID: <<id>>``
(RFC 9990's ABNF: the submitter is a domain name, the id a msg-id). The Message-ID is
derived from the report id, so a retried send carries the same one.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import format_datetime

from authmilter.reports.aggregate import ReportMeta
from authmilter.reports.store import Aggregate


def build_message(
    agg: Aggregate,
    meta: ReportMeta,
    recipients: Sequence[str],
    attachment: bytes,
    *,
    name: str,
    now: float | None = None,
) -> EmailMessage:
    """The message that carries ``attachment`` (the ``.xml.gz``) named ``name.xml.gz``."""
    msg = EmailMessage()
    msg["From"] = meta.email
    msg["To"] = ", ".join(recipients) if recipients else "undisclosed-recipients:;"
    msg["Subject"] = (
        f"Report Domain: {agg.domain} Submitter: {meta.receiver} Report-ID: <{meta.report_id}>"
    )
    when = datetime.now(UTC) if now is None else datetime.fromtimestamp(now, UTC)
    msg["Date"] = format_datetime(when)
    msg["Message-ID"] = f"<{meta.report_id}.{agg.domain}@{meta.receiver}>"
    msg["MIME-Version"] = "1.0"
    begin = datetime.fromtimestamp(agg.begin, UTC).strftime("%Y-%m-%d %H:%M:%S")
    end = datetime.fromtimestamp(agg.end, UTC).strftime("%Y-%m-%d %H:%M:%S")
    msg.set_content(
        f"This is a DMARC aggregate report (RFC 9990) from {meta.org_name}\n"
        f"for {agg.domain}: {agg.messages} message(s) in {len(agg.records)} record(s),\n"
        f"from {begin} to {end} UTC.\n\nReport-ID: {meta.report_id}\n"
    )
    msg.add_attachment(
        attachment, maintype="application", subtype="gzip", filename=f"{name}.xml.gz"
    )
    return msg
