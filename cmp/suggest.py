"""Closest-match suggestions for misspelt names ("did you mean ...?")."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def closest(word: str, choices: Iterable[str]) -> str | None:
    """The choice closest to `word`, or None when none is close."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return close[0] if close else None


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """Return ` (did you mean 'x'?)` for the closest choice, or '' when none is close."""
    close = closest(word, choices)
    return f" (did you mean '{close}'?)" if close else ""


def unknown_name(kind: str, word: str, choices: Iterable[str]) -> str:
    """The one-line message for an unknown name among known choices."""
    known = sorted(choices)
    listed = ", ".join(known) if known else "none registered"
    return f"unknown {kind} '{word}'{did_you_mean(word, known)}; choices: {listed}"
