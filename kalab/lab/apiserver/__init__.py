"""A Kubernetes-compatible API server for the lab: storage, REST, watch, patch, discovery, tables and auth."""
