"""Every notebook, Run All in JupyterLab in Chromium against one embedded lab, judged on the rendered page.

The notebooks run in order (each builds on the one before, as for an attendee), so run this module whole.
Screenshots of each executed notebook land in out/browser/ whatever the outcome.
"""

from __future__ import annotations

import signal

import pytest

from kalab.cluster import demo, keepalived, nodes
from kalab.cluster.connect import Cluster, connect
from kalab.lab import control
from tests.browser.jupyterlab import LAB, ROOT, LabServer
from tests.browser.notebook_page import FAIL, PASS, WIDGET_STATE, NotebookPage, Snapshot
from tests.support.markers import needs_lab_tools
from tests.support.waiting import wait_for

LB = "node-role.kubernetes.io/loadbalancer"

pytestmark = needs_lab_tools("keepalived", "iptables-restore", "ip", "curl", "chromium")

NOTEBOOKS = sorted(path.name for path in (ROOT / "notebooks").glob("*.ipynb"))
SCREENSHOTS = ROOT / "out" / "browser"
# The least each notebook draws today (node pickers, plots): a notebook that silently stops drawing them fails.
AT_LEAST = {
    "01-install-operator.ipynb": {"widgets": 1},
    "03-demo-deploy.ipynb": {"widgets": 1},
    "04-traffic-analysis.ipynb": {"images": 1},
    "05-metrics-and-failover.ipynb": {"images": 2},
}
BROKEN_WIDGET = ("Error displaying widget", "model not found", "Loading widget...")


def assert_widgets_are_real(shown: Snapshot, notebook: str) -> None:
    for output in shown.widget_outputs:
        assert output.widget and not any(b in output.text for b in BROKEN_WIDGET), (
            f"{notebook}: a widget did not render: {output.text.strip()[:200]!r}"
        )
    broken = [b for b in BROKEN_WIDGET if b in shown.text]
    assert not broken, f"{notebook} shows {broken}"


def assert_rendered_well(shown: Snapshot, notebook: str) -> None:
    """What an attendee must see after Run All: every cell ran, no traceback, checks passed, widgets and plots drawn."""
    assert not shown.tracebacks, f"{notebook} shows a traceback:\n{shown.tracebacks[0][-2000:]}"
    unrun = [i for i, c in enumerate(shown.cells) if not c.executed]
    assert not unrun, f"{notebook}: code cells {unrun} did not run (prompts {[c.prompt for c in shown.cells]})"
    assert not shown.failed_checks, f"{notebook} shows failed checks: {shown.failed_checks}"
    assert any(line.startswith(PASS) for line in shown.checks), f"{notebook} shows no ✅ check line"
    assert_widgets_are_real(shown, notebook)
    assert all(width > 0 for width in shown.images), f"{notebook}: an image did not load ({shown.images})"
    least = AT_LEAST.get(notebook, {})
    assert len(shown.widget_outputs) >= least.get("widgets", 0), f"{notebook} drew {len(shown.widget_outputs)} widgets"
    assert len(shown.images) >= least.get("images", 0), f"{notebook} drew {len(shown.images)} images"


def assert_widgets_survive_reopening(page: NotebookPage, lab_server: LabServer, shown: Snapshot) -> None:
    """Saved, its kernel gone, opened again: the widgets come back from the notebook, not "model not found"."""
    saved = page.save()
    assert WIDGET_STATE in saved["metadata"].get("widgets", {}), f"{page.notebook} was saved without its widgets"
    lab_server.shut_down_kernel(page.notebook)
    page.open(page.notebook)
    wanted = len(shown.widget_outputs)
    again = page.wait(f"{wanted} widgets again", lambda s: len(s.widget_outputs) == wanted and not s.rendering, 60)
    assert_widgets_are_real(again, page.notebook)


@pytest.mark.parametrize("notebook", NOTEBOOKS)
def test_run_all(notebook: str, notebook_page: NotebookPage, lab_server: LabServer) -> None:
    screenshot = SCREENSHOTS / notebook.replace(".ipynb", ".png")
    try:
        notebook_page.open(notebook)
        try:
            shown = notebook_page.run_all()
        except AssertionError:
            notebook_page.screenshot(screenshot)  # what the page showed when the run never finished
            raise
        notebook_page.screenshot(screenshot)
        assert_rendered_well(shown, notebook)
        if shown.widget_outputs:
            assert_widgets_survive_reopening(notebook_page, lab_server, shown)
    finally:
        lab_server.shut_down_kernel(notebook)  # one kernel at a time, as an attendee closing a notebook


def test_check_marks_are_drawn_as_emoji(notebook_page: NotebookPage) -> None:
    """✅ and ❌ come out in colour, not as the empty boxes a machine without an emoji font draws."""
    coloured = notebook_page.page.evaluate(
        """marks => marks.map(mark => {
          const canvas = document.createElement('canvas');
          canvas.width = canvas.height = 40;
          const ctx = canvas.getContext('2d');
          ctx.font = '32px sans-serif';
          ctx.fillStyle = 'black';
          ctx.fillText(mark, 2, 34);
          const px = ctx.getImageData(0, 0, 40, 40).data;
          let count = 0;
          for (let i = 0; i < px.length; i += 4) {
            if (px[i + 3] > 0 && Math.max(px[i], px[i + 1], px[i + 2]) - Math.min(px[i], px[i + 1], px[i + 2]) > 60) {
              count++;
            }
          }
          return count;
        })""",
        [PASS, FAIL],
    )
    assert all(n > 50 for n in coloured), f"coloured pixels of ✅, ❌: {coloured}; is fonts-noto-color-emoji installed?"


# --- an attendee who clicks something else ---------------------------------------------------------------------


def lab_cluster() -> Cluster:
    kubeconfig = control.status(LAB).kubeconfig
    assert kubeconfig is not None
    return connect(str(kubeconfig))


def loadbalancers(cluster: Cluster) -> list[str]:
    table = nodes.nodes(cluster)
    return sorted(n for n, labels in zip(table["name"], table["labels"], strict=True) if LB in labels)


def assert_no_traceback(shown: Snapshot, notebook: str) -> None:
    assert not shown.tracebacks, f"{notebook} shows a traceback:\n{shown.tracebacks[0][-2000:]}"


def ran_all(page: NotebookPage, notebook: str) -> Snapshot:
    page.open(notebook)
    page.clear_outputs()  # test_run_all saved it with its outputs (and its widgets)
    shown = page.run_all()
    assert_no_traceback(shown, notebook)
    assert not shown.failed_checks, shown.failed_checks
    return shown


def test_the_cluster_follows_the_loadbalancer_picker_and_an_empty_choice_is_refused(
    notebook_page: NotebookPage, lab_server: LabServer
) -> None:
    notebook = "01-install-operator.ipynb"
    cluster = lab_cluster()
    try:
        ran_all(notebook_page, notebook)
        notebook_page.pick(0, ["master-1"])  # master-2 deselected
        shown = notebook_page.run_from("change = nodes.set_label_on")
        assert_no_traceback(shown, notebook)
        assert not shown.failed_checks, shown.failed_checks
        assert "removed the label from master-2" in shown.text
        assert f"✅ nodes labelled — exactly the picked nodes carry {LB}: master-1" in shown.checks
        assert "✅ keepalived pods running — keepalived Running and Ready on master-1" in shown.checks
        assert loadbalancers(cluster) == ["master-1"]
        assert sorted(keepalived.keepalived_pods(cluster)["node"]) == ["master-1"]

        notebook_page.pick(0, [])  # nothing picked: refused with a sentence, and nothing changes
        shown = notebook_page.run_from("change = nodes.set_label_on")
        assert_no_traceback(shown, notebook)
        (refused,) = shown.failed_checks
        assert refused.startswith(f"❌ stopped — Pick at least one node for {LB}"), refused
        assert "Run All stopped at this step" in shown.text
        assert loadbalancers(cluster) == ["master-1"]

        notebook_page.pick(0, ["master-1", "master-2"])
        shown = notebook_page.run_from("change = nodes.set_label_on")
        assert "✅ keepalived pods running — keepalived Running and Ready on master-1, master-2" in shown.checks
        assert loadbalancers(cluster) == ["master-1", "master-2"]
    finally:
        lab_server.shut_down_kernel(notebook)
        nodes.set_label_on(cluster, ["master-1", "master-2"])  # the seed's choice for the tests after this one


def test_the_demo_pods_follow_their_picker(notebook_page: NotebookPage, lab_server: LabServer) -> None:
    notebook = "03-demo-deploy.ipynb"
    cluster = lab_cluster()
    try:
        ran_all(notebook_page, notebook)
        notebook_page.pick(0, ["master-0", "master-1"])
        shown = notebook_page.run_from("running = demo.deploy_demo(")
        assert_no_traceback(shown, notebook)
        assert not shown.failed_checks, shown.failed_checks
        assert "deleted Pod test-1 to move it from master-2 to master-1" in shown.text
        assert "✅ demo pods pinned — 2 pods Running on master-0, master-1" in shown.checks
        assert demo.pinned_nodes(cluster) == {"test-0": "master-0", "test-1": "master-1"}
    finally:
        lab_server.shut_down_kernel(notebook)
        demo.deploy_demo(cluster, timeout=60)  # back to the seed's master-0 and master-2


def test_a_bad_parameter_stops_run_all_with_one_line_and_its_hint(
    notebook_page: NotebookPage, lab_server: LabServer
) -> None:
    notebook = "02-externalip-cidr.ipynb"
    try:
        notebook_page.open(notebook)
        notebook_page.clear_outputs()
        notebook_page.append_to_cell("# Parameters:", 'auto_assign_cidr = "172.21.6.333/27"')
        shown = notebook_page.run_all()
        notebook_page.screenshot(SCREENSHOTS / "02-bad-parameter.png")
        assert_no_traceback(shown, notebook)
        # The plan's own ❌ line (the step that plans the block prints its errors), then the check's.
        *_, failed = shown.failed_checks
        assert failed.startswith('❌ auto-assign block — Fix the CIDR: "172.21.6.333/27"'), failed
        assert "likely cause: a typo in the auto_assign_cidr parameter" in failed
        unrun = [c for c in shown.cells if not c.executed]
        assert unrun, "Run All went on past the failed check"
    finally:
        lab_server.shut_down_kernel(notebook)


def test_make_lab_prints_its_url_and_stops_on_ctrl_c(notebook_page: NotebookPage, lab_server: LabServer) -> None:
    """Last, since it stops the server: Ctrl-C ends JupyterLab and its kernels without asking anything."""
    assert f"{lab_server.url}/lab?token=" in lab_server.log_text()
    notebook_page.open(NOTEBOOKS[0])  # a notebook left open with its kernel, as when an attendee just leaves
    assert lab_server.kernels(), "the notebook's kernel is not among the processes"
    # Only what Ctrl-C makes the server say is judged: kernels shut down by earlier tests may have logged
    # ipykernel's own "Event loop is closed" noise, which is not this test's business.
    before = len(lab_server.log_text())
    status = lab_server.interrupt(timeout=60)
    # make, like any program a Ctrl-C ends, dies of the SIGINT (a shell shows 130) once JupyterLab has stopped.
    assert status == -signal.SIGINT, f"`make lab` ended with {status} on Ctrl-C"
    wait_for(lambda: not lab_server.responds() and not lab_server.kernels(), 30, "JupyterLab and its kernels to end")
    log = lab_server.log_text()[before:]
    assert "Shut down this Jupyter server" not in log, "Ctrl-C asked for a confirmation"
    assert "Shutting down 1 kernel" in log, log[-2000:]
    assert "Traceback" not in log, log[-2000:]
