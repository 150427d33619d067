"""`kalab probe`: send HTTP requests at a steady rate from the bastion and record who answered."""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from collections.abc import Iterator
from pathlib import Path

from kalab.cli.labtools import add_lab_option, in_private_tree, running_lab_clients
from kalab.cli.output import atomic_path, check_out_file
from kalab.model.clientsite import ClientPlace
from kalab.model.errors import KalabError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "probe",
        help="probe a URL from the lab's bastion at a steady rate and record every request",
        description=(
            "Requests go out from inside a lab's bastion namespace (the trainee's machine), never from this "
            "host. Use --scenario to probe a throwaway copy of the seed's demo when no lab is running."
        ),
    )
    parser.add_argument("url", nargs="?", help="http://IP[:PORT]/PATH (default with --scenario: the demo's VIP)")
    parser.add_argument("--for", dest="duration", type=float, required=True, metavar="SECONDS", help="how long")
    parser.add_argument("--rate", type=float, default=200.0, metavar="HZ", help="requests per second (default 200)")
    parser.add_argument("--timeout", type=float, default=1.0, metavar="S", help="per request (default 1 s)")
    parser.add_argument("--out", metavar="CSV", help="write one row per request to this CSV file")
    parser.add_argument("--scenario", action="store_true", help="build the demo data plane for the probe")
    add_lab_option(parser)
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.set_defaults(handler=handle)


@contextlib.contextmanager
def _bastion(args: argparse.Namespace) -> Iterator[tuple[ClientPlace, str]]:
    """(where the clients are, URL): the running lab's bastion, or a throwaway scenario's for the probe."""
    if args.scenario:
        from kalab.lab import scenario

        print("Building the demo data plane (about 5 s) …", file=sys.stderr, flush=True)
        with scenario.start() as scn:
            yield scn.clients, args.url or scn.url
        return
    if not args.url:
        raise KalabError("Give the URL to probe, e.g. http://172.21.6.50/, or use --scenario for the demo's VIP.")
    clients = running_lab_clients(args.name)
    if clients is None:
        raise KalabError(
            "No lab is running, and probes of lab addresses only leave from its bastion; "
            "add --scenario to probe a throwaway demo data plane."
        )
    yield clients, args.url


def handle(args: argparse.Namespace) -> int:
    from kalab.cluster.probejob import probe_timeline
    from kalab.cluster.prober import parse_url
    from kalab.model.probes import check_limits

    check_limits(args.duration, args.rate, args.timeout)
    if args.out:
        check_out_file(args.out)  # before probing: a bad path must not throw the timeline away
    if args.url:
        parse_url(args.url, resolve=False)
    if args.scenario:
        status = in_private_tree(args)  # the throwaway data plane lives (and dies) in a namespace tree of its own
        if status is not None:
            return status
    with _bastion(args) as (clients, url):
        frame = probe_timeline(url, args.duration, args.rate, args.timeout, clients)
    if args.out:
        with atomic_path(Path(args.out).expanduser()) as temp:
            frame.to_csv(temp, index=False)
    summary = dict(frame.attrs.get("summary", {}))
    answered = frame[frame["ok"].astype(bool)]
    summary["backends"] = {str(k): int(v) for k, v in answered["backend"].value_counts().sort_index().items()}
    if args.json:
        print(json.dumps(summary, indent=2))
        return 0
    print(f"{url}: {summary.get('requests')} requests, {summary.get('ok')} ok, {summary.get('failed')} failed")
    print(
        f"rate {summary.get('achieved_rate_hz', 0):.1f}/s (asked {args.rate:g}), latency p50 "
        f"{summary.get('p50_ms') or 0:.1f} ms p99 {summary.get('p99_ms') or 0:.1f} ms, "
        f"worst send lag {summary.get('max_lag_ms', 0):.1f} ms"
    )
    for backend, count in summary["backends"].items():
        print(f"  {backend:<16} {count:>6}  {count / max(len(answered), 1):6.1%}")
    return 0
