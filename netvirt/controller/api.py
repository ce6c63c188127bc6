"""The controller's HTTP JSON API.  The CLI is a client of it; so are scripts and Prometheus.

    GET  /v1/status        revision, per-hypervisor sync state, flow counts, errors;
                           ?wait_revision=N&timeout=S answers once in sync at revision N
                           (&healthy=1: and every configured port bound, with its flows)
    GET  /v1/topology      hypervisors, bridges, tunnels, tenants -> networks -> ports, live
    POST /v1/config        {"source": YAML, "filename": NAME, "data": DOC} -> apply atomically
                           (DOC: the document parsed from YAML, optional; the CLI sends it
                           so that the controller validates it without parsing the YAML)
    POST /v1/plan          same body -> what would change, per hypervisor; changes nothing
    POST /v1/trace         {"from": "T/P", "to_ip": IP, ...} -> the packet's walk
    GET  /v1/openapi.json  this, as OpenAPI 3
    GET  /metrics          Prometheus exposition

It listens on loopback by default.  Anywhere else it refuses to start without a token, and
then every request needs "Authorization: Bearer TOKEN".  A rejected config (422) changes
nothing and carries every diagnostic.
"""
from __future__ import annotations

import hmac
import ipaddress
import json
import logging
import threading
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from netvirt.config import load_data, load_text
from netvirt.controller.metrics import exposition
from netvirt.controller.openapi import SPEC
from netvirt.errors import ConfigError, ControllerError, NetvirtError, UsageError

log = logging.getLogger(__name__)
MAX_BODY = 64 << 20


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class ApiServer:
    def __init__(self, service, addr: str, token: str | None = None):
        host, port = addr.rsplit(":", 1)
        if not is_loopback(host) and not token:
            raise UsageError(f"the API on {addr} would be reachable off this host: give a "
                             f"token (--token-file FILE or NETVIRT_API_TOKEN), or listen on "
                             f"127.0.0.1")
        self._handler = type("Handler", (_Handler,), {"service": service, "token": token})
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
    token: str | None = None
    # The response goes out in two writes (headers, body): with Nagle's algorithm the second
    # waited for the client's delayed ACK, up to 40 ms per request.
    disable_nagle_algorithm = True

    def log_message(self, fmt, *args):
        log.debug("api: " + fmt, *args)

    def _send(self, code: int, body, content_type: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body, indent=1, default=str).encode()
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _authorized(self) -> bool:
        if not self.token:
            return True
        given = self.headers.get("Authorization", "")
        if hmac.compare_digest(given.encode(), f"Bearer {self.token}".encode()):
            return True
        self._send(401, {"error": "missing or wrong token: send Authorization: Bearer TOKEN"})
        return False

    def do_GET(self):
        self._guarded(self._get)

    def do_POST(self):
        self._guarded(self._post)

    def _guarded(self, handle) -> None:
        """Every request gets an answer: a netvirt error as itself, a bug as a 500 that says
        so (the traceback goes to the log), never a closed socket."""
        try:
            if self._authorized():
                handle()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client went away
        except NetvirtError as e:
            self._send(400 if isinstance(e, UsageError) else 500, {"error": str(e)})
        except Exception as e:
            log.exception("api: %s %s failed", self.command, self.path)
            self._send(500, {"error": f"internal error ({type(e).__name__}: {e}); this is a "
                                      f"netvirt bug, the controller log has the details"})

    def _get(self):
        url = urllib.parse.urlsplit(self.path)
        if url.path == "/v1/status":
            q = urllib.parse.parse_qs(url.query)
            if "wait_revision" in q:  # long poll: answer once in sync at that revision
                try:
                    rev = int(q["wait_revision"][0])
                    timeout = min(float(q.get("timeout", ["30"])[0]), 300.0)
                except ValueError:
                    return self._send(400, {"error": "wait_revision and timeout are numbers"})
                healthy = q.get("healthy", ["0"])[0] in ("1", "true")
                return self._send(200, self.service.wait_in_sync(rev, timeout, healthy))
            return self._send(200, self.service.status())
        if url.path == "/v1/topology":
            return self._send(200, self.service.topology())
        if url.path == "/v1/openapi.json":
            return self._send(200, SPEC)
        if url.path == "/metrics":
            return self._send(200, exposition(self.service), "text/plain; version=0.0.4")
        self._send(404, {"error": f"no such endpoint {url.path}; see /v1/openapi.json"})

    def _body(self) -> dict | None:
        try:
            n = int(self.headers.get("Content-Length", "0"))
            if n < 0:
                raise ValueError(n)
        except ValueError:
            self._send(400, {"error": "Content-Length must be a number of bytes"})
            return None
        if n > MAX_BODY:
            self._send(413, {"error": f"body larger than {MAX_BODY} bytes"})
            return None
        try:
            body = json.loads(self.rfile.read(n))
            if not isinstance(body, dict):
                raise ValueError("expected a JSON object")
            return body
        except ValueError as e:
            self._send(400, {"error": f"bad request body: {e}"})
            return None

    def _post(self):
        if self.path not in ("/v1/config", "/v1/plan", "/v1/trace"):
            return self._send(404, {"error": f"no such endpoint {self.path}; see /v1/openapi.json"})
        body = self._body()
        if body is None:
            return
        if self.path == "/v1/trace":
            try:
                return self._send(200, self.service.trace(body))
            except NetvirtError as e:
                return self._send(400, {"error": str(e)})
        try:
            source, filename = body["source"], body.get("filename", "<api>")
            if not isinstance(source, str):
                raise TypeError("source")
            current = self.service.snapshot()[1]
            loaded = (load_data(body["data"], source, filename, previous=current)
                      if "data" in body else load_text(source, filename))
        except ConfigError as e:
            return self._send(422, {"error": "invalid config; nothing was applied",
                                    "diagnostics": [vars(d) for d in e.diagnostics]})
        except UsageError as e:
            return self._send(400, {"error": str(e)})
        except (KeyError, TypeError) as e:
            return self._send(400, {"error": f"bad request body: missing or not text: {e}; "
                                             'send {"source": YAML, "filename": NAME}'})
        try:
            self.service.check(loaded)
        except ControllerError as e:
            return self._send(409, {"error": str(e)})
        if self.path == "/v1/config":
            rev = self.service.apply(loaded)
            return self._send(200, {"revision": rev, "digest": loaded.revision})
        plans = self.service.plan(loaded)
        _, current, _ = self.service.snapshot()
        old_at = current.location if current else None
        return self._send(200, {"hypervisors": {
            hv: {"per_table": p.per_table(), "add_groups": len(p.add_groups),
                 "delete_groups": len(p.delete_groups),
                 "lines": p.lines(known, new_at=loaded.location, old_at=old_at)}
            for hv, (p, known) in plans.items()}})
