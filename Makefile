# Two entry points for a fresh machine (see README): `make demo` and `make test`.
VENV ?= .venv
PYTHON ?= python3
STAMP := $(VENV)/.installed

.PHONY: setup demo test lint bench mutate clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	@echo "installing runbook-as-code[dev] into $(VENV) (log: $(VENV)/install.log)"
	@$(VENV)/bin/pip install -q --upgrade pip > $(VENV)/install.log 2>&1 || \
	  { tail -20 $(VENV)/install.log; exit 1; }
	@$(VENV)/bin/pip install -q -e '.[dev]' >> $(VENV)/install.log 2>&1 || \
	  { tail -20 $(VENV)/install.log; exit 1; }
	touch $(STAMP)

setup: $(STAMP)

# The tour's systemd act needs systemd-journal-remote (and journalctl); without them (not
# root, no apt) it explains what is missing and runs the demo-supervisor act instead.
demo: $(STAMP)
	@bash .ci/setup-system systemd-journal-remote || echo "demo: continuing without systemd-journal-remote" >&2
	$(VENV)/bin/runbook-demo tour

test: $(STAMP)
	bash .ci/setup-system
	$(VENV)/bin/python -m pytest -q -p no:cacheprovider

lint: $(STAMP)
	$(VENV)/bin/ruff check runbook plugins demo tests bench tools
	$(VENV)/bin/mypy

# Mutation testing of the safety code (tools/mutation.toml): slow (about an hour on two
# cores), so not part of `make test`; run it before changing a safety module's tests.
mutate: $(STAMP)
	$(VENV)/bin/pip install -q -e '.[mutate]'
	$(VENV)/bin/python tools/mutate.py

bench: $(STAMP)
	$(VENV)/bin/python bench/run_all.py

clean:
	rm -rf $(VENV) incident-logs .pytest_cache .mypy_cache .ruff_cache
