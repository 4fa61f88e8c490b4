"""``authmilter dns-check``: the audit of our own domains' DNS records (SPF, DKIM, DMARC, MX)
and of this host's reverse DNS, through the engine's resolver and parsers
(:func:`authmilter.audit.run.audit`)."""
