"""`kalab render keepalived-conf`: the keepalived.conf the operator would put in a group's ConfigMap.

Prints the config and then the group's resulting status.routerIDs, so a trainee can see both what every
keepalived pod runs and which VRRP router IDs the group now holds.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

import yaml

from kalab.cli.inputs import load_documents
from kalab.model.errors import KalabError
from kalab.model.keepalived_conf import RenderedConfig, render_config
from kalab.model.wording import shorten

STATUS_SEPARATOR = "# --- status.routerIDs the operator records on the KeepalivedGroup ---"


def register(what: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = what.add_parser(
        "keepalived-conf",
        help="the operator's keepalived.conf for a KeepalivedGroup and its Services",
        description=(
            "Render the keepalived.conf the keepalived operator generates for a KeepalivedGroup, "
            "followed by the group's resulting status.routerIDs."
        ),
    )
    parser.add_argument("--group", required=True, metavar="G.yaml", help="file holding the KeepalivedGroup")
    parser.add_argument("--services", required=True, metavar="S.yaml", help="file holding the Services")
    parser.add_argument("--pods", metavar="P.yaml", help="file holding the group's keepalived pods")
    parser.add_argument("--password", help="value of the passwordAuth Secret key (only with passwordAuth)")
    parser.add_argument(
        "--previous-router-ids",
        metavar="JSON|FILE",
        help="earlier status.routerIDs as a JSON object or a file; default: the group's own status",
    )
    parser.add_argument("--json", action="store_true", help='print {"config": ..., "status": {"routerIDs": ...}}')
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    group = _single_group(args.group)
    services = _of_kind(args.services, "Service")
    pods = _of_kind(args.pods, "Pod") if args.pods else []
    previous = _previous_router_ids(args.previous_router_ids) if args.previous_router_ids else None
    rendered = render_config(group, services, pods, previous_router_ids=previous, password=args.password)
    for warning in rendered.warnings:
        sys.stderr.write(f"kalab: warning: {warning}\n")
    sys.stdout.write(_format(rendered, args.json))
    return 0


def _format(rendered: RenderedConfig, as_json: bool) -> str:
    status = {"status": {"routerIDs": rendered.router_ids}}
    if as_json:
        return json.dumps({"config": rendered.text, **status}, indent=2) + "\n"
    return f"{rendered.text}\n{STATUS_SEPARATOR}\n{yaml.safe_dump(status, sort_keys=False)}"


def _of_kind(path: str, kind: str) -> list[dict[str, Any]]:
    docs = load_documents(path)
    for doc in docs:
        if doc.get("kind") != kind:
            raise KalabError(
                f"{shorten(path)} holds a {shorten(doc.get('kind') or 'object without a kind', 40)} where a {kind} "
                "was expected; pass a file of those."
            )
    return docs


def _single_group(path: str) -> dict[str, Any]:
    groups = _of_kind(path, "KeepalivedGroup")
    if len(groups) != 1:
        raise KalabError(f"{shorten(path)} holds {len(groups)} KeepalivedGroups; pass a file with exactly one.")
    return groups[0]


def _previous_router_ids(value: str) -> dict[str, int]:
    """A JSON object given inline, or a JSON/YAML file holding one (a bare map or a whole `status:` block)."""
    source = "--previous-router-ids"
    if value.lstrip().startswith("{"):
        try:
            parsed: Any = json.loads(value)
        except json.JSONDecodeError as err:
            raise KalabError(
                f"{source} is not a valid JSON object ({err.msg}); write e.g. '{{\"demo/demo\": 1}}'."
            ) from None
    else:
        docs = load_documents(value) if os.path.lexists(value) else None  # False, not OSError, on a too-long name
        if docs is None:
            raise KalabError(f"{source} {shorten(value, 40)} is neither a JSON object nor an existing file.")
        parsed = docs[0] if len(docs) == 1 else None
        source = value
    return _router_id_map(parsed, source)


def _router_id_map(parsed: Any, source: str) -> dict[str, int]:
    if isinstance(parsed, dict) and isinstance(parsed.get("status"), dict):
        parsed = parsed["status"]
    if isinstance(parsed, dict) and isinstance(parsed.get("routerIDs"), dict):
        parsed = parsed["routerIDs"]
    if not isinstance(parsed, dict) or not all(_is_id(v) for v in parsed.values()):
        raise KalabError(f'{source} must map instance keys to router IDs, e.g. {{"demo/demo": 1}}.')
    return {str(key): int(val) for key, val in parsed.items()}


def _is_id(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)
