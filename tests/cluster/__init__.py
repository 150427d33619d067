"""kalab.cluster: the runbook's calls, checks and doctor, against a real lab where they need one."""
