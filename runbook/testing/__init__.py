"""Testing: scenario tests for runbooks and the pytest plugin (`pytest runbooks/`).

Scenarios replace executors with scripted results at the plugin boundary, so a
runbook's branching is proven without a cluster; the pytest plugin collects runbooks
and their scenario files and dry-runs each one.
"""
