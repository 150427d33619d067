"""Reading the files users pass to commands, with one-sentence errors instead of tracebacks."""

from __future__ import annotations

from typing import Any

from kalab.cli.shapes import check_shape
from kalab.model.errors import KalabError
from kalab.model.textfile import parse_yaml_all, read_text
from kalab.model.wording import shorten

HINT = "pass the path of a YAML or JSON file of Kubernetes objects"


def load_documents(path: str) -> list[dict[str, Any]]:
    """All objects in a YAML/JSON file; a `kind: List` (or a bare list) is flattened to its items.

    Every object is a map whose fields kalab reads have the right types (see kalab.cli.shapes), so the
    commands reading them never meet a string where they expect a map.
    """
    shown = shorten(path)
    raw = parse_yaml_all(read_text(path, "The file", HINT), "The file", path, "fix the syntax and try again")
    if not raw:
        raise KalabError(f"The file {shown} holds no objects; {HINT}.")
    docs: list[dict[str, Any]] = []
    for item in raw:
        if isinstance(item, dict) and item.get("kind") == "List":
            items = item.get("items")
            if not isinstance(items, list):
                raise KalabError(f"{shown} holds a List whose items is not a list; list the objects under items:.")
        else:
            items = item if isinstance(item, list) else [item]
        for obj in items:
            if not isinstance(obj, dict):
                raise KalabError(
                    f"{shown} holds {_a(obj)} ({shorten(obj, 40)}) where a Kubernetes object (a map with "
                    "apiVersion, kind and metadata) was expected; pass a file of objects."
                )
            check_shape(obj, shown)
            docs.append(obj)
    return docs


def _a(value: Any) -> str:
    names = {str: "a string", int: "a number", float: "a number", bool: "a boolean", list: "a list"}
    return names.get(type(value), f"a {type(value).__name__}")
