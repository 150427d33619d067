"""What a known container image runs in the lab; unknown images are never executed."""
