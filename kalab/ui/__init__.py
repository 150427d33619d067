"""Widgets and plots for the runbook's notebooks: every widget takes plain data and works without clicks."""
