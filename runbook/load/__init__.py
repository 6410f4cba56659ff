"""Load: from a YAML file to a validated `Runbook`.

Safe YAML that keeps line marks (`marked_yaml`), the JSON Schema of the format and of
each executor (`schema`), the cross-field checks no schema can express (`semantics`),
the frozen model (`model`, built by `build`), typed params (`params`), what
expressions and templates refer to (`refs`), and NAME -> file resolution (`resolve`).
Nothing here runs anything: a runbook that loads is one the later stages can trust.
"""
