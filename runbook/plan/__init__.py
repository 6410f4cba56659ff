"""Plan: what a run would do, computed without doing it.

A plan is a pure function of the runbook, its params, the inventory and the
executors' `plan()` hooks; it backs `runbook plan`, `run --dry-run` and
`run --plan FILE`. `planner` builds a plan and its digest; `saved` reads a plan
file and refuses a run that would no longer do what it says.
"""
