"""The lab's controllers (kubelet, kube-proxy, OLM, the keepalived operator, …) against its API server."""
