"""A small client for the controller API, used by the CLI."""
from __future__ import annotations

import json
import os
import urllib.error
import urllib.request

from netvirt.apitoken import read_token
from netvirt.config import LoadedConfig
from netvirt.errors import ConfigError, ApiError, Diagnostic, UsageError


class Client:
    def __init__(self, addr: str, timeout: float = 30.0, token: str | None = None):
        self.base = f"http://{addr}"
        self.timeout = timeout
        self.token = token  # None: the environment's, else the local controller's file

    def _call(self, method: str, path: str, body: dict | None = None, raw: bool = False):
        data = json.dumps(body).encode() if body is not None else None
        headers = {"Content-Type": "application/json"}
        # read at each call: a controller started after this client makes the file then
        token = self.token if self.token is not None else (
            os.environ.get("NETVIRT_API_TOKEN") or read_token())
        if token:
            headers["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as r:
                return r.read().decode() if raw else json.loads(r.read())
        except urllib.error.HTTPError as e:
            payload = json.loads(e.read() or b"{}")
            if e.code == 422:
                # the controller re-validated and refused: same diagnostics as a local check
                raise ConfigError([Diagnostic(**d) for d in payload.get("diagnostics", [])]) from None
            if e.code == 400:
                raise UsageError(payload.get("error", "bad request")) from None
            raise ApiError(f"controller at {self.base} answered {e.code}: "
                           f"{payload.get('error', '')}") from None
        except (urllib.error.URLError, ConnectionError, TimeoutError) as e:
            reason = getattr(e, "reason", e)
            raise ApiError(f"cannot reach the controller at {self.base}: {reason}; is "
                           f"`netvirt controller` running? (--api HOST:PORT)") from None

    def status(self) -> dict:
        return self._call("GET", "/v1/status")

    def wait_in_sync(self, revision: int, timeout: float, healthy: bool = False) -> dict:
        """Block (server side) until in sync at ``revision`` (and, with ``healthy``, every
        port bound), or ``timeout`` seconds."""
        # the API takes plain decimals up to 300 s (no 1e-05, no nan)
        return self._call("GET", f"/v1/status?wait_revision={revision}"
                                 f"&timeout={min(timeout, 300.0):.3f}&healthy={int(healthy)}")

    def metrics(self) -> str:
        """The Prometheus exposition text."""
        return self._call("GET", "/metrics", raw=True)

    def topology(self) -> dict:
        return self._call("GET", "/v1/topology")

    def trace(self, request: dict) -> dict:
        return self._call("POST", "/v1/trace", request)

    def apply(self, loaded: LoadedConfig) -> dict:
        return self._call("POST", "/v1/config", _config_body(loaded))

    def plan(self, loaded: LoadedConfig) -> dict:
        return self._call("POST", "/v1/plan", _config_body(loaded))


def _config_body(loaded: LoadedConfig) -> dict:
    # The parsed document, which the controller validates and applies without parsing YAML
    # again, and its source, which lends line numbers once seen to hold the same document.
    return {"data": loaded.data, "source": loaded.source, "filename": loaded.filename}

