"""``python -m binsight.cli``: the command line (as ``python -m binsight``)."""

import sys

from binsight.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
