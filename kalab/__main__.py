"""`python -m kalab` is the `kalab` command."""

from kalab.cli.main import main

raise SystemExit(main())
