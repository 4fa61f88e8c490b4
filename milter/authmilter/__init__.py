"""authmilter: one milter for SPF, DKIM, DMARC and Authentication-Results."""

__version__ = "0.1.0"
