"""When this machine cannot make a lab's namespace tree, `kalab doctor` and `kalab lab up` say why in one sentence."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from kalab.cli.main import main
from kalab.lab import control
from kalab.lab.dataplane import tree
from kalab.model.errors import KalabError
from tests.support.kalabcli import one_sentence


@pytest.fixture
def refusing_unshare(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An `unshare` that fails the way the kernel refuses an unprivileged user namespace."""
    fake = tmp_path / "bin" / "unshare"
    fake.parent.mkdir()
    fake.write_text("#!/bin/sh\necho 'unshare: unshare failed: Operation not permitted' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake.parent}:/usr/bin:/bin")
    monkeypatch.setenv(control.HOME_ENV, str(tmp_path / "labs"))
    return tmp_path


def _sysctl(tmp_path: Path, name: str, value: str) -> Path:
    path = tmp_path / name
    path.write_text(value + "\n")
    return path


def test_an_apparmor_restriction_is_named_with_the_administrators_fix(
    refusing_unshare: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(tree, "APPARMOR_RESTRICTION", _sysctl(refusing_unshare, "restrict", "1"))
    with pytest.raises(KalabError) as err:
        control.up("t-refused")
    text = one_sentence(err)
    assert "AppArmor" in text and "sysctl -w kernel.apparmor_restrict_unprivileged_userns=0" in text
    assert not control.state_dir("t-refused").exists()  # nothing was started or written

    assert main(["doctor"]) == 1
    out = capsys.readouterr().out
    assert "❌ private namespace trees: AppArmor restricts unprivileged user namespaces" in out


def test_disabled_user_namespaces_are_named_with_the_fix(
    refusing_unshare: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tree, "APPARMOR_RESTRICTION", refusing_unshare / "absent")
    monkeypatch.setattr(tree, "MAX_USER_NAMESPACES", _sysctl(refusing_unshare, "max", "0"))
    problem = tree.userns_problem()
    assert problem is not None and "sysctl -w user.max_user_namespaces=" in problem


def test_another_refusal_quotes_the_kernel(refusing_unshare: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tree, "APPARMOR_RESTRICTION", refusing_unshare / "absent")
    monkeypatch.setattr(tree, "MAX_USER_NAMESPACES", _sysctl(refusing_unshare, "max", "96362"))
    problem = tree.userns_problem()
    assert problem is not None and "Operation not permitted" in problem and "administrator" in problem


def test_a_machine_that_allows_trees_has_no_problem() -> None:
    assert tree.userns_problem() is None


def test_sbin_is_searched_after_the_users_path() -> None:
    assert tree.with_sbin("/home/a/bin:/usr/bin").split(":")[:2] == ["/home/a/bin", "/usr/bin"]
    assert "/usr/sbin" in tree.with_sbin("/usr/bin").split(":")
    assert tree.with_sbin("/usr/sbin:/usr/bin").split(":").count("/usr/sbin") == 1


def test_a_missing_package_stops_lab_up_with_the_install_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    tools = tmp_path / "bin"
    tools.mkdir()
    for tool in ("iptables-restore", "iptables-save", "ip", "curl", "unshare", "nsenter", "setpriv"):
        found = shutil.which(tool, path=tree.with_sbin(os.environ.get("PATH", "")))
        assert found
        (tools / tool).symlink_to(found)
    monkeypatch.setenv("PATH", str(tools))
    monkeypatch.setattr(tree, "SBIN", ())
    monkeypatch.setenv(control.HOME_ENV, str(tmp_path / "labs"))
    with pytest.raises(KalabError) as err:
        control.up("t-no-keepalived")
    assert one_sentence(err) == (
        "The lab needs keepalived, which is missing here; an administrator installs it with "
        "`apt-get install keepalived`."
    )
    assert not control.state_dir("t-no-keepalived").exists()
