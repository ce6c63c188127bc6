"""The one wording of "that name is not defined here", so every check tells the operator the
same thing: what was named, where it was looked for, and what could have been named."""
from __future__ import annotations

from collections.abc import Iterable


def not_defined(kind: str, name: str, tenant: str, known: Iterable[str]) -> str:
    """``kind`` is singular ("network"); the list of known names says what to write instead."""
    kinds = kind[:-1] + "ies" if kind.endswith("y") else kind + "s"
    return (f"{kind} {name!r} is not defined in tenant {tenant!r}; known {kinds}: "
            f"{', '.join(sorted(known)) or 'none'}")
