"""How commands print objects: YAML documents by default, JSON with --json."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

import yaml


def emit(objects: Sequence[Any] | Any, as_json: bool) -> None:
    """Print one object or a list of manifests; several manifests become a YAML stream or a JSON list."""
    if as_json:
        sys.stdout.write(json.dumps(objects, indent=2) + "\n")
        return
    docs = list(objects) if isinstance(objects, list | tuple) else [objects]
    sys.stdout.write(yaml.safe_dump_all(docs, sort_keys=False, default_flow_style=False, explicit_start=True))
