"""Private files and directories: transcripts hold secrets, so 0600 and 0700. What the
store creates it creates itself: never through a symbolic link (O_NOFOLLOW, O_EXCL), and a
link to nothing at the store's own location is refused rather than followed."""

from __future__ import annotations

import errno
import os
from pathlib import Path

# Opening a file of the store's own (in its directory): a symbolic link there is refused
# (ELOOP) instead of written through.
NO_FOLLOW = getattr(os, "O_NOFOLLOW", 0)


def refuse_dangling_link(path: Path) -> None:
    """OSError if `path` is a symbolic link to nothing: creating the store there would
    create it wherever the link points."""
    if path.is_symlink() and not path.exists():
        target = os.readlink(path)
        raise OSError(
            errno.ELOOP, f"a symbolic link to {target}, which does not exist; not followed", str(path)
        )


def create_private_dirs(directory: Path) -> None:
    """Create `directory` and its missing parents with mode 0700."""
    refuse_dangling_link(directory)
    missing = [parent for parent in (*reversed(directory.parents), directory) if not parent.exists()]
    for path in missing:
        path.mkdir(mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is filtered by the umask


def create_private_file(path: Path) -> None:
    """Create missing directories 0700 and the file 0600."""
    refuse_dangling_link(path)
    create_private_dirs(path.parent)
    if not path.exists():
        try:
            os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY | NO_FOLLOW, 0o600))
        except FileExistsError:  # another process created it meanwhile: theirs is the file
            return
        os.chmod(path, 0o600)
