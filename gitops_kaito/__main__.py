"""`python -m gitops_kaito` runs the CLI."""

from gitops_kaito.cli import main

raise SystemExit(main())
