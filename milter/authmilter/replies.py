"""Every SMTP reply authmilter makes, in one place (codes per RFC 3463, 7372, 9989)."""

from __future__ import annotations

from authmilter.decision import Reply


def spf_fail(domain: str) -> Reply:
    """550 5.7.23 (RFC 7372) for an SPF fail."""
    return Reply(550, "5.7.23", f"SPF check failed: {domain or 'sender'} does not permit this host")


def iprev_fail(ip: str) -> Reply:
    """550 5.7.25 (RFC 7372 "reverse DNS validation failed") for iprev=fail."""
    return Reply(550, "5.7.25", f"reverse DNS validation failed: no PTR name of {ip} resolves back")


def dmarc_reject(template: str, domain: str) -> Reply:
    """550 5.7.26 (RFC 7372) with the configured text; ``{domain}`` is the author domain."""
    return Reply(550, "5.7.26", template.replace("{domain}", domain))


def dmarc_temperror(domain: str) -> Reply:
    """451 4.7.5: the DMARC verdict depends on DNS that failed; the sender retries."""
    return Reply(
        451, "4.7.5", f"temporary DNS failure checking DMARC for {domain}; try again later"
    )


def bad_from(text: str) -> Reply:
    """550 5.7.1: the From field cannot be evaluated (missing, several, unparseable)."""
    return Reply(550, "5.7.1", text)


def deceptive_from(found: str) -> Reply:
    """550 5.7.1: the From field shows its reader another address (``from.display_name_check``)."""
    return Reply(550, "5.7.1", f"the From field's {found}")


def sender_not_owned(address: str, user: str | None) -> Reply:
    """553 5.7.1 (like Postfix's reject_sender_login_mismatch); no user: not in the map."""
    owner = f"owned by user {user}" if user else "in the sender login map"
    return Reply(553, "5.7.1", f"sender address {address} is not {owner}")


def from_not_single() -> Reply:
    """553 5.7.1: under the sender login map, From must name exactly one address."""
    return Reply(553, "5.7.1", "the From field must hold exactly one address")


def internal_error() -> Reply:
    """451 4.3.0: something went wrong on our side; nothing is lost, the sender retries."""
    return Reply(451, "4.3.0", "temporary local problem; please try again later")


def busy() -> Reply:
    """451 4.3.2 at CONNECT: more sessions than ``milter.max_sessions``; the MTA retries."""
    return Reply(451, "4.3.2", "too many connections to the mail filter; try again later")
