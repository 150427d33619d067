import pytest

from kalab.model.errors import KalabError
from kalab.ui.widgets import CidrPlanner, InterfacePicker, NodePicker, interface_options

NODES = {"master-0": ["master", "worker"], "master-1": ["master", "worker"], "worker-0": ["worker"]}


def test_node_picker_defaults_to_every_node_and_round_trips() -> None:
    picker = NodePicker(NODES)
    assert picker.value == ["master-0", "master-1", "worker-0"]
    labels = [label for label, _ in picker.select.options]
    assert labels[0] == "master-0 (master, worker)"
    picker.value = ["master-1", "master-0"]
    assert picker.value == ["master-0", "master-1"]
    assert list(picker.select.value) == ["master-0", "master-1"]


def test_node_picker_initial_value_needs_no_click() -> None:
    picker = NodePicker(["b", "a"], value=["a"])
    assert picker.value == ["a"]
    picker.select.value = ("a", "b")  # what a click does
    assert picker.value == ["a", "b"]
    assert NodePicker(NODES).with_role("master") == ["master-0", "master-1"]


def test_node_picker_refuses_unknown_nodes() -> None:
    with pytest.raises(KalabError, match="master-9 is not a node of this cluster; choose from master-0"):
        NodePicker(NODES, value=["master-9"])
    with pytest.raises(KalabError, match="no nodes"):
        NodePicker({})


def test_cidr_planner_shows_the_plan_and_updates_on_change() -> None:
    planner = CidrPlanner()
    assert planner.value == "172.21.6.32/27"
    assert planner.allowed == ["172.21.6.32/27"]
    assert planner.plan.ok
    assert "32 addresses" in planner.output.value and "172.21.6.33" in planner.output.value
    assert "172.21.6.62" in planner.output.value and "✅" in planner.output.value

    planner.cidr_text.value = "10.254.3.0/24"  # what typing does
    assert planner.value == "10.254.3.0/24"
    assert not planner.plan.ok
    assert "overlaps the cluster network 10.254.0.0/16" in planner.output.value
    assert "❌" in planner.output.value
    with pytest.raises(KalabError, match="overlaps the cluster network"):
        planner.require_ok()

    planner.value = "172.21.6.64/28"
    assert planner.plan.size == 16 and planner.plan.ok
    assert "not inside the allowed ranges" in planner.output.value  # allowed still says the /27
    planner.allowed_text.value = "172.21.6.0/24,\n 10.0.0.0/8"
    assert planner.allowed == ["172.21.6.0/24", "10.0.0.0/8"]
    assert "not inside" not in planner.output.value and "✅" in planner.output.value

    planner.value = "172.21.6.300/27"
    assert planner.plan.network is None
    assert "is not a CIDR" in planner.output.value


def test_cidr_planner_checks_the_given_networks() -> None:
    planner = CidrPlanner("192.168.7.128/27", allowed=[], machine_network="192.168.7.0/24")
    assert planner.plan.ok and planner.allowed == []
    assert "overlaps the machine network" in planner.output.value
    assert "⚠️" in planner.output.value
    other = CidrPlanner("192.168.7.128/27", allowed=[], machine_network=None)
    assert other.plan.warnings == []


INTERFACES = {"master-0": ["lo", "eth0", "ens4"], "master-1": ["eth0", "lo"], "master-2": ["lo", "eth0"]}


def test_interface_picker_puts_common_interfaces_first_and_marks_them() -> None:
    options = interface_options(INTERFACES)
    assert [name for _, name in options] == ["eth0", "lo", "ens4"]
    assert options[0][0] == "★ eth0 (all 3 nodes)"
    assert options[2][0] == "ens4 (only master-0)"
    picker = InterfacePicker(INTERFACES)
    assert picker.value == "eth0"
    assert picker.note.value == ""


def test_interface_picker_warns_when_the_choice_is_missing_somewhere() -> None:
    picker = InterfacePicker(INTERFACES, value="ens4")
    assert picker.value == "ens4"
    assert picker.missing_on() == ["master-1", "master-2"]
    assert "missing on master-1, master-2" in picker.note.value
    picker.dropdown.value = "eth0"  # what a click does
    assert picker.note.value == ""
    with pytest.raises(KalabError, match="No node has an interface called 'wlan0'"):
        picker.value = "wlan0"
