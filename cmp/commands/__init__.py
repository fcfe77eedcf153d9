"""What each `cmp` command does, one module per job; `cmp.cli` parses the command line and calls them.

`run` (`cmp run`: resolve, run the cells, baselines, manifest, report), `evaluate` (`cmp
eval`: an evaluate-only recipe of one encoder, run as `cmp run`), `dry_run` (`cmp run
--dry-run`: the plan and its time estimate), `report` (`cmp report`: rebuild reports from
finished runs), `report_folders` (which folder under reports/ a report goes to),
`plugin_listing` (`cmp plugins`).
"""

from __future__ import annotations

import sys


def echo(message: str) -> None:
    """A line on stderr: the notes and per-cell progress a command prints beside its output."""
    print(message, file=sys.stderr)
