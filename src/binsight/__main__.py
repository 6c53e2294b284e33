"""``python -m binsight``: the command line (so that ``torchrun -m binsight ...`` works too)."""

import sys

from binsight.cli import main

if __name__ == "__main__":
    sys.exit(main())
