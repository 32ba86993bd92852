"""Start a Rookery worker: the same as `rookery worker` (options pass through)."""

from __future__ import annotations

import sys

from app.cli import main

if __name__ == "__main__":
    main(["worker", *sys.argv[1:]])
