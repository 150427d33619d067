"""The lab's background process: data plane, storage, controllers and the API server, until SIGTERM.

`kalab lab up` starts it as PID 1 of the lab's own namespace tree (see control.py and dataplane/tree.py), handing
it the API server's listening socket, already bound on the host's 127.0.0.1. Start order matters: the network and
the storage first, then what a fresh OpenShift cluster already holds (bootstrap, catalogs, admission), then the
controllers, and the API server last, so that a client who sees the server also sees Ready nodes. Stopping runs in
reverse; whatever it misses, the kernel ends with the tree.
"""

from __future__ import annotations

import argparse
import logging
import signal
import socket
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path

from kalab.lab.apiserver import openapi
from kalab.lab.apiserver.crds import CrdController
from kalab.lab.apiserver.resources import Registry
from kalab.lab.apiserver.server import RunningServer, serve
from kalab.lab.apiserver.store import Store
from kalab.lab.context import LabContext
from kalab.lab.control import write_info
from kalab.lab.controllers.base import Controller
from kalab.lab.controllers.bootstrap import bootstrap
from kalab.lab.controllers.endpoints import EndpointsController
from kalab.lab.controllers.keepalived_operator import KeepalivedOperator
from kalab.lab.controllers.kubelet import Kubelet
from kalab.lab.controllers.kubeproxy import KubeProxyController
from kalab.lab.controllers.olm import OlmController, seed_catalog
from kalab.lab.controllers.scc import install_scc_admission
from kalab.lab.controllers.serviceaccounts import ServiceAccountsController
from kalab.lab.controllers.services import ExternalIPController, install_service_admission
from kalab.lab.controllers.workloads import DaemonSetController, DeploymentController, ReplicaSetController, Scheduler
from kalab.lab.dataplane import tree
from kalab.lab.dataplane.naming import DEFAULT_PREFIX
from kalab.lab.dataplane.supervisor import Supervisor
from kalab.lab.dataplane.topology import Topology, TopologySpec, build
from kalab.model.clientsite import CLIENT_SITE_EXTENSION

_log = logging.getLogger("kalab.lab")


class Lab:
    """One running lab; `start()` brings it up, `stop()` takes all of it down again."""

    def __init__(self, state_dir: Path, name: str, listener: socket.socket | None = None) -> None:
        self.state_dir = state_dir
        self.name = name
        self.prefix = DEFAULT_PREFIX  # the tree is private, so every lab uses the same names inside it
        self.listener = listener
        self.topology: Topology | None = None
        self.supervisor: Supervisor | None = None
        self.controllers: list[Controller] = []
        self.server: RunningServer | None = None
        self.ctx: LabContext | None = None

    def start(self) -> RunningServer:
        started = time.monotonic()
        self.topology = build(TopologySpec.seed(self.prefix))
        self.supervisor = Supervisor(self.state_dir / "supervisor")
        ctx = self.ctx = LabContext(Store(Registry()), self.state_dir, self.topology, self.supervisor)
        bootstrap(ctx)
        seed_catalog(ctx)
        install_scc_admission(ctx)
        install_service_admission(ctx)
        kubelet = Kubelet(ctx)
        self.controllers = [
            CrdController(ctx),
            ServiceAccountsController(ctx),
            ExternalIPController(ctx),
            EndpointsController(ctx),
            KubeProxyController(ctx),
            OlmController(ctx, wait_for_available=True),
            KeepalivedOperator(ctx),
            DaemonSetController(ctx),
            ReplicaSetController(ctx),
            DeploymentController(ctx),
            Scheduler(ctx),
            kubelet,
        ]
        for controller in self.controllers:
            controller.start()
        # The kubeconfig says where this cluster's clients live (the bastion namespace), so the runbook probes
        # from there whichever way it was handed the kubeconfig; see kalab.cluster.sites.
        site = {CLIENT_SITE_EXTENSION: {"plugin": "lab", "name": self.name, "stateDir": str(self.state_dir)}}
        self.server = serve(
            ctx.store,
            kubelet,
            self.state_dir,
            crd_controller=False,
            kubeconfig_extensions=site,
            listener=self.listener,
        )
        _log.info("lab up in %.2f s at %s", time.monotonic() - started, self.server.url)
        # The OpenAPI documents take about half a second to build the first time (the client models they come from
        # are imported lazily); build them now, off the request path, as kube-apiserver has them ready at start.
        threading.Thread(target=openapi.documents_of, args=(ctx.store,), name="openapi-warm", daemon=True).start()
        return self.server

    def stop(self) -> None:
        """Reverse order: no new requests, no new reconciles, then the programs, then the network."""
        if self.server is not None:
            self.server.shutdown()
        for controller in reversed(self.controllers):
            # The kubelet also ends pods' processes, exec sessions and sandboxes, in a pod-aware order.
            if isinstance(controller, Kubelet):
                controller.close()
            else:
                controller.stop()
        if self.supervisor is not None:
            self.supervisor.close(grace=3.0)
        if self.topology is not None:
            self.topology.teardown()


SWITCH_INTERVAL = 0.0005  # seconds


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kalab.lab.daemon")
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--name", required=True)
    parser.add_argument("--listen-fd", type=int, required=True, help="a listening TCP socket on 127.0.0.1")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # The API server and the controllers share one interpreter (in a cluster they are separate processes): a
    # request thread waits for the GIL behind a busy controller for up to the switch interval at every step, 5 ms
    # by default. A shorter interval keeps requests near their idle latency while controllers work.
    sys.setswitchinterval(SWITCH_INTERVAL)
    if not tree.inside():
        parser.error("the lab daemon runs only inside a lab's namespace tree; start it with `kalab lab up`")
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    lab = Lab(args.state_dir, args.name, socket.socket(fileno=args.listen_fd))
    try:
        server = lab.start()
        write_info(
            args.state_dir,
            name=args.name,
            url=server.url,
            kubeconfig=str(server.kubeconfig),
            started_at=time.time(),
            ready=True,
        )
        stop.wait()
        _log.info("stopping")
    except Exception:
        _log.exception("the lab failed")
        return 1
    finally:
        lab.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
