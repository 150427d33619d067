"""Installing the keepalived operator through OLM (Namespace, OperatorGroup, Subscription) and waiting for its CSV."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from kubernetes import client, watch
from kubernetes.client.exceptions import ApiException

from kalab.cluster._common import Deadline, Progress, as_dict, fail, report
from kalab.cluster.connect import Cluster
from kalab.model import manifests, objects
from kalab.model.errors import KalabError

OLM_GROUP, OLM_VERSION = "operators.coreos.com", "v1alpha1"
WATCH_CHUNK = 2  # seconds per watch before the Subscription is checked again


def apply_olm_manifests(cluster: Cluster, namespace: str, progress: Progress = None, **kwargs: str) -> None:
    """Create the Namespace, OperatorGroup and Subscription unless they exist (like `oc apply`, never replacing)."""
    for obj in manifests.olm_install(namespace, **kwargs):
        kind, name = obj["kind"], objects.name_of(obj)
        try:
            if kind == "Namespace":
                cluster.core.create_namespace(_namespace(obj))
            elif kind == "OperatorGroup":
                groups = as_dict(
                    cluster.custom.list_namespaced_custom_object(OLM_GROUP, "v1", namespace, "operatorgroups")
                )
                if groups.get("items"):
                    report(progress, f"OperatorGroup {groups['items'][0]['metadata']['name']} already exists")
                    continue
                cluster.custom.create_namespaced_custom_object(OLM_GROUP, "v1", namespace, "operatorgroups", obj)
            else:
                cluster.custom.create_namespaced_custom_object(OLM_GROUP, OLM_VERSION, namespace, "subscriptions", obj)
            report(progress, f"created {kind} {name}")
        except ApiException as err:
            if err.status == 409:
                report(progress, f"{kind} {name} already exists")
                continue
            if err.status == 404 and kind != "Namespace":
                raise KalabError(
                    "The cluster does not serve OLM (operators.coreos.com); install the operator another way or "
                    "use an OpenShift cluster."
                ) from None
            raise fail(f"Creating {kind} {name}", err, "use a cluster-admin kubeconfig") from None


def _namespace(obj: dict[str, Any]) -> client.V1Namespace:
    ns = client.V1Namespace.from_dict(obj)
    assert ns is not None
    return ns


def _subscription(cluster: Cluster, namespace: str, name: str) -> dict[str, Any]:
    try:
        return as_dict(
            cluster.custom.get_namespaced_custom_object(OLM_GROUP, OLM_VERSION, namespace, "subscriptions", name)
        )
    except ApiException as err:
        raise fail(f"Reading Subscription {namespace}/{name}", err, "run install_operator again") from None


def _resolution_failure(sub: dict[str, Any]) -> str | None:
    cond = objects.condition(sub, "ResolutionFailed")
    if cond is None or cond.get("status") != "True":
        return None
    return str(cond.get("message") or cond.get("reason") or "no message")


def install_operator(
    cluster: Cluster,
    namespace: str = "keepalived-operator",
    timeout: float = 300,
    progress: Progress = None,
    **olm_kwargs: str,
) -> str:
    """Apply manifests.olm_install() idempotently and wait for the operator's CSV to succeed; returns the CSV name."""
    package = olm_kwargs.get("package", "keepalived-operator")
    apply_olm_manifests(cluster, namespace, progress, **olm_kwargs)
    deadline = Deadline(timeout)
    seen: tuple[str | None, str | None] = (None, None)
    while True:
        sub = _subscription(cluster, namespace, package)
        failure = _resolution_failure(sub)
        if failure is not None:
            raise KalabError(
                f'OLM cannot resolve Subscription {namespace}/{package}: "{failure.rstrip(".")}"; check the '
                "channel and catalog source (`oc get packagemanifests -n openshift-marketplace`)."
            )
        status = objects.status(sub)
        csv_name = status.get("installedCSV") or status.get("currentCSV")
        csvs, version = _csvs(cluster, namespace)
        csv = next((c for c in csvs if objects.name_of(c) == csv_name), None) if csv_name else None
        phase = objects.status(csv).get("phase")
        if (csv_name, phase) != seen:
            seen = (csv_name, phase)
            message = objects.status(csv).get("message", "")
            report(
                progress,
                f"CSV {csv_name}: {phase}" + (f" ({message})" if message else "")
                if csv_name
                else f"Subscription {package}: {status.get('state') or 'waiting for OLM'}",
            )
        if phase == "Succeeded" and csv_name:
            return str(csv_name)
        if deadline.expired():
            where = f"CSV {csv_name} is {phase or 'not created'}" if csv_name else "OLM has not picked a CSV yet"
            raise KalabError(
                f"The operator did not install within {timeout:g} s ({where}); look at "
                f"`oc get csv,subscription,installplan -n {namespace}`, and raise the timeout if it still progresses."
            )
        _watch_once(
            cluster.custom.list_namespaced_custom_object,
            (OLM_GROUP, OLM_VERSION, namespace, "clusterserviceversions"),
            version,
            min(WATCH_CHUNK, deadline.left()),
        )


def _csvs(cluster: Cluster, namespace: str) -> tuple[list[dict[str, Any]], str | None]:
    try:
        found = as_dict(
            cluster.custom.list_namespaced_custom_object(OLM_GROUP, OLM_VERSION, namespace, "clusterserviceversions")
        )
    except ApiException as err:
        raise fail("Listing ClusterServiceVersions", err, "check OLM is installed and you may read CSVs") from None
    return list(found.get("items") or []), objects.meta(found).get("resourceVersion")


def _watch_once(lister: Callable[..., Any], args: tuple[str, ...], version: str | None, seconds: float) -> None:
    """Block until the first change after `version` or `seconds` pass (a watch, not a sleep)."""
    if seconds <= 0:
        return
    w = watch.Watch()  # type: ignore[no-untyped-call]
    try:
        chunk = max(1, int(seconds + 0.999))
        for _ in w.stream(lister, *args, resource_version=version, timeout_seconds=chunk):  # type: ignore[no-untyped-call]
            break
    except ApiException as err:
        if err.status != 410:  # resource version too old: just list again
            raise fail("Watching the install", err, "run install_operator again") from None
    finally:
        w.stop()  # type: ignore[no-untyped-call]
