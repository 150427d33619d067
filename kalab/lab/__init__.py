"""The embedded lab: a small Kubernetes-compatible cluster on this machine whose load balancing is real."""
