"""Where the repository and the tests' golden data live."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
# The source document the runbook follows; its commands and outputs are golden fixtures.
SEED = FIXTURES / "seed.md"
