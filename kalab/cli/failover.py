"""`kalab failover`: break the VIP's MASTER on purpose and measure what clients saw."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from kalab.cli.labtools import add_lab_option, in_private_tree
from kalab.cli.output import atomic_path, check_out_dir
from kalab.model.vrrp import FailureKind
from kalab.model.wording import shorten

if TYPE_CHECKING:
    from kalab.cluster.failover import Experiment


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "failover",
        help="time VIP failovers (graceful, crash, link-down) against VRRP's formulas",
        description=(
            "Probes the demo's VIP from the bastion at 200 requests/s, injects the failure on the MASTER, and "
            "reports the outage, the takeover, and how long two nodes held the VIP. With `kalab lab up` running "
            "and the demo deployed it uses the lab's VIP (where the kubelet restarts keepalived by itself); "
            "otherwise it builds a throwaway copy of the seed's data plane (two keepalived nodes, two demo pods, "
            "one VIP) and removes it afterwards."
        ),
    )
    parser.add_argument("--kind", required=True, choices=[k.value for k in FailureKind], help="what to break")
    parser.add_argument("--advert-int", type=float, default=1.0, metavar="S", help="VRRP advert interval (1)")
    parser.add_argument("--vrrp-version", type=int, default=2, choices=(2, 3), help="3 allows sub-second adverts")
    parser.add_argument("--trials", type=int, default=1, metavar="N", help="independent failures (1..50)")
    parser.add_argument("--rate", type=float, default=200.0, metavar="HZ", help="probe rate (default 200)")
    parser.add_argument("--out", metavar="DIR", help="also write each trial's probe timeline and VIP events as CSV")
    parser.add_argument("--json", action="store_true", help="print one JSON object per trial, as a list")
    parser.add_argument("--scenario", action="store_true", help="use a throwaway data plane even if a lab is up")
    add_lab_option(parser)
    parser.add_argument(
        "--kubeconfig",
        metavar="FILE",
        help="fail over a cluster's service instead: its clients are where the kubeconfig says (this machine for a "
        "real cluster, which allows only --kind graceful: the MASTER's keepalived pod is deleted)",
    )
    parser.add_argument("--namespace", default="demo", help="with --kubeconfig: the service's namespace (demo)")
    parser.add_argument("--service", default="demo", help="with --kubeconfig: the LoadBalancer service (demo)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from kalab.cluster import failover
    from kalab.lab import control, scenario
    from kalab.model.probes import check_limits

    spec = scenario.ScenarioSpec(advert_int=args.advert_int, vrrp_version=args.vrrp_version)  # validates timing
    check_limits(1.0, args.rate, failover.PROBE_TIMEOUT)
    if not 1 <= args.trials <= 50:
        from kalab.model.errors import KalabError

        raise KalabError(f"--trials {args.trials} is out of range; run between 1 and 50 trials.")
    if args.out:
        check_out_dir(args.out)  # before the trials: a bad path must not throw their results away

    def progress(result: failover.TrialResult) -> None:
        print(result.line(), file=sys.stderr, flush=True)

    if args.kubeconfig:
        from kalab.cluster.connect import connect
        from kalab.cluster.sites import site_for

        site = site_for(connect(args.kubeconfig))
        target = site.failover_target(args.namespace, args.service)
        if args.kind in target.failure_kinds:  # otherwise run_experiment says why not, in one sentence
            print(f"Failing over {target.vip} with clients on {site.where} …", file=sys.stderr, flush=True)
        experiment = failover.run_experiment(target, args.kind, args.trials, args.rate, progress)
        return report(experiment, args)
    from kalab.lab.dataplane import tree

    info = None if args.scenario or tree.inside() else control.status(args.name)
    if info is not None and info.ready:
        from kalab.lab.running import RunningLab

        target = RunningLab(info)
        print(f"Using the running lab's demo VIP {target.vip} …", file=sys.stderr, flush=True)
        experiment = failover.run_experiment(target, args.kind, args.trials, args.rate, progress)
    else:
        status = in_private_tree(args)  # the throwaway data plane lives (and dies) in a namespace tree of its own
        if status is not None:
            return status
        print("No lab is running: building the demo data plane (about 5 s) …", file=sys.stderr, flush=True)
        with scenario.start(spec) as scn:
            experiment = failover.run_experiment(scn, args.kind, args.trials, args.rate, progress)
    return report(experiment, args)


def report(experiment: Experiment, args: argparse.Namespace) -> int:
    if args.json:
        print(json.dumps([r.to_dict() for r in experiment.results], indent=2))
        return _write_csvs(experiment, args)
    table = experiment.frame()[
        [
            "trial",
            "old_master",
            "new_master",
            "outage_ms",
            "lost",
            "expected_ms",
            "takeover_ms",
            "expected_takeover_ms",
            "duplicate_vip_ms",
        ]
    ]
    print(table.to_string(index=False))
    print()
    print(experiment.expectation.explanation)
    for result in experiment.results:
        print(f"trial {result.trial}: {result.verdict}")
    return _write_csvs(experiment, args)


def _write_csvs(experiment: Experiment, args: argparse.Namespace) -> int:
    """The CSVs go last, after the results are printed, so a failing disk cannot hide what the trials measured."""
    if not args.out:
        return 0
    out = Path(args.out).expanduser()
    try:
        for result, timeline, events in zip(
            experiment.results, experiment.timelines, experiment.vip_events, strict=True
        ):
            with atomic_path(out / f"{args.kind}-trial{result.trial}-probes.csv") as temp:
                timeline.to_csv(temp, index=False)
            with atomic_path(out / f"{args.kind}-trial{result.trial}-vip.csv") as temp:
                events.to_csv(temp, index=False)
    except OSError as err:
        from kalab.model.errors import KalabError

        raise KalabError(
            f"The CSVs could not be written to {shorten(out)} ({err.strerror or type(err).__name__}); "
            "the results printed above are complete."
        ) from None
    return 0
