"""The runbook's notebooks: their shape, a headless run, bad parameters, and a class through JupyterHub."""
