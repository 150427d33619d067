"""kalab.model: pure functions (CIDRs, VRRP, keepalived.conf, iptables, manifests), no root and no lab."""
