"""Everything that moves packets: network namespaces, links, addresses, routes, iptables and processes."""
