"""Label and field selectors, with kube-apiserver's grammar (`a=b,c!=d,e in (f,g),!h` and `spec.nodeName=x`)."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from kalab.lab.apiserver.errors import bad_request
from kalab.model import objects

Predicate = Callable[[Mapping[str, Any]], bool]
_SET = re.compile(r"^\s*(!?)([A-Za-z0-9._/-]+)\s*(?:(notin|in)\s*\(([^)]*)\))?\s*$")
_EQ = re.compile(r"^\s*([A-Za-z0-9._/-]+)\s*(==|=|!=)\s*([A-Za-z0-9._-]*)\s*$")


def _split(selector: str) -> list[str]:
    """Split on commas that are not inside `in (…)` parentheses."""
    parts, depth, current = [], 0, ""
    for ch in selector:
        depth += ch == "("
        depth -= ch == ")"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    parts.append(current)
    return [p for p in parts if p.strip()]


def _label_term(term: str) -> Callable[[Mapping[str, str]], bool]:
    if match := _EQ.match(term):
        key, op, value = match.groups()
        if op == "!=":
            return lambda labels: labels.get(key) != value
        return lambda labels: labels.get(key) == value
    if match := _SET.match(term):
        negate, key, op, values = match.groups()
        if op:
            allowed = {v.strip() for v in values.split(",") if v.strip()}
            if op == "in":
                return lambda labels: key in labels and labels[key] in allowed
            return lambda labels: key not in labels or labels[key] not in allowed
        if negate:
            return lambda labels: key not in labels
        return lambda labels: key in labels
    raise bad_request(f"unable to parse requirement: {term!r}")


def label_selector(selector: str | None) -> Predicate:
    terms = [_label_term(t) for t in _split(selector or "")]

    def matches(obj: Mapping[str, Any]) -> bool:
        labels = objects.labels_of(obj)
        return all(term(labels) for term in terms)

    return matches


def field_value(obj: Mapping[str, Any], path: str) -> str:
    value: Any = obj
    for part in path.split("."):
        value = value.get(part) if isinstance(value, Mapping) else None
    return "" if value is None else str(value)


def field_selector(selector: str | None) -> Predicate:
    terms: list[tuple[str, bool, str]] = []
    for term in _split(selector or ""):
        match = _EQ.match(term)
        if not match:
            raise bad_request(f"invalid selector: {term!r}; use field=value or field!=value")
        path, op, value = match.groups()
        terms.append((path, op != "!=", value))

    def matches(obj: Mapping[str, Any]) -> bool:
        return all((field_value(obj, path) == value) == equal for path, equal, value in terms)

    return matches


def selector_from_match_labels(match_labels: Mapping[str, str] | None, expressions: Any = None) -> Predicate:
    """A LabelSelector object (matchLabels + matchExpressions) as a predicate on objects."""
    terms = [f"{k}={v}" for k, v in (match_labels or {}).items()]
    for expr in expressions or []:
        key, op, values = expr.get("key"), expr.get("operator"), expr.get("values") or []
        if op == "In":
            terms.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            terms.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            terms.append(str(key))
        elif op == "DoesNotExist":
            terms.append(f"!{key}")
    return label_selector(",".join(terms))
