"""Reading the files users pass to commands, with one-sentence errors instead of tracebacks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from kalab.model.errors import KalabError


def load_documents(path: str) -> list[dict[str, Any]]:
    """All objects in a YAML/JSON file; a `kind: List` (or a bare list) is flattened to its items."""
    file = Path(path)
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise KalabError(f"{path} does not exist; pass the path of a YAML or JSON file.") from None
    except IsADirectoryError:
        raise KalabError(f"{path} is a directory; pass the path of a YAML or JSON file.") from None
    except (OSError, UnicodeDecodeError) as err:
        raise KalabError(f"{path} cannot be read ({err.__class__.__name__}); check the file.") from None
    try:
        raw = [d for d in yaml.safe_load_all(text) if d is not None]
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        raise KalabError(f"{path} is not valid YAML{where}; fix the syntax and try again.") from None
    docs: list[dict[str, Any]] = []
    for item in raw:
        items = item if isinstance(item, list) else item.get("items", [item]) if item.get("kind") == "List" else [item]
        for obj in items:
            if not isinstance(obj, dict):
                raise KalabError(f"{path} holds a {type(obj).__name__} where a Kubernetes object was expected.")
            docs.append(obj)
    return docs
