"""Helpers shared by the test suite and the benchmarks: where the golden data lives, the root-and-tools marker,
labs, network namespaces, throwaway users, a JupyterHub, the `kalab` command, and the one way to wait.

Imported as `tests.support.…` from the repository root (pytest's `pythonpath`, `python -m bench.…`); fixtures
stay in tests/conftest.py, where pytest finds them.
"""
