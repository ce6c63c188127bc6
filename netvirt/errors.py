"""The one exception tree of netvirt.

    NetvirtError                 every error netvirt raises on purpose
    ├── ConfigError              the tenant YAML is unusable (exit code 2); carries Diagnostics
    ├── UsageError               a request that cannot be right as given (exit code 2)
    ├── ApiError                 the controller's API cannot be reached or answered an error
    ├── ControllerError          the controller refused a request, or cannot start
    ├── SwitchError              an OpenFlow switch did not answer or rejected a message
    ├── OvsdbError               an OVSDB server cannot be reached or refused a transaction
    ├── PipelineError            compiled state the pipeline refuses (a bug, never installed)
    ├── NodeError                the node agent cannot read or change its hypervisor
    └── LabError                 the emulated lab could not be built, used or removed

Anything else that escapes is a bug: the CLI and the API report it as one, without a
traceback for the user (the log has it).

Every message says where the problem is and what to do about it.
"""
from __future__ import annotations

from dataclasses import dataclass

__all__ = ["NetvirtError", "ConfigError", "UsageError", "ApiError", "ControllerError",
           "SwitchError", "OvsdbError", "PipelineError", "NodeError", "LabError", "Diagnostic"]


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


class ApiError(NetvirtError):
    """The controller API is unreachable or answered with an error (the client's side)."""


class ControllerError(NetvirtError):
    """The controller refused a request (it cannot do it as running) or cannot start."""


class IsolationError(ControllerError):
    """The compiled tables would let a port reach more than the intent allows: refused
    before any switch changed (netvirt.inspect.proof)."""


class SwitchError(NetvirtError):
    """An OpenFlow switch did not answer in time, hung up, or rejected a message."""


class OvsdbError(NetvirtError):
    """An OVSDB server is unreachable, or a transaction on it failed."""


class PipelineError(NetvirtError):
    """Compiled state that the pipeline's declarations refuse, or two flows that want one
    match with different actions: a compiler bug, reported instead of installed."""


class NodeError(NetvirtError):
    """The node agent could not read or change something on its hypervisor."""


class LabError(NetvirtError):
    """A lab step failed; the message names the step and the object."""
