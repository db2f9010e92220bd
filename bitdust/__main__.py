"""`python -m bitdust` is the `bitdust` command."""

import sys

from bitdust.cli import main

sys.exit(main())
