"""Run: the state machine that executes a loaded runbook and records it.

`runner` drives steps phase by phase; `attempts` runs one attempt under its timeout
and retry policy; `gates` asks for confirmation; `judging` turns results into
verdicts; `state` is what later steps can see; `resume` continues an interrupted log;
`fanout`, `connections` and `inventory` take steps to many hosts; `operator` is the
terminal; `secrets` masks secret values wherever they would be shown or written.
"""
