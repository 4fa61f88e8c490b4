"""Outbound DKIM: key tables, key loading, signing, sender authorisation, key generation."""
