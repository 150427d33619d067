import pytest

from kalab.model.errors import KalabError
from kalab.ui.checks import Check, CheckFailed, VerifyButton, raise_if_failed, show_checks, verify


def fails_with_kalab_error() -> None:
    raise KalabError("No keepalived pods run in keepalived-operator; label the nodes and retry.")


def fails_with_assertion() -> None:
    assert 1 + 1 == 3, "The VIP 172.21.6.50 answered from no node"


def test_verify_turns_a_return_into_a_pass_and_errors_into_failures() -> None:
    ok = verify("operator installed", lambda: "The CSV is Succeeded.")
    silent = verify("node labelled", lambda: None)
    kalab = verify("keepalived pods", fails_with_kalab_error)
    asserted = verify("VIP answers", fails_with_assertion)
    false = verify("false", lambda: False)
    assert ok == Check("operator installed", True, "The CSV is Succeeded.")
    assert silent.passed and silent.reason == ""
    assert not kalab.passed and kalab.reason.startswith("No keepalived pods run")
    assert not asserted.passed and asserted.reason == "The VIP 172.21.6.50 answered from no node"
    assert not false.passed


def test_other_exceptions_are_bugs_and_propagate() -> None:
    with pytest.raises(ZeroDivisionError):
        verify("bug", lambda: 1 / 0)


def test_show_checks_renders_marks_and_reasons() -> None:
    report = show_checks([Check("operator installed", True, "CSV Succeeded."), Check("VIP <answers>", False, "No.")])
    html = report._repr_html_()
    assert html.count("✅") == 1 and html.count("❌") == 1
    assert "CSV Succeeded." in html
    assert "VIP &lt;answers&gt;" in html  # names are escaped, not injected
    assert str(report).splitlines() == ["✅ operator installed: CSV Succeeded.", "❌ VIP <answers>: No."]
    assert not report.passed and [c.name for c in report.failed] == ["VIP <answers>"]


def test_raise_if_failed_raises_with_every_failed_reason() -> None:
    checks = [
        Check("operator installed", True, "ok"),
        verify("keepalived pods", fails_with_kalab_error),
        Check("VIP answers", False, "nobody answered"),
    ]
    with pytest.raises(CheckFailed) as caught:
        raise_if_failed(checks)
    message = str(caught.value)
    assert "keepalived pods failed: No keepalived pods run in keepalived-operator" in message
    assert "VIP answers failed: nobody answered." in message
    assert "operator installed" not in message
    assert isinstance(caught.value, KalabError)
    assert [c.name for c in caught.value.failed] == ["keepalived pods", "VIP answers"]
    raise_if_failed(Check("single", True))
    raise_if_failed(show_checks([Check("a", True)]))
    with pytest.raises(CheckFailed, match="single failed"):
        raise_if_failed(show_checks(Check("single", False, "why")))


def test_verify_button_runs_without_a_click_and_again_on_click() -> None:
    calls: list[int] = []

    def count() -> str:
        calls.append(1)
        assert len(calls) < 2, "second run fails"
        return "first run passes"

    button = VerifyButton({"counter": count})
    assert [c.passed for c in button.checks] == [True]
    assert "✅" in button.output.value and "first run passes" in button.output.value
    button.button.click()
    assert [c.passed for c in button.checks] == [False]
    assert "❌" in button.output.value and "second run fails" in button.output.value
