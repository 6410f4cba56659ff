"""CLI: the `runbook` command -- argument parsing, verbs, console and authoring tools.

`main` parses arguments (importing nothing heavy, so `--help` stays fast) and
dispatches to `commands`; `console` renders log records for people or as JSON;
`catalog`, `lint`, `scaffold`, `docgen` and `report` back the verbs of those names.
Nothing in the engine imports from here.
"""
