"""The runbook's step checks: pure functions from what a step returned to a Check, with a hint when it fails.

One module per runbook stage, named after what its checks judge; each function takes plain data (tables and values
the cluster verbs returned) and never talks to the cluster, so every verdict and hint is tested without one.
"""
