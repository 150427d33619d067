"""The `kalab` command line: one module per command group."""
