"""`python -m cmp` is the `cmp` command."""

from cmp.cli import main

raise SystemExit(main())
