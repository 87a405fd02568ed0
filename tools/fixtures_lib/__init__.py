"""Helpers for tools/make_fixtures.py."""
