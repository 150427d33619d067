"""`kalab doctor`: can this machine run the lab and the runbook, and — given a kubeconfig — is the cluster healthy?"""

from __future__ import annotations

import argparse
import json

from kalab.model.errors import KalabError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "doctor",
        help="check this machine (tools, namespaces) and, with --kubeconfig or --name, a cluster's keepalived set-up",
        description=(
            "Checks what the lab and headless runs need on this machine, changing nothing. With --kubeconfig it "
            "(or --name, a running lab's) also runs every check of the troubleshooting catalog: the cluster's, each "
            "KeepalivedGroup's and each annotated LoadBalancer service's (or the one --service names). "
            "Exits 1 when anything is wrong."
        ),
    )
    parser.add_argument("--kubeconfig", metavar="FILE", help="also diagnose this cluster")
    parser.add_argument("--name", help="also diagnose this running lab (see `kalab lab list`)")
    parser.add_argument("--namespace", help="only services in this namespace (with --service: default demo)")
    parser.add_argument("--service", help="only this LoadBalancer service (default: every annotated one)")
    parser.add_argument("--timeout", type=float, default=8.0, help="seconds each check may take (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="print the findings as a JSON list (id, status, …)")
    parser.set_defaults(handler=handle)


_MARK = {"ok": "✅", "warn": "⚠️ ", "fail": "❌"}


def handle(args: argparse.Namespace) -> int:
    from kalab.lab.prerequisites import machine_checks

    problems = 0
    machine = machine_checks()
    if not args.json:
        print("This machine:")
    for check in machine:
        problems += not check.ok
        fix = f" — {check.fix}" if not check.ok and check.fix else ""
        if not args.json:
            print(f"  {'✅' if check.ok else '❌'} {check.name}: {check.detail}{fix}")
    kubeconfig = args.kubeconfig
    if args.name and not kubeconfig:
        from kalab.lab import control

        lab = control.status(args.name)
        if not lab.ready or lab.kubeconfig is None:
            raise KalabError(f"The lab {lab.name} is not running; start it with `kalab lab up --name {lab.name}`.")
        kubeconfig = str(lab.kubeconfig)
    found: list[dict[str, str]] = [
        {
            "id": f"machine/{c.name}",
            "status": "ok" if c.ok else "fail",
            "summary": c.detail,
            "evidence": c.detail,
            "fix": "" if c.ok else c.fix or "",
            "subject": "this machine",
        }
        for c in machine
    ]
    if kubeconfig:
        from kalab.cluster.connect import connect
        from kalab.cluster.diagnose.doctor import doctor

        cluster = connect(kubeconfig)
        verdicts = doctor(cluster, args.namespace, args.service, args.timeout)
        found = [v.to_dict() for v in verdicts]
        problems += sum(v.status == "fail" for v in verdicts)
        if not args.json:
            print(f"\nThe cluster at {cluster.server}:")
            for v in verdicts:
                fix = f" — fix: {v.fix}" if v.status != "ok" and v.fix else ""
                print(f"  {_MARK[v.status]} {v.id} {v.subject}: {v.summary}{fix}")
    if args.json:
        print(json.dumps(found, indent=2))
    else:
        print(f"\n{'all checks ok' if not problems else f'{problems} problem(s)'}")
    return 1 if problems else 0
