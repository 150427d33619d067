"""Pure logic shared by the runbook and the embedded lab: no I/O, no clocks, no processes."""
