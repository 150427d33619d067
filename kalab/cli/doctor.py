"""`kalab doctor`: can this machine run the lab and the runbook, and — given a kubeconfig — is the cluster healthy?"""

from __future__ import annotations

import argparse

from kalab.model.errors import KalabError


def register(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = commands.add_parser(
        "doctor",
        help="check this machine (tools, namespaces) and, with --kubeconfig or --name, a cluster's keepalived set-up",
        description=(
            "Checks what the lab and headless runs need on this machine, changing nothing. With --kubeconfig it "
            "(or --name, a running lab's) also runs notebook 06's diagnoses on a service: its EXTERNAL-IP, the "
            "keepalived pods, where its VIP is. "
            "Exits 1 when anything is wrong."
        ),
    )
    parser.add_argument("--kubeconfig", metavar="FILE", help="also diagnose this cluster")
    parser.add_argument("--name", help="also diagnose this running lab (see `kalab lab list`)")
    parser.add_argument("--namespace", default="demo", help="the service's namespace (default: %(default)s)")
    parser.add_argument("--service", default="demo", help="the LoadBalancer service (default: %(default)s)")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from kalab.lab.prerequisites import machine_checks

    problems = 0
    print("This machine:")
    for check in machine_checks():
        problems += not check.ok
        fix = f" — {check.fix}" if not check.ok and check.fix else ""
        print(f"  {'✅' if check.ok else '❌'} {check.name}: {check.detail}{fix}")
    kubeconfig = args.kubeconfig
    if args.name and not kubeconfig:
        from kalab.lab import control

        lab = control.status(args.name)
        if not lab.ready or lab.kubeconfig is None:
            raise KalabError(f"The lab {lab.name} is not running; start it with `kalab lab up --name {lab.name}`.")
        kubeconfig = str(lab.kubeconfig)
    if kubeconfig:
        from kalab.cluster import diagnose
        from kalab.cluster.connect import connect

        cluster = connect(kubeconfig)
        print(f"\nThe cluster at {cluster.server}, service {args.namespace}/{args.service}:")
        for finding in diagnose.diagnose(cluster, args.namespace, args.service):
            ok = finding.status == "ok"
            problems += not ok
            todo = "" if ok else f" — {finding.what_to_do}"
            print(f"  {'✅' if ok else '❌'} {finding.symptom} · {finding.check}: {finding.evidence}{todo}")
    print(f"\n{'all checks ok' if not problems else f'{problems} problem(s)'}")
    return 1 if problems else 0
