"""The seed's objects as the model sees them, shared by the tests that need them."""

from __future__ import annotations

from kalab.model.kubeproxy import Endpoint, ServicePort


def demo_service_port(**changes: object) -> ServicePort:
    """The seed's demo service: test-0 on master-0, test-1 on master-2, VIP 172.21.6.50 (externalIP + LB)."""
    fields: dict[str, object] = {
        "namespace": "demo",
        "name": "demo",
        "port_name": "http",
        "port": 80,
        "target_port": 80,
        "cluster_ip": "172.30.203.237",
        "node_port": 31682,
        "external_ips": ["172.21.6.50"],
        "load_balancer_ips": ["172.21.6.50"],
        "endpoints": [Endpoint("10.254.0.5", 80, "master-0"), Endpoint("10.254.2.5", 80, "master-2")],
    }
    fields.update(changes)
    return ServicePort(**fields)  # type: ignore[arg-type]
