"""The lab's API server, as kubectl and the official client speak to it."""
