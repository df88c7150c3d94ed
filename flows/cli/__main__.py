"""`python -m flows.cli`: the `corpus` command."""

import sys

from flows.cli import main

sys.exit(main())
