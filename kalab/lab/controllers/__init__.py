"""Controllers that make the lab behave like OpenShift: OLM, SCC, services, the keepalived operator, workloads,
the kubelet and kube-proxy. Each watches the store and reconciles one key at a time."""
