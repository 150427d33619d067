"""Running a command in a pod's container (`oc exec`) and reading its log (`oc logs`)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from kubernetes.client.exceptions import ApiException
from kubernetes.stream import stream
from websocket import WebSocketException

from kalab.cluster._common import api_message, fail
from kalab.cluster.connect import Cluster
from kalab.model.errors import KalabError


@dataclass(frozen=True)
class ExecResult:
    stdout: str
    stderr: str
    code: int

    @property
    def ok(self) -> bool:
        return self.code == 0


def _pod_missing(cluster: Cluster, namespace: str, pod: str) -> KalabError | None:
    try:
        cluster.core.read_namespaced_pod(pod, namespace)
    except ApiException as err:
        if err.status == 404:
            return KalabError(
                f'There is no pod "{pod}" in namespace "{namespace}"; list the pods with `oc get pods -n {namespace}`.'
            )
        return fail(f"Reading pod {namespace}/{pod}", err, "check your access to the namespace")
    return None


def exec_in_pod(
    cluster: Cluster,
    namespace: str,
    pod: str,
    command: Sequence[str],
    container: str | None = None,
    timeout: float = 30,
) -> ExecResult:
    """Run `command` (argv, no shell) in the pod and return its output and exit code (like `oc exec`)."""
    if not command:
        raise KalabError("Give the command to run in the pod as a list of words, e.g. ['ip', '-j', 'addr'].")
    missing = _pod_missing(cluster, namespace, pod)
    if missing is not None:
        raise missing
    kwargs: dict[str, object] = {"container": container} if container else {}
    try:
        resp = stream(
            cluster.core.connect_get_namespaced_pod_exec,
            pod,
            namespace,
            command=list(command),
            stderr=True,
            stdin=False,
            stdout=True,
            tty=False,
            _preload_content=False,
            **kwargs,
        )
    except ApiException as err:
        raise KalabError(
            f"Cannot exec into {namespace}/{pod} ({api_message(err).rstrip('.')}); check the pod is Running "
            "and the container name is right."
        ) from None
    except WebSocketException as err:
        raise KalabError(f"Cannot exec into {namespace}/{pod} ({err}); check the pod is Running.") from None
    try:
        resp.run_forever(timeout=timeout)
        if resp.is_open():
            raise KalabError(
                f"The command {' '.join(command)} in {namespace}/{pod} did not finish within {timeout:g} s; "
                "raise the timeout or run something shorter."
            )
        code = resp.returncode
        return ExecResult(str(resp.read_stdout() or ""), str(resp.read_stderr() or ""), -1 if code is None else code)
    finally:
        resp.close()


def pod_logs(cluster: Cluster, namespace: str, pod: str, container: str | None = None, tail: int | None = None) -> str:
    """The container's log (like `oc logs [--tail N] [-c container]`)."""
    missing = _pod_missing(cluster, namespace, pod)
    if missing is not None:
        raise missing
    try:
        return str(cluster.core.read_namespaced_pod_log(pod, namespace, container=container or None, tail_lines=tail))
    except ApiException as err:
        raise fail(
            f"Reading the log of {namespace}/{pod}", err, "check the pod has started and the container name"
        ) from None
