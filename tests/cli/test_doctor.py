"""`kalab doctor` on this machine: every prerequisite named, a missing one failing with its fix."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kalab.cli.main import main
from kalab.lab.dataplane import tree
from tests.support.kalabcli import run_kalab as kalab
from tests.support.markers import needs_lab_tools

pytestmark = needs_lab_tools("keepalived", "iptables-restore", "iptables-save", "ip", "curl")


def test_a_ready_machine_passes_every_check() -> None:
    result = kalab("doctor")
    assert result.returncode == 0, result.stdout + result.stderr
    for name in (
        "private namespace trees",
        "keepalived",
        "iptables-restore",
        "iptables-save",
        "ip",
        "curl",
        "lab client site installed",
        "Jupyter kernel python3",
    ):
        assert f"✅ {name}: " in result.stdout, name
    assert "keepalived: /usr/sbin/keepalived (version 2." in result.stdout
    assert result.stdout.rstrip().endswith("all checks ok")


def test_a_missing_tool_is_named_with_its_fix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A PATH that has every tool but keepalived (and no sbin directories added behind it).
    for tool in ("iptables-restore", "iptables-save", "ip", "curl", "unshare", "nsenter", "setpriv"):
        found = shutil.which(tool, path=tree.with_sbin(os.environ.get("PATH", "")))  # found where the lab looks
        assert found
        (tmp_path / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(tmp_path))
    monkeypatch.setattr(tree, "SBIN", ())
    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "❌ keepalived: missing: the VRRP daemon the lab's keepalived pods run — apt-get install " in out
    assert "✅ curl: " in out and out.rstrip().endswith("1 problem(s)")
