"""Log: the hash-chained incident log (JSON Lines, one file per run).

`journal` writes and reads it, `verify` is the one chain verifier every reader uses,
`view` lists and renders logs for people.
"""
