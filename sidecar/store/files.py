"""Private files and directories: transcripts hold secrets, so 0600 and 0700."""

from __future__ import annotations

import os
from pathlib import Path


def create_private_dirs(directory: Path) -> None:
    """Create `directory` and its missing parents with mode 0700."""
    missing = [parent for parent in (*reversed(directory.parents), directory) if not parent.exists()]
    for path in missing:
        path.mkdir(mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask


def create_private_file(path: Path) -> None:
    """Create missing directories 0700 and the file 0600."""
    create_private_dirs(path.parent)
    if not path.exists():
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        os.chmod(path, 0o600)
