"""VRRP timing (RFC 3768 v2, RFC 5798 v3) and what each kind of failure should cost a client.

The formulas are the RFCs'; the per-failure expectations follow what keepalived really does (FACTS §4–5):
a graceful stop sends priority 0, a killed keepalived leaves its VIP behind, a lost link is silent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum

from kalab.model.errors import KalabError

DEFAULT_ADVERT_INT = 1.0
DEFAULT_PRIORITY = 100


class FailureKind(StrEnum):
    GRACEFUL = "graceful"
    CRASH = "crash"
    LINK_DOWN = "link-down"


def parse_failure_kind(kind: str) -> FailureKind:
    try:
        return FailureKind(kind)
    except ValueError:
        choices = ", ".join(k.value for k in FailureKind)
        raise KalabError(f"{kind!r} is not a failure kind; use one of {choices}.") from None


def check_timing(advert_int: float, priority: int = DEFAULT_PRIORITY, version: int = 2) -> None:
    """Reject settings keepalived would refuse, with the fix in the sentence."""
    if version not in (2, 3):
        raise KalabError(f"VRRP version {version} does not exist; use 2 or 3.")
    if not 1 <= priority <= 254:
        raise KalabError(f"Priority {priority} is outside 1..254 (255 is reserved for the address owner).")
    if not math.isfinite(advert_int) or advert_int <= 0:
        raise KalabError(f"advert_int {advert_int} must be a positive number of seconds, e.g. 1.")
    if advert_int > (255 if version == 2 else 40.95):  # before the rounding below, which overflows on huge values
        raise KalabError(f"advert_int {advert_int} s is longer than VRRP v{version} can carry.")
    if version == 2 and advert_int != int(advert_int):
        raise KalabError(
            f"advert_int {advert_int} s needs VRRP version 3 (v2 counts whole seconds); set vrrp_version 3."
        )
    if version == 3 and round(advert_int * 100) != advert_int * 100:
        raise KalabError(f"advert_int {advert_int} s is finer than VRRP v3's centiseconds; round it to 0.01 s.")


def skew_time(advert_int: float, priority: int = DEFAULT_PRIORITY) -> float:
    """Skew_Time = (256 − Priority) × Advertisement_Interval / 256: lower priorities wait longer."""
    return (256 - priority) * advert_int / 256


def master_down_interval(advert_int: float, priority: int = DEFAULT_PRIORITY) -> float:
    """Master_Down_Interval = 3 × Advertisement_Interval + Skew_Time: how long a backup waits for silence."""
    return 3 * advert_int + skew_time(advert_int, priority)


@dataclass(frozen=True)
class Expectation:
    """What VRRP timing predicts for one failure; times in seconds, None where no formula applies.

    `takeover_s` is when the backup claims the VIP at the latest; a failure strikes at a random point between two
    adverts, so the backup's timer (restarted by each advert) may already have run for up to one interval:
    the claim comes between `earliest_takeover_s` and `takeover_s`. `outage_s` is what clients see.
    """

    kind: FailureKind
    advert_int: float
    priority: int
    version: int
    outage_s: float
    earliest_outage_s: float
    takeover_s: float
    earliest_takeover_s: float
    duplicate_vip_s: float | None
    explanation: str

    @property
    def outage_ms(self) -> float:
        return self.outage_s * 1000.0

    @property
    def takeover_ms(self) -> float:
        return self.takeover_s * 1000.0


def expected_outage(
    kind: FailureKind | str,
    advert_int: float = DEFAULT_ADVERT_INT,
    priority: int = DEFAULT_PRIORITY,
    version: int = 2,
    kube_proxy: bool = True,
) -> Expectation:
    """Expected client outage, backup takeover and duplicate-VIP window; `priority` is the backup's.

    `kube_proxy` says whether every node serves the VIP whether or not it holds it (kube-proxy's externalIP and
    load-balancer rules DNAT the VIP on every node, as on OpenShift); keepalived then only steers ARP, and a node
    that dropped the VIP but still receives traffic keeps serving it. Without it, only the holder answers.
    """
    kind = parse_failure_kind(kind) if isinstance(kind, str) else kind
    check_timing(advert_int, priority, version)
    skew = skew_time(advert_int, priority)
    down = master_down_interval(advert_int, priority)
    earliest_down = down - advert_int
    if kind is FailureKind.GRACEFUL:
        if kube_proxy:
            outage, why = (
                0.0,
                (
                    "Clients' ARP caches still point at the old node, whose kube-proxy rules keep serving the VIP, "
                    "so they should see almost no outage."
                ),
            )
        else:
            outage, why = skew, f"Nobody answers for the VIP until then ({skew * 1000:.0f} ms)."
        return Expectation(
            kind,
            advert_int,
            priority,
            version,
            outage,
            outage,
            skew,
            skew,
            0.0,
            f"The MASTER drops the VIP and sends priority 0; the backup claims it after Skew_Time "
            f"({skew * 1000:.0f} ms). {why}",
        )
    if kind is FailureKind.CRASH:
        return Expectation(
            kind,
            advert_int,
            priority,
            version,
            0.0,
            0.0,
            down,
            earliest_down,
            None,
            f"The killed keepalived leaves the VIP on its node, which keeps answering, so clients see almost no "
            f"outage; the backup claims the VIP {earliest_down * 1000:.0f}–{down * 1000:.0f} ms later "
            f"(Master_Down_Interval less the time since the last advert), and from then two nodes hold it "
            f"until something removes the stale copy.",
        )
    return Expectation(
        kind,
        advert_int,
        priority,
        version,
        down,
        earliest_down,
        down,
        earliest_down,
        0.0,
        f"The MASTER falls silent; the backup waits out Master_Down_Interval ({down * 1000:.0f} ms, less the "
        f"time since the last advert: {earliest_down * 1000:.0f}–{down * 1000:.0f} ms), then claims the VIP "
        f"and sends gratuitous ARPs.",
    )


def timing_from_verbatim(service_verbatim: Mapping[str, str], group_verbatim: Mapping[str, str]) -> tuple[float, int]:
    """(advert_int, VRRP version) a service's instance runs with: its verbatim keys over the group's defaults.

    The instance keyword is `version`, the group's (global_defs) one `vrrp_version`; keepalived defaults to 1 s, v2.
    """
    advert_int = float(service_verbatim.get("advert_int", DEFAULT_ADVERT_INT))
    version = int(service_verbatim.get("version", group_verbatim.get("vrrp_version", 2)))
    return advert_int, version
