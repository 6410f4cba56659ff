"""`python -m runbook` is the `runbook` command."""

import sys

from runbook.cli import main

sys.exit(main())
