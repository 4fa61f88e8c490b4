"""``python -m authmilter``."""

from authmilter.cli import main

raise SystemExit(main())
