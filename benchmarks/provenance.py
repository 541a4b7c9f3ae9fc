"""Which ehrdiff code produced a benchmark's numbers: the commit a results file names next to its command."""

from __future__ import annotations

import subprocess
from pathlib import Path


def code_version() -> str:
    """The short commit of the ehrdiff checkout the running Python imports (a PYTHONPATH checkout, else the
    installed one), '+' when its sources differ from that commit, '?' outside a git checkout."""
    import ehrdiff

    where = Path(ehrdiff.__file__).resolve().parent
    head = subprocess.run(["git", "-C", str(where), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    if head.returncode:
        return "?"
    dirty = subprocess.run(["git", "-C", str(where), "status", "--porcelain", "--", "."], capture_output=True,
                           text=True)
    return head.stdout.strip() + ("+" if dirty.stdout.strip() else "")
