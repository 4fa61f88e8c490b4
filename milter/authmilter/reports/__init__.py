"""DMARC reporting: the history store, aggregate reports (RFC 9990), failure reports (RFC 9991).

The daemon records one :class:`~authmilter.reports.history.HistoryRow` per inbound message
whose DMARC evaluation found a policy record; ``authmilter report`` builds and sends the
aggregate reports from the store (:mod:`authmilter.reports.store`).
"""
