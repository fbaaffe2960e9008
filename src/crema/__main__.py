"""``python -m crema``: the crema command line."""

from __future__ import annotations

import sys

from crema.cli import main

if __name__ == "__main__":
    sys.exit(main())
