"""Expressions and templates: the two small languages inside a runbook.

`expect:`/`when:` are Python-like expressions: `compile` turns the text into a tree
checked against a whitelist, `expression` evaluates it without `eval` and explains a
false check pytest-style, over values admitted and bounded by `values` (which also
holds the dry-run `UNKNOWN`). `{{ }}` values are rendered by a sandboxed Jinja2
environment that quotes for where they land (`templating`), within the size, loop
and time bounds of `bounds`. Every regex a runbook or an operator writes is compiled
by `patterns` for RE2, which matches in linear time.
"""
