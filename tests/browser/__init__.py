"""The runbook in JupyterLab, driven in Debian's Chromium by Playwright."""
