"""When a supervised program is restarted, and after how long: the kubelet's restart policies and its
CrashLoopBackOff, with shorter delays so a lab recovers in seconds.

Pure decisions on numbers; the supervisor's loop (supervisor.py) acts on them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final, Literal

RestartPolicy = Literal["Always", "OnFailure", "Never"]
POLICIES: Final = ("Always", "OnFailure", "Never")


@dataclass(frozen=True)
class Backoff:
    """Restart delays: `initial`, doubling per consecutive crash, at most `cap` (CrashLoopBackOff, but short).

    A run that lasted `reset_after` seconds or more counts as healthy and starts the doubling again.
    """

    initial: float = 0.1
    cap: float = 5.0
    reset_after: float = 10.0

    def delay(self, crashes: int) -> float:
        """The wait before restarting after the `crashes`-th consecutive crash (1-based)."""
        return float(min(self.cap, self.initial * 2.0 ** min(max(crashes, 1) - 1, 60)))

    def crashes_after(self, crashes: int, ran_for: float) -> int:
        """The count of consecutive crashes once a run that lasted `ran_for` seconds has ended."""
        return 1 if ran_for >= self.reset_after else crashes + 1


def wants_restart(policy: RestartPolicy, exit_code: int) -> bool:
    """Whether `policy` restarts a program that ended with `exit_code` (as a pod's restartPolicy does)."""
    return policy == "Always" or (policy == "OnFailure" and exit_code != 0)
