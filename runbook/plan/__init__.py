"""Plan: what a run would do, computed without doing it.

A plan is a pure function of the runbook, its params and the executors' `plan()`
hooks; it backs `runbook plan`, `run --dry-run` and `run --plan FILE` (its digest).
"""
