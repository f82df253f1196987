"""`python -m rlebench` runs the `bench` CLI."""

from rlebench.cli import main

raise SystemExit(main())
