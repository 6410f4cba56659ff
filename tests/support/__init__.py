"""Shared test support: real local servers, the CLI runner, log helpers.

Imported as `support.<module>` (pytest's `pythonpath = ["tests"]`); fixtures are
registered by `tests/conftest.py`, never imported from it.
"""
