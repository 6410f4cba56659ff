"""`python -m runbook` is the `runbook` command."""

import sys

from runbook.cli.main import main

sys.exit(main())
