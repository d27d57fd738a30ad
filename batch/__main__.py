"""`python -m batch score|watch INPUT OUTPUT ...`: see batch/cli.py."""

import sys

from batch.cli import main

if __name__ == "__main__":
    sys.exit(main())
