"""Expressions and templates: the two small languages inside a runbook.

`expect:`/`when:` are Python-like expressions checked against an AST whitelist
(`compile`), evaluated without `eval` (`expression`) over values of bounded size
(`values`), and explained pytest-style when they fail (`explain`). `{{ }}` values are
rendered by a sandboxed Jinja2 environment that quotes for where they land
(`templating`).
"""
