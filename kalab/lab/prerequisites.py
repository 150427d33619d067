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

# tool: (the Debian package holding it, what the lab needs it for)
TOOLS = {
    "keepalived": ("keepalived", "the VRRP daemon the lab's keepalived pods run"),
    "iptables-restore": ("iptables", "loads kube-proxy's rules into each node"),
    "iptables-save": ("iptables", "reads them back for traces"),
    "ip": ("iproute2", "builds the lab's network namespaces and links"),
    "curl": ("curl", "what the seed's bastion uses to curl the VIP"),
    "unshare": ("util-linux", "makes each lab's private namespace tree"),
    "nsenter": ("util-linux", "enters a lab's nodes from outside it (kalab lab exec, probes)"),
    "setpriv": ("util-linux", "ends a command in a lab together with whoever started it"),
}


def _search_path() -> str:
    return tree.with_sbin(os.environ.get("PATH", ""))  # where the lab looks: an ordinary user's PATH lacks sbin


def lab_problem() -> str | None:
    """Why a lab cannot start on this machine, as one sentence with the administrator's fix; None when it can."""
    missing = [tool for tool in TOOLS if shutil.which(tool, path=_search_path()) is None]
    if missing:
        packages = sorted({TOOLS[tool][0] for tool in missing})
        verb, them = ("is", "it") if len(missing) == 1 else ("are", "them")
        return (
            f"The lab needs {', '.join(missing)}, which {verb} missing here; an administrator installs {them} with "
            f"`apt-get install {' '.join(packages)}`."
        )
    return tree.userns_problem()


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
        )
    )
    for tool, (package, why) in TOOLS.items():
        path = shutil.which(tool, path=_search_path())
        version = _version([path, "--version"] if tool != "ip" else [path, "-V"]) if path else ""
        detail = f"{path} ({version})" if version else path or f"missing: {why}"
        checks.append(Check(tool, path is not None, detail, f"apt-get install {package} (make test does it)"))
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
