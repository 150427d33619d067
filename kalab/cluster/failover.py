"""VIP failover experiments: probe the VIP from where clients live, break the MASTER, measure what clients saw.

Three kinds of failure, each true to what keepalived does (FACTS §4–5):
- graceful: SIGTERM keepalived; it drops the VIP and sends priority 0, the backup takes over after Skew_Time;
- crash: SIGKILL keepalived's whole process group; the VIP stays on the dead instance's node, which keeps
  answering, while the backup claims the VIP after Master_Down_Interval: for a while two nodes hold it;
- link-down: the MASTER's interface goes down, as if the node were lost; outage ≈ Master_Down_Interval.

A trial repairs what it broke before the next one starts, so trials are independent. What a target can break
depends on what it can reach: the lab owns its nodes' processes and links; through a kubeconfig alone a cluster
offers only the graceful kind (deleting the MASTER's keepalived pod); see `kalab.cluster.sites`.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from types import TracebackType
from typing import Any, Protocol

import pandas as pd

from kalab.cluster.probejob import start_probe
from kalab.model.clientsite import ClientPlace
from kalab.model.errors import KalabError
from kalab.model.failover import analyse_outage, duplicate_vip_ms, trials_frame
from kalab.model.vrrp import Expectation, FailureKind, expected_outage, parse_failure_kind

DEFAULT_RATE = 200.0
PROBE_TIMEOUT = 0.3  # a request not answered within this counts as lost; well under any VRRP timer
LEAD_IN = 1.0  # seconds of normal traffic before the failure, to show the steady state
CRASH_REPAIR_AFTER = 1.0  # the stale VIP is left this long after the takeover before keepalived comes back


class HolderWatch(Protocol):
    """Follows which nodes hold the VIP while a trial runs; `events()` is a (t, node, holds) change log."""

    def __enter__(self) -> HolderWatch: ...
    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...
    def holders(self) -> list[str]: ...
    def wait_for(self, predicate: Callable[[list[str]], bool], timeout: float, what: str) -> list[str]: ...
    def events(self) -> pd.DataFrame: ...


class FailoverTarget(Protocol):
    """What an experiment needs: a VIP, where its clients run, how to watch it, and what it can break."""

    @property
    def vip(self) -> str: ...
    @property
    def url(self) -> str: ...
    @property
    def clients(self) -> ClientPlace: ...  # where requests come from: this machine for a real cluster's VIP
    @property
    def advert_int(self) -> float: ...
    @property
    def vrrp_version(self) -> int: ...

    @property
    def failure_kinds(self) -> tuple[FailureKind, ...]: ...

    def watch_vip(self) -> HolderWatch: ...
    def wait_for_single_master(self, timeout: float | None = None) -> str: ...
    def stop_keepalived(self, node: str, sig: int) -> None: ...
    def start_keepalived(self, node: str) -> None: ...
    def keepalived_running(self, node: str) -> bool: ...
    def set_link(self, node: str, up: bool) -> None: ...


@dataclass(frozen=True)
class TrialResult:
    kind: str
    trial: int
    old_master: str
    new_master: str | None
    outage_ms: float
    lost: int
    failed_total: int
    requests: int
    expected_ms: float
    expected_min_ms: float
    takeover_ms: float | None
    expected_takeover_ms: float
    expected_min_takeover_ms: float
    duplicate_vip_ms: float
    advert_int: float
    vrrp_version: int
    injected_at: float
    verdict: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def line(self) -> str:
        """One progress line: who lost the VIP to whom, and what it cost."""
        return (
            f"{self.kind} trial {self.trial}: {self.old_master} → {self.new_master or 'nobody'}: outage "
            f"{self.outage_ms:.0f} ms, takeover {self.takeover_ms or 0:.0f} ms, "
            f"two holders {self.duplicate_vip_ms:.0f} ms"
        )


@dataclass
class Experiment:
    """All trials of one kind, with the raw timelines the plots need."""

    kind: FailureKind
    expectation: Expectation
    results: list[TrialResult] = field(default_factory=list)
    timelines: list[pd.DataFrame] = field(default_factory=list)  # probe rows per trial
    vip_events: list[pd.DataFrame] = field(default_factory=list)  # (t, node, holds) per trial

    def frame(self) -> pd.DataFrame:
        return trials_frame(r.to_dict() for r in self.results)


def _other_holder(old: str) -> Callable[[list[str]], bool]:
    return lambda holders: any(node != old for node in holders)


def _inject(target: FailoverTarget, kind: FailureKind, node: str) -> None:
    if kind is FailureKind.GRACEFUL:
        target.stop_keepalived(node, signal.SIGTERM)
    elif kind is FailureKind.CRASH:
        target.stop_keepalived(node, signal.SIGKILL)
    else:
        target.set_link(node, up=False)


def _repair(target: FailoverTarget, kind: FailureKind, node: str) -> None:
    if kind is FailureKind.LINK_DOWN:
        target.set_link(node, up=True)
    elif not target.keepalived_running(node):
        target.start_keepalived(node)


def _holder_events(events: pd.DataFrame, kind: FailureKind, old: str, injected_at: float) -> pd.DataFrame:
    """A VIP on a node whose link is down reaches no one: it does not count as a second holder."""
    if kind is not FailureKind.LINK_DOWN:
        return events
    kept = events[~((events["node"] == old) & (events["t"] >= injected_at))]
    gone = pd.DataFrame([{"t": injected_at, "node": old, "holds": False}])
    return pd.concat([kept, gone], ignore_index=True)


def _verdict(kind: FailureKind, expected: Expectation, outage_ms: float, takeover_ms: float | None, dup: float) -> str:
    took = "no backup took over" if takeover_ms is None else f"the backup claimed the VIP after {takeover_ms:.0f} ms"
    window = f"{expected.earliest_takeover_s * 1000:.0f}–{expected.takeover_ms:.0f} ms"
    if kind is FailureKind.GRACEFUL:
        return (
            f"Clients lost {outage_ms:.0f} ms; {took} (Skew_Time {expected.takeover_ms:.0f} ms). The old node's "
            f"kube-proxy kept serving the VIP until the new MASTER's gratuitous ARPs moved the traffic."
        )
    if kind is FailureKind.CRASH and dup >= 1.0:
        return (
            f"Clients lost {outage_ms:.0f} ms; {took} (VRRP: {window}) while the dead keepalived's node still held "
            f"it: two nodes held the VIP for {dup:.0f} ms, until keepalived came back and removed the stale copy."
        )
    if kind is FailureKind.CRASH:
        return (
            f"Clients lost {outage_ms:.0f} ms; {took} (VRRP: {window}). keepalived was restarted before the backup "
            f"took over and dropped the stale VIP as it started, so for a while no node held it; clients whose ARP "
            f"cache still named the old node were served there by kube-proxy meanwhile."
        )
    return f"Clients lost {outage_ms:.0f} ms; {took}; VRRP predicts {window} (Master_Down_Interval)."


def _afterwards(kind: FailureKind, later_failures: int) -> str:
    """Failures outside the main outage deserve a sentence: on a lost node they are endpoints, not VRRP."""
    if later_failures <= 0:
        return ""
    if kind is FailureKind.LINK_DOWN:
        return (
            f" Another {later_failures} requests failed after service resumed: kube-proxy still sends a share to "
            f"endpoints on the lost node until they are removed from the service."
        )
    return f" Another {later_failures} requests failed outside that outage."


@contextmanager
def _repaired(target: FailoverTarget, kind: FailureKind, node: str) -> Iterator[None]:
    try:
        yield
    finally:
        _repair(target, kind, node)


def run_trial(
    target: FailoverTarget, kind: FailureKind | str, trial: int = 1, rate: float = DEFAULT_RATE
) -> tuple[TrialResult, pd.DataFrame, pd.DataFrame]:
    """One failure on the current MASTER; returns the result, the probe timeline and the VIP holder events."""
    kind = parse_failure_kind(kind) if isinstance(kind, str) else kind
    expected = expected_outage(kind, target.advert_int, version=target.vrrp_version)
    takeover_limit = 2 * expected.takeover_s + 5.0
    old = target.wait_for_single_master()
    tail = max(1.5, expected.takeover_s * 0.5) + (CRASH_REPAIR_AFTER + 1.0 if kind is FailureKind.CRASH else 0.0)
    duration = LEAD_IN + expected.takeover_s + tail
    with target.watch_vip() as watcher:
        job = start_probe(target.url, duration, rate, PROBE_TIMEOUT, target.clients)
        try:
            started = job.wait_started()
            time.sleep(max(0.0, started + LEAD_IN - time.time()))  # keep the steady state in the timeline
            if watcher.holders() != [old]:
                # Measuring now would time a failover that already happened; say so instead of a wrong number.
                raise KalabError(
                    f"The VIP moved before the failure was injected ({', '.join(watcher.holders()) or 'no node'} "
                    f"held it, not only {old}); the cluster is not settled (a config change still rolling out?), "
                    "so wait until one MASTER holds it and run the experiment again."
                )
            injected_at = time.time()
            with _repaired(target, kind, old):
                _inject(target, kind, old)
                watcher.wait_for(_other_holder(old), takeover_limit, "a backup to take over the VIP")
                if kind is FailureKind.CRASH:
                    # Give the stale VIP a moment on screen, then bring keepalived back as the kubelet would;
                    # starting as BACKUP it removes the VIP it finds on its interface.
                    time.sleep(CRASH_REPAIR_AFTER)
                    _repair(target, kind, old)
                    watcher.wait_for(lambda h: old not in h, 15.0, f"{old} to drop its stale copy of the VIP")
                timeline = job.result()
        except BaseException:
            job.stop()
            raise
        events = watcher.events()
    # Back to one MASTER before anyone measures again.
    target.wait_for_single_master()

    outage = analyse_outage(timeline, injected_at)
    claims = events[(events["t"] >= injected_at) & events["holds"].astype(bool) & (events["node"] != old)]
    new_master = str(claims.iloc[0]["node"]) if not claims.empty else None
    takeover_ms = (float(claims.iloc[0]["t"]) - injected_at) * 1000.0 if not claims.empty else None
    end = float(timeline["t"].max()) if not timeline.empty else injected_at
    duplicate = duplicate_vip_ms(_holder_events(events, kind, old, injected_at), start=injected_at, end=end)
    result = TrialResult(
        kind=kind.value,
        trial=trial,
        old_master=old,
        new_master=new_master,
        outage_ms=round(outage.outage_ms, 1),
        lost=outage.lost,
        failed_total=outage.failed_total,
        requests=outage.requests,
        expected_ms=round(expected.outage_ms, 1),
        expected_min_ms=round(expected.earliest_outage_s * 1000.0, 1),
        takeover_ms=None if takeover_ms is None else round(takeover_ms, 1),
        expected_takeover_ms=round(expected.takeover_ms, 1),
        expected_min_takeover_ms=round(expected.earliest_takeover_s * 1000.0, 1),
        duplicate_vip_ms=round(duplicate, 1),
        advert_int=target.advert_int,
        vrrp_version=target.vrrp_version,
        injected_at=injected_at,
        verdict=_verdict(kind, expected, outage.outage_ms, takeover_ms, duplicate)
        + _afterwards(kind, outage.failed_total - outage.lost),
    )
    timeline = timeline.assign(trial=trial, since_failure=timeline["t"] - injected_at)
    return result, timeline, events.assign(trial=trial, since_failure=events["t"] - injected_at)


def runnable_kinds(target: FailoverTarget, kinds: Sequence[str]) -> tuple[list[FailureKind], list[str]]:
    """The requested kinds this target can inject, and a sentence for each one it cannot."""
    wanted = [parse_failure_kind(k) for k in kinds]
    able = [k for k in wanted if k in target.failure_kinds]
    skipped = [
        f"{k.value}: needs access to the nodes themselves, which only the lab's site has; skipped."
        for k in wanted
        if k not in target.failure_kinds
    ]
    return able, skipped


def print_trial(result: TrialResult) -> None:
    """A progress callback for run_experiment that prints each trial's line as it finishes."""
    print(result.line())


def run_experiment(
    target: FailoverTarget,
    kind: FailureKind | str,
    trials: int = 1,
    rate: float = DEFAULT_RATE,
    progress: Callable[[TrialResult], None] | None = None,
) -> Experiment:
    """`trials` independent failures of one kind (at most 50: every trial is several seconds of traffic)."""
    kind = parse_failure_kind(kind) if isinstance(kind, str) else kind
    if not 1 <= trials <= 50:
        raise KalabError(f"--trials {trials} is out of range; run between 1 and 50 trials.")
    if kind not in target.failure_kinds:
        offered = ", ".join(k.value for k in target.failure_kinds)
        raise KalabError(
            f"This cluster can only be failed over as: {offered}; a {kind.value} failure needs access to the nodes "
            "themselves (the lab has it), so run that experiment in the lab."
        )
    experiment = Experiment(kind, expected_outage(kind, target.advert_int, version=target.vrrp_version))
    for number in range(1, trials + 1):
        result, timeline, events = run_trial(target, kind, number, rate)
        experiment.results.append(result)
        experiment.timelines.append(timeline)
        experiment.vip_events.append(events)
        if progress is not None:
            progress(result)
    return experiment
