"""``python -m serverlink``: the same as the ``serverlink`` command."""

import sys

from serverlink.cli import main

if __name__ == "__main__":
    sys.exit(main())
