"""What this machine needs to run the embedded lab and the runbook headless, checked without changing anything.

No root is needed: each lab runs in a namespace tree of its own (dataplane/tree.py), which an ordinary user may
create where the kernel allows unprivileged user namespaces (Debian does; Ubuntu 24.04 restricts them by AppArmor).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from importlib.metadata import entry_points

from kalab.lab.dataplane import tree
from kalab.model.clientsite import ENTRY_POINT_GROUP

TOOLS = {
    "keepalived": "the VRRP daemon the lab's keepalived pods run",
    "iptables-restore": "loads kube-proxy's rules into each node",
    "iptables-save": "reads them back for traces",
    "ip": "builds the lab's network namespaces and links (iproute2)",
    "curl": "what the seed's bastion uses to curl the VIP",
}
PACKAGES = "keepalived iptables iproute2 curl"


@dataclass(frozen=True)
class Check:
    name: str
    ok: bool
    detail: str
    fix: str = ""


def _version(argv: list[str]) -> str:
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return ""
    found = re.search(r"\d+\.\d+(?:\.\d+)?", done.stdout or done.stderr)
    return f"version {found[0]}" if found else ""


def machine_checks() -> list[Check]:
    """Python, namespace trees, the Debian tools, the lab's client-site plugin and a Jupyter kernel."""
    checks = [
        Check(
            "Python ≥ 3.11",
            sys.version_info >= (3, 11),
            sys.version.split()[0],
            "use Python 3.11 or newer (PYTHON=python3.11 make …)",
        ),
    ]
    problem = tree.userns_problem()
    who = "root" if os.geteuid() == 0 else f"uid {os.geteuid()}, no root needed"
    checks.append(
        Check(
            "private namespace trees",
            problem is None,
            f"user, mount, PID and network namespaces can be created ({who})" if problem is None else problem,
            "" if problem is None else "see the sentence before; until then only `sudo kalab lab up` works",
        )
    )
    search = tree.with_sbin(os.environ.get("PATH", ""))  # where the lab looks: an ordinary user's PATH lacks sbin
    for tool, why in TOOLS.items():
        path = shutil.which(tool, path=search)
        version = _version([tool, "--version"] if tool != "ip" else [tool, "-V"]) if path else ""
        detail = f"{path} ({version})" if version else path or f"missing: {why}"
        checks.append(Check(tool, path is not None, detail, f"apt-get install {PACKAGES} (make test does it)"))
    plugins = [ep.name for ep in entry_points(group=ENTRY_POINT_GROUP)]
    checks.append(
        Check(
            "lab client site installed",
            "lab" in plugins,
            f"entry points: {', '.join(plugins) or 'none'}",
            "install kalab in its environment (`pip install -e .`; make test does it)",
        )
    )
    try:
        from jupyter_client.kernelspec import KernelSpecManager

        kernels = sorted(KernelSpecManager().find_kernel_specs())
    except ImportError:
        kernels = []
    checks.append(
        Check(
            "Jupyter kernel python3",
            "python3" in kernels,
            f"kernels: {', '.join(kernels) or 'none'}",
            "install ipykernel in kalab's environment (make test does it)",
        )
    )
    return checks
