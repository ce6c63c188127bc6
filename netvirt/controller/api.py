"""The controller's HTTP JSON API (loopback by default).  The CLI is its only client for now.

    GET  /v1/status   revision, per-hypervisor sync state, flow counts, errors
    POST /v1/config   {"source": YAML text, "filename": name} -> apply atomically
    POST /v1/plan     same body -> what would change, per hypervisor; changes nothing

A config is validated by the same loader as the CLI; a rejected one changes nothing and the
answer (422) carries every diagnostic.
"""
from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from netvirt.config import load_text
from netvirt.errors import ConfigError, ControllerError

log = logging.getLogger(__name__)
MAX_BODY = 64 << 20


class ApiServer:
    def __init__(self, service, addr: str):
        host, port = addr.rsplit(":", 1)
        self._handler = type("Handler", (_Handler,), {"service": service})
        try:
            self.httpd = ThreadingHTTPServer((host, int(port)), self._handler)
        except OSError as e:
            raise ControllerError(f"cannot listen for the API on {addr}: {e.strerror}; is another "
                                  f"controller running? (--api HOST:PORT)") from None
        self.httpd.daemon_threads = True
        self._thread = threading.Thread(target=self.httpd.serve_forever, name="api", daemon=True)

    @property
    def service(self):
        return self._handler.service

    @service.setter
    def service(self, value) -> None:
        self._handler.service = value

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class _Handler(BaseHTTPRequestHandler):
    service = None

    def log_message(self, fmt, *args):
        log.debug("api: " + fmt, *args)

    def _send(self, code: int, body: dict) -> None:
        data = json.dumps(body, indent=1, default=str).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        if self.path == "/v1/status":
            return self._send(200, self.service.status())
        self._send(404, {"error": f"no such endpoint {self.path}; try /v1/status"})

    def do_POST(self):
        if self.path not in ("/v1/config", "/v1/plan"):
            return self._send(404, {"error": f"no such endpoint {self.path}"})
        try:
            n = int(self.headers.get("Content-Length", "0"))
            if n > MAX_BODY:
                return self._send(413, {"error": f"body larger than {MAX_BODY} bytes"})
            body = json.loads(self.rfile.read(n))
            loaded = load_text(body["source"], body.get("filename", "<api>"))
        except ConfigError as e:
            return self._send(422, {"error": "invalid config; nothing was applied",
                                    "diagnostics": [vars(d) for d in e.diagnostics]})
        except (ValueError, KeyError, TypeError) as e:
            return self._send(400, {"error": f"bad request body: {e}; send "
                                             '{"source": YAML, "filename": NAME}'})
        try:
            self.service.check(loaded)
        except ControllerError as e:
            return self._send(409, {"error": str(e)})
        if self.path == "/v1/config":
            rev = self.service.apply(loaded)
            return self._send(200, {"revision": rev, "digest": loaded.revision})
        plans = self.service.plan(loaded)
        return self._send(200, {"hypervisors": {
            hv: {"per_table": p.per_table(), "add_groups": len(p.add_groups),
                 "delete_groups": len(p.delete_groups), "lines": p.lines(known)}
            for hv, (p, known) in plans.items()}})
