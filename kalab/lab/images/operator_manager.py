"""What `quay.io/redhat-cop/keepalived-operator`'s `/manager` runs in the lab: a stand-in that says what it is.

The operator's reconciliation (KeepalivedGroup → ConfigMap, DaemonSet, router IDs) runs in the lab's control plane,
where it can see the store directly. The operator Deployment still gets a pod that starts, logs like
controller-runtime's manager (one JSON object per line), stays up and stops cleanly on SIGTERM, so `oc get pods`,
`oc logs` and the CSV's readiness look as they do on a cluster.

    python -m kalab.lab.images.operator_manager [any of the manager's flags]
"""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Sequence


def _log(logger: str, msg: str, **fields: object) -> None:
    line = {"level": "info", "ts": round(time.time(), 3), "logger": logger, "msg": msg, **fields}
    print(json.dumps(line), file=sys.stderr, flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    # Block the stop signals first so one arriving during start-up is not lost, then wait for it.
    stops = {signal.SIGTERM, signal.SIGINT}
    signal.pthread_sigmask(signal.SIG_BLOCK, stops)
    _log("setup", "starting manager", args=args)
    _log(
        "setup",
        "kalab lab: this is the keepalived operator's manager container; the operator's reconciliation runs in "
        "the lab's control plane, so this process only keeps the pod running",
    )
    _log("controller.keepalivedgroup", "Starting Controller", kind="KeepalivedGroup")
    received = signal.sigwait(stops)
    _log("setup", "Stopping and waiting for non leader election runnables", signal=signal.Signals(received).name)
    return 0


if __name__ == "__main__":
    sys.exit(main())
