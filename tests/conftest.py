"""Test set-up lives in the repository's top-level conftest.py (paths, shared fixtures)."""
