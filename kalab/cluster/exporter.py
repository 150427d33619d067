"""The keepalived exporter's metrics: through the API server's pod proxy, or from a direct URL."""

from __future__ import annotations

import time
import urllib.error
import urllib.request

import pandas as pd
from kubernetes.client.exceptions import ApiException

from kalab.cluster._common import api_message, poll
from kalab.cluster.connect import Cluster
from kalab.cluster.keepalived import DEFAULT_GROUP, DEFAULT_NAMESPACE, keepalived_pods
from kalab.model.errors import KalabError
from kalab.model.prometheus import parse_exposition

EXPORTER_PORT = 9650
STATE_COLUMNS = ["pod", "node", "instance", "state"]


def scrape(
    cluster: Cluster, pod: str, namespace: str = DEFAULT_NAMESPACE, port: int = EXPORTER_PORT, path: str = "metrics"
) -> pd.DataFrame:
    """One scrape of `pod`'s exporter through the API proxy, as a tidy frame plus pod, node and scraped_at."""
    try:
        found = cluster.core.read_namespaced_pod(pod, namespace)
    except ApiException as err:
        if err.status == 404:
            raise KalabError(
                f'There is no pod "{pod}" in namespace "{namespace}"; list the keepalived pods with keepalived_pods().'
            ) from None
        raise KalabError(f"Cannot read pod {namespace}/{pod} ({api_message(err)}); check your access.") from None
    node = found.spec.node_name if found.spec else None
    try:
        text = cluster.core.connect_get_namespaced_pod_proxy_with_path(f"{pod}:{port}", namespace, path)
    except ApiException as err:
        raise KalabError(
            f"The exporter of {namespace}/{pod} on port {port} did not answer through the API proxy "
            f"({api_message(err).rstrip('.')}); check the pod is Running and its prometheus-exporter container is up."
        ) from None
    return parse_exposition(str(text), pod=pod, node=node, scraped_at=pd.Timestamp.now(tz="UTC"))


def scrape_all(cluster: Cluster, namespace: str = DEFAULT_NAMESPACE, group: str = DEFAULT_GROUP) -> pd.DataFrame:
    """Scrape every running keepalived pod of the group; one frame."""
    pods = keepalived_pods(cluster, namespace, group)
    running = pods[pods["phase"] == "Running"]["pod"].tolist()
    if not running:
        raise KalabError(
            f"No running keepalived pods of {namespace}/{group} to scrape; label nodes and grant the SCC (notebook 01)."
        )
    return pd.concat([scrape(cluster, p, namespace) for p in running], ignore_index=True)


def states_from_frame(frame: pd.DataFrame) -> pd.DataFrame:
    """pod, node, instance, state from a scrape: the `state` label of each instance's VRRP counters."""
    if "state" not in frame.columns or "name" not in frame.columns:
        return pd.DataFrame(columns=STATE_COLUMNS)
    vrrp = frame[frame["metric"].str.startswith("keepalived_vrrp_") & frame["name"].notna()]
    states = (
        vrrp[["pod", "node", "name", "state"]].drop_duplicates(["pod", "name"]).rename(columns={"name": "instance"})
    )
    return states.sort_values(["instance", "node"], ignore_index=True)[STATE_COLUMNS]


def vrrp_states(cluster: Cluster, namespace: str = DEFAULT_NAMESPACE, group: str = DEFAULT_GROUP) -> pd.DataFrame:
    """Which node is MASTER for each VRRP instance: pod, node, instance, state."""
    return states_from_frame(scrape_all(cluster, namespace, group))


def sample(
    cluster: Cluster,
    seconds: float,
    interval: float = 1.0,
    namespace: str = DEFAULT_NAMESPACE,
    group: str = DEFAULT_GROUP,
) -> pd.DataFrame:
    """Scrape every keepalived pod each `interval` s for `seconds` (first scrape at once, last at `seconds`)."""
    if not 0 < interval <= seconds <= 600:
        raise KalabError(f"Sample for 0 < interval ({interval:g} s) ≤ seconds ({seconds:g} s) ≤ 600 s.")
    frames = []
    start = time.monotonic()
    for step in range(int(seconds / interval + 1e-9) + 1):
        time.sleep(max(0.0, start + step * interval - time.monotonic()))
        frames.append(scrape_all(cluster, namespace, group))
    return pd.concat(frames, ignore_index=True)


def wait_for_master(
    cluster: Cluster,
    instance: str = "demo/demo",
    timeout: float = 30.0,
    namespace: str = DEFAULT_NAMESPACE,
    group: str = DEFAULT_GROUP,
) -> str:
    """The node whose keepalived is MASTER for `instance` (namespace/service), once exactly one is."""

    def single_master() -> str | None:
        try:
            states = vrrp_states(cluster, namespace, group)
        except KalabError:
            return None  # pods starting: their exporters answer shortly
        masters = states[(states["instance"] == instance) & (states["state"] == "MASTER")]["node"].tolist()
        return str(masters[0]) if len(masters) == 1 else None

    def timed_out() -> KalabError:
        try:
            states = vrrp_states(cluster, namespace, group)
            mine = states[states["instance"] == instance]
            seen = ", ".join(f"{r.node} {r.state}" for r in mine.itertuples()) or f"no keepalived carries {instance}"
        except KalabError as err:
            seen = str(err).rstrip(".")
        return KalabError(
            f"No single keepalived MASTER for {instance} after {timeout:g} s ({seen}); see notebook 06 to find why."
        )

    return str(poll(single_master, timeout, timed_out, interval=0.2))


def scrape_url(url: str, timeout: float = 10) -> pd.DataFrame:
    """A direct scrape (e.g. http://<node>:9650/metrics from the notebook's host on a real cluster)."""
    if not url.startswith(("http://", "https://")):
        raise KalabError(f'"{url}" is not an http(s) URL; give one like http://192.168.7.14:9650/metrics.')
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            text = resp.read().decode("utf-8", errors="replace")
    except (urllib.error.URLError, OSError) as err:
        raise KalabError(
            f"Cannot scrape {url} ({err}); check the node is reachable from here and port 9650 is open, "
            "or scrape through the API proxy with scrape()."
        ) from None
    return parse_exposition(text, url=url, scraped_at=pd.Timestamp(time.time(), unit="s", tz="UTC"))
