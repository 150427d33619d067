"""Built-in defaults, as kube-apiserver fills them in: what a client reads back after writing a bare object."""

from __future__ import annotations

from typing import Any

from kubernetes import client

from kalab.lab.apiserver.defaults import image_pull_policy
from kalab.lab.apiserver.server import RunningServer
from tests.lab.apiserver.api_kit import official_client


def pod_template(image: str = "quay.io/wangzheng422/php:demo.02") -> dict[str, Any]:
    return {
        "metadata": {"labels": {"app": "web"}},
        "spec": {"containers": [{"name": "web", "image": image, "ports": [{"containerPort": 80}],
                                 "readinessProbe": {"httpGet": {"port": 80}}}]},
    }  # fmt: skip


def test_daemon_set_defaults(server: RunningServer) -> None:
    body = {
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": pod_template()},
    }
    with official_client(server) as api:
        made = client.AppsV1Api(api).create_namespaced_daemon_set("demo", body)
        raw = api.sanitize_for_serialization(made)
    spec = raw["spec"]
    assert spec["updateStrategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": 1, "maxSurge": 0}}
    assert spec["revisionHistoryLimit"] == 10
    pod = spec["template"]["spec"]
    assert (pod["restartPolicy"], pod["dnsPolicy"], pod["terminationGracePeriodSeconds"]) == (
        "Always",
        "ClusterFirst",
        30,
    )
    assert (pod["schedulerName"], pod["securityContext"]) == ("default-scheduler", {})
    container = pod["containers"][0]
    assert container["terminationMessagePath"] == "/dev/termination-log"
    assert container["terminationMessagePolicy"] == "File"
    assert container["imagePullPolicy"] == "IfNotPresent"
    assert container["ports"] == [{"containerPort": 80, "protocol": "TCP"}]
    probe = container["readinessProbe"]
    assert probe["httpGet"] == {"port": 80, "path": "/", "scheme": "HTTP"}
    assert (probe["timeoutSeconds"], probe["periodSeconds"], probe["failureThreshold"]) == (1, 10, 3)


def test_deployment_defaults(server: RunningServer) -> None:
    body = {
        "metadata": {"name": "web"},
        "spec": {"selector": {"matchLabels": {"app": "web"}}, "template": pod_template("nginx")},
    }
    with official_client(server) as api:
        made = api.sanitize_for_serialization(client.AppsV1Api(api).create_namespaced_deployment("demo", body))
    spec = made["spec"]
    assert spec["replicas"] == 1
    assert spec["strategy"] == {"type": "RollingUpdate", "rollingUpdate": {"maxUnavailable": "25%", "maxSurge": "25%"}}
    assert (spec["revisionHistoryLimit"], spec["progressDeadlineSeconds"]) == (10, 600)
    assert spec["template"]["spec"]["containers"][0]["imagePullPolicy"] == "Always"  # untagged means :latest


def test_service_defaults(server: RunningServer) -> None:
    body = {
        "metadata": {"name": "web"},
        "spec": {"type": "LoadBalancer", "selector": {"app": "web"}, "ports": [{"port": 80}]},
    }
    with official_client(server) as api:
        made = api.sanitize_for_serialization(client.CoreV1Api(api).create_namespaced_service("demo", body))
    spec = made["spec"]
    assert spec["sessionAffinity"] == "None"
    assert (spec["ipFamilies"], spec["ipFamilyPolicy"]) == (["IPv4"], "SingleStack")
    assert (spec["internalTrafficPolicy"], spec["externalTrafficPolicy"]) == ("Cluster", "Cluster")
    assert spec["allocateLoadBalancerNodePorts"] is True
    assert spec["ports"] == [{"port": 80, "protocol": "TCP", "targetPort": 80}]


def test_defaults_never_overwrite_and_a_host_network_pod_gets_host_ports(server: RunningServer) -> None:
    body = {
        "metadata": {"name": "p"},
        "spec": {
            "hostNetwork": True,
            "restartPolicy": "Never",
            "containers": [
                {
                    "name": "c",
                    "image": "quay.io/x/y:latest",
                    "imagePullPolicy": "Never",
                    "ports": [{"containerPort": 9650}],
                }
            ],
        },
    }
    with official_client(server) as api:
        made = api.sanitize_for_serialization(client.CoreV1Api(api).create_namespaced_pod("demo", body))
    assert made["spec"]["restartPolicy"] == "Never"
    container = made["spec"]["containers"][0]
    assert container["imagePullPolicy"] == "Never"
    assert container["ports"] == [{"containerPort": 9650, "hostPort": 9650, "protocol": "TCP"}]
    assert made["spec"]["priority"] == 0 and made["spec"]["enableServiceLinks"] is True


def test_image_pull_policy_by_reference() -> None:
    assert image_pull_policy("nginx") == "Always"
    assert image_pull_policy("registry:5000/nginx") == "Always"
    assert image_pull_policy("registry:5000/nginx:1.25") == "IfNotPresent"
    assert image_pull_policy("quay.io/x/y:latest") == "Always"
    assert image_pull_policy("quay.io/x/y@sha256:abc") == "IfNotPresent"
