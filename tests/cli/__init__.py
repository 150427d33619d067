"""The `kalab` command as a user runs it: its verbs, outputs and one-sentence errors."""
