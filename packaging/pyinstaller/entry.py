"""Entry point of the frozen `bitdust` binary (bitdust.spec): the same as `python -m bitdust`.

Nothing else belongs here; every behaviour lives in bitdust.cli so the binary and the source tree
cannot drift apart.
"""

import sys

from bitdust.cli import main

if __name__ == "__main__":
    sys.exit(main())
