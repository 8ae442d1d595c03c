"""The code a run used: this package's version and, in a git checkout of it, the commit.

A run's ``summary.json`` holds its configuration; with ``code_version()`` beside it, a report that
reads runs back (the benchmarks resume that way) can say which code produced them, not only which
settings.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from . import __version__

__all__ = ["code_version", "git_commit", "NOT_CODE"]

ROOT = Path(__file__).resolve().parents[1]  # the checkout when installed editable (pip install -e .)


def _git(*args: str) -> str:
    return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()


NOT_CODE = ("docs", "*.md")  # what the benchmarks and reports write into the checkout; a change there is not a change
                             # of the code (the plots of ``python benchmarks/run.py``'s first sections had marked every
                             # run of its later ones "with uncommitted changes")


def git_commit() -> str:
    """The checked-out commit (short), with " (with uncommitted changes)" when tracked files other than documents
    (``NOT_CODE``) differ from it; ``VARDIU_COMMIT`` names it where the tree was copied without ``.git``; "unknown"
    outside a checkout of this project (an installed wheel: an enclosing repository that is not ours is not asked)."""
    if os.environ.get("VARDIU_COMMIT"):
        return os.environ["VARDIU_COMMIT"]
    try:
        if Path(_git("rev-parse", "--show-toplevel") or "/nonexistent").resolve() != ROOT:
            return "unknown"
        commit = _git("rev-parse", "--short", "HEAD") or "unknown"
        documents = (f":(exclude){p}" for p in NOT_CODE)
        changed = _git("status", "--porcelain", "--untracked-files=no", "--", ".", *documents)
        return commit + (" (with uncommitted changes)" if changed else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def code_version() -> dict[str, str]:
    """``{"version": ..., "commit": ...}``: what ``summary.json`` records as ``code``."""
    return {"version": __version__, "commit": git_commit()}
