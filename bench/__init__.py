"""authmilter benchmark harness: corpus, milter-protocol load client, reference milters.

Run everything with ``bench/run`` (as root on Debian 12); see ``bench/README.md``.
"""
