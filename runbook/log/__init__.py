"""Log: the hash-chained incident log (JSON Lines, one file per run).

`records` is its vocabulary (record types, outcomes, the data of each record),
`journal` writes and reads it, `verify` is the one chain verifier every reader uses,
`view` lists and renders logs for people.
"""
