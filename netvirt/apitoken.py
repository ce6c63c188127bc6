"""The API token that local clients share with the controller.

The API takes a bearer token on loopback too: any local user could otherwise change the
config.  Unless the operator gives one (--token-file, NETVIRT_API_TOKEN) or turns it off
(`netvirt controller --no-loopback-token`), the controller keeps one in a file only root
can read, TOKEN_FILE, made on first start and reused after; the CLI reads the same file.
So root on the controller's host needs no flag, and anyone else needs the token."""
from __future__ import annotations

import os
import secrets
from pathlib import Path

from netvirt.errors import UsageError

TOKEN_FILE = Path(os.environ.get("NETVIRT_API_TOKEN_FILE", "/run/netvirt/api-token"))


def read_token(path: Path = TOKEN_FILE) -> str | None:
    """The token in ``path``, or None where it is missing or not ours to read."""
    try:
        return path.read_text().strip() or None
    except OSError:
        return None


def ensure_token(path: Path = TOKEN_FILE) -> str:
    """The token in ``path``, made (readable by its owner only) if there is none yet."""
    token = read_token(path)
    if token:
        return token
    token = secrets.token_urlsafe(32)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another controller made it meanwhile: share its token
        return read_token(path) or token
    except OSError as e:
        raise UsageError(f"cannot write the API token to {path}: {e.strerror}; give "
                         f"--token-file FILE, or NETVIRT_API_TOKEN_FILE=PATH") from None
    with os.fdopen(fd, "w") as f:
        f.write(token + "\n")
    return token
