"""Many LoadBalancer services at once: `kubectl apply` of one List, and how soon every VIP is held by a node.

    python bench/services.py [--services 255]

Starts a lab (under a temporary KALAB_HOME), installs the operator as notebook 01 does (loadbalancer nodes, a
KeepalivedGroup, the privileged SCC), gives the cluster an auto-assign block large enough (notebook 02's patch),
then times the machine's kubectl applying `--services` annotated LoadBalancer services written as one `kind: List`
(client-side validation on, as kubectl has it by default), and the time from the start of that apply until every
service's EXTERNAL-IP is on some node's interface (read with `ip -o addr` inside each node). Writes
bench/results/services.json. Measures only; asserts nothing.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

from kalab.cluster import keepalived, network, nodes, olm, scc
from kalab.cluster.connect import Cluster, connect
from kalab.lab import control
from kalab.model.manifests import GROUP_ANNOTATION

ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "keepalived-operator"
GROUP = "keepalivedgroup-workers"
BLOCK = "172.21.6.0/23"  # 510 addresses: room for 255 services
NODES = ("master-0", "master-1", "master-2")
KUBECTL = shutil.which("kubectl", path=str(Path(sys.executable).parent)) or shutil.which("kubectl") or "kubectl"


def services_list(count: int) -> dict[str, Any]:
    """What `kubectl get svc -o yaml` writes: a List of annotated LoadBalancer services."""
    items = [
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {
                "name": f"lb-{index:03d}",
                "namespace": "default",
                "annotations": {GROUP_ANNOTATION: f"{NAMESPACE}/{GROUP}"},
            },
            "spec": {
                "type": "LoadBalancer",
                "selector": {"app": f"lb-{index:03d}"},
                "ports": [{"name": "http", "port": 80, "targetPort": 8080, "protocol": "TCP"}],
            },
        }
        for index in range(count)
    ]
    return {"apiVersion": "v1", "kind": "List", "metadata": {}, "items": items}


def install(cluster: Cluster) -> None:
    olm.install_operator(cluster, namespace=NAMESPACE, timeout=300)
    nodes.label_nodes(cluster, NODES)
    keepalived.apply_keepalived_group(cluster, namespace=NAMESPACE, name=GROUP, interface="kalab-eth0")
    scc.grant_privileged(cluster, NAMESPACE)
    network.patch_external_ip(cluster, BLOCK, BLOCK)


def external_ips(cluster: Cluster, count: int) -> set[str]:
    found = set()
    for svc in cluster.core.list_namespaced_service("default").items:
        if svc.metadata.name.startswith("lb-"):
            for ingress in (svc.status.load_balancer and svc.status.load_balancer.ingress) or []:
                found.add(ingress.ip)
    return found


def held_vips(info: control.LabInfo) -> set[str]:
    """Every address in the block that some node has on an interface, read inside the nodes."""
    block = ipaddress.ip_network(BLOCK)
    held = set()
    for node in NODES:
        out = subprocess.run(
            [sys.executable, "-m", "kalab", "lab", "exec", "--name", info.name, node, "--", "ip", "-o", "-4", "addr"],
            capture_output=True,
            text=True,
            timeout=30,
        ).stdout
        for line in out.splitlines():
            address = line.split()[3].split("/")[0]
            if ipaddress.ip_address(address) in block:
                held.add(address)
    return held


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--services", type=int, default=255)
    parser.add_argument("--validate", default="strict", help="kubectl's --validate (its default: strict)")
    parser.add_argument("--timeout", type=float, default=180.0, help="give up waiting for VIPs after this long")
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "services.json")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="kalab-bench-services-") as tmp:
        os.environ[control.HOME_ENV] = tmp
        info = control.up("bench-services")
        try:
            assert info.kubeconfig is not None
            cluster = connect(info.kubeconfig)
            install(cluster)
            manifest = Path(tmp) / "services.yaml"
            manifest.write_text(yaml.safe_dump(services_list(args.services)))
            env = {**os.environ, "KUBECONFIG": str(info.kubeconfig)}
            started = time.monotonic()
            command = [KUBECTL, "apply", f"--validate={args.validate}", "-f", str(manifest)]
            applied = subprocess.run(command, capture_output=True, text=True, env=env, timeout=600)
            apply_s = time.monotonic() - started
            if applied.returncode != 0:
                print(f"kubectl apply failed: {applied.stderr.strip()}")
                return 1
            assigned_s = held_s = None
            vips: set[str] = set()
            while time.monotonic() - started < args.timeout:
                if assigned_s is None:
                    vips = external_ips(cluster, args.services)
                    if len(vips) == args.services:
                        assigned_s = time.monotonic() - started
                if assigned_s is not None and vips <= held_vips(info):
                    held_s = time.monotonic() - started
                    break
                time.sleep(0.2)
        finally:
            control.down("bench-services")
    result = {
        "services": args.services,
        "kubectl": subprocess.run([KUBECTL, "version", "--client"], capture_output=True, text=True).stdout.strip(),
        "validate": args.validate,
        "apply_s": round(apply_s, 2),
        "all_external_ips_assigned_s": None if assigned_s is None else round(assigned_s, 2),
        "all_vips_held_s": None if held_s is None else round(held_s, 2),
    }
    print(f"kubectl apply of {args.services} services as one List (--validate={args.validate}): {result['apply_s']} s")
    print(f"every EXTERNAL-IP assigned after:                {result['all_external_ips_assigned_s']} s")
    print(f"every VIP held by a node after:                  {result['all_vips_held_s']} s")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if held_s is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
