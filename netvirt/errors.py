"""The one exception tree of netvirt.

    NetvirtError                 every error netvirt raises on purpose
    ├── ConfigError              the tenant YAML is unusable (exit code 2); carries Diagnostics
    ├── UsageError               a request that cannot be right as given (exit code 2)
    ├── ControllerError          the controller cannot be reached or refused a request
    └── LabError                 the emulated lab could not be built, used or removed

Every message says where the problem is and what to do about it.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NetvirtError", "ConfigError", "UsageError", "ControllerError", "LabError",
           "Diagnostic"]


class NetvirtError(Exception):
    """Root of netvirt's errors; the CLI turns it into exit code 1."""

    exit_code = 1


@dataclass(frozen=True)
class Diagnostic:
    """One problem in a config file: where it is, and what is wrong."""

    file: str
    line: int  # 1-based
    col: int  # 1-based
    path: str  # YAML path, e.g. tenants[0].ports[2].ips[0]
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}:{self.col}"
        return f"{where}: {self.path}: {self.message}" if self.path else f"{where}: {self.message}"


class ConfigError(NetvirtError):
    """The config is invalid; all problems found are in ``diagnostics``."""

    exit_code = 2

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = sorted(diagnostics, key=lambda d: (d.file, d.line, d.col, d.message))
        n = len(self.diagnostics)
        lines = [str(d) for d in self.diagnostics]
        lines.append(f"{n} error{'s' if n != 1 else ''}; nothing was applied")
        super().__init__("\n".join(lines))


class UsageError(NetvirtError):
    """A request names something that does not exist or is malformed."""

    exit_code = 2


class ControllerError(NetvirtError):
    """The controller API is unreachable or answered with an error."""


class LabError(NetvirtError):
    """A lab step failed; the message names the step and the object."""
