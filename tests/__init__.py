"""The test suite: one folder per package of kalab, golden data in fixtures/, shared helpers in support/."""
