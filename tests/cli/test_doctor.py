"""`kalab doctor` on this machine: every prerequisite named, a missing one failing with its fix."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import needs_root_tools
from kalabcli import run_kalab as kalab

pytestmark = needs_root_tools("keepalived", "iptables-restore", "iptables-save", "ip", "curl")


def test_a_ready_machine_passes_every_check() -> None:
    result = kalab("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in ("root", "keepalived", "iptables-restore", "iptables-save", "ip", "curl", "network namespaces",
                 "lab client site installed", "Jupyter kernel python3"):  # fmt: skip
        assert f"✅ {name}: " in result.stdout, name
    assert "keepalived: /usr/sbin/keepalived (version 2." in result.stdout
    assert result.stdout.rstrip().endswith("all checks ok")


def test_a_missing_tool_is_named_with_its_fix(tmp_path: Path) -> None:
    # A PATH that has every tool but keepalived.
    for tool in ("iptables-restore", "iptables-save", "ip", "curl"):
        found = shutil.which(tool)
        assert found
        (tmp_path / tool).symlink_to(found)
    env = {**os.environ, "PATH": str(tmp_path)}
    result = subprocess.run(
        [sys.executable, "-m", "kalab", "doctor"], capture_output=True, text=True, env=env, timeout=120
    )
    assert result.returncode == 1
    assert "❌ keepalived: missing: the VRRP daemon the lab's keepalived pods run — apt-get install " in result.stdout
    assert "✅ curl: " in result.stdout and result.stdout.rstrip().endswith("1 problem(s)")
