"""kalab: a Jupyter runbook for the keepalived operator on OpenShift 4, with an embedded lab."""

__version__ = "0.1.0"
