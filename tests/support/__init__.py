"""Helpers and data shared by test modules (no test module imports another; fixtures live in conftest.py files)."""
