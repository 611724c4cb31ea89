"""Test support: a private Docker engine, the services as real processes, waiting helpers.

Fixtures live in tests/conftest.py; import helpers as `from tests.support.<module> import`.
"""
