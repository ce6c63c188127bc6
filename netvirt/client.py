"""A small client for the controller API, used by the CLI."""
from __future__ import annotations

import json
import urllib.error
import urllib.request

from netvirt.config import LoadedConfig
from netvirt.errors import ConfigError, ControllerError, Diagnostic


class Client:
    def __init__(self, addr: str, timeout: float = 30.0):
        self.base = f"http://{addr}"
        self.timeout = timeout

    def _call(self, method: str, path: str, body: dict | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(self.base + path, data=data, method=method,
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return json.loads(r.read())
        except urllib.error.HTTPError as e:
            payload = json.loads(e.read() or b"{}")
            if e.code == 422:
                # the controller re-validated and refused: same diagnostics as a local check
                raise ConfigError([Diagnostic(**d) for d in payload.get("diagnostics", [])]) from None
            raise ControllerError(f"controller at {self.base} answered {e.code}: "
                                  f"{payload.get('error', '')}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise ControllerError(f"cannot reach the controller at {self.base}: {reason}; is "
                                  f"`netvirt controller` running? (--api HOST:PORT)") from None

    def status(self) -> dict:
        return self._call("GET", "/v1/status")

    def apply(self, loaded: LoadedConfig) -> dict:
        return self._call("POST", "/v1/config", {"source": loaded.source, "filename": loaded.filename})

    def plan(self, loaded: LoadedConfig) -> dict:
        return self._call("POST", "/v1/plan", {"source": loaded.source, "filename": loaded.filename})

