"""The controller's HTTP JSON API.  The CLI is a client of it; so are scripts and Prometheus.

    GET  /v1/status        revision, per-hypervisor sync state, flow counts, errors;
                           ?wait_revision=N&timeout=S answers once in sync at revision N
                           (&healthy=1: and every configured port bound, with its flows)
    GET  /v1/topology      hypervisors, bridges, tunnels, tenants -> networks -> ports, live
    POST /v1/config        {"source": YAML, "filename": NAME} -> validate, apply atomically
    POST /v1/plan          same body -> what would change, per hypervisor; changes nothing
    POST /v1/trace         {"from": "T/P", "to_ip": IP, ...} -> the packet's walk
    GET  /v1/openapi.json  this, as OpenAPI 3
    GET  /metrics          Prometheus exposition

It listens on loopback by default.  Anywhere else it refuses to start without a token, and
then every request needs "Authorization: Bearer TOKEN".  A rejected config (422) changes
nothing and carries every diagnostic.

uvicorn serves it (asyncio and h11: HTTP parsing, Content-Length, keep-alive are theirs).
A connection costs no thread: a client that opens a thousand and sends nothing, or leaves
a long poll, holds no worker.  Status is answered on the event loop (it reads a snapshot
under a lock that is only held to swap one in); the work that parses, compiles or walks
(config, plan, trace, topology, metrics) runs on a small pool of threads.
"""
from __future__ import annotations

import asyncio
import hmac
import ipaddress
import json
import logging
import re
import socket
import sys
import threading
import time
import urllib.parse
from concurrent.futures import ThreadPoolExecutor

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from netvirt.config import load_data, load_text
from netvirt.controller.metrics import exposition
from netvirt.controller.openapi import SPEC
from netvirt.controller.service import in_sync_at
from netvirt.errors import (ConfigError, ControllerError, IsolationError, NetvirtError,
                            UsageError)

log = logging.getLogger(__name__)
MAX_BODY = 16 << 20  # a 1000-port config is 160 KB
MAX_CONNECTIONS = 4096  # then 503; the controller raises its open-file limit to hold them
HEAD_TIMEOUT = 10.0  # seconds for a request's head to arrive on a connection
BODY_TIMEOUT = 30.0  # and for its body
KEEP_ALIVE = 5.0  # an idle connection between requests
MAX_WAIT = 300.0  # the longest long poll
WORKERS = 4
_UINT = re.compile(r"[0-9]{1,12}")
_SECONDS = re.compile(r"[0-9]{1,6}(\.[0-9]{1,6})?")
JSON = b"application/json"


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class Answer(Exception):
    """An answer other than 200, raised from anywhere in a handler."""

    def __init__(self, code: int, body: dict, close: bool = False):
        super().__init__(code)
        self.code, self.body, self.close = code, body, close


class _ClientGone(Exception):
    pass


class _Protocol(H11Protocol):
    """uvicorn's h11 protocol with a deadline for each request's head: uvicorn times out a
    connection that is idle between requests, not one that never finishes a request."""
    _head_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport) -> None:
        super().connection_made(transport)
        self._arm()

    def data_received(self, data: bytes) -> None:
        super().data_received(data)
        if self.cycle is not None and not self.cycle.response_complete:
            self._disarm()  # the head is in: the request runs under its own deadlines

    def on_response_complete(self) -> None:
        super().on_response_complete()
        self._arm()

    def connection_lost(self, exc) -> None:
        self._disarm()
        super().connection_lost(exc)

    def send_400_response(self, msg: str) -> None:
        # uvicorn calls this from its `except h11.RemoteProtocolError`: say what h11 found
        # (for example "bad Content-Length"), as JSON like every other answer
        error = sys.exc_info()[1]
        body = json.dumps({"error": f"malformed HTTP request: {error or msg}; nothing was "
                                    f"done"}).encode()
        for event in (h11.Response(status_code=400, headers=[
                (b"content-type", JSON), (b"connection", b"close")]),
                      h11.Data(data=body), h11.EndOfMessage()):
            self.transport.write(self.conn.send(event))
        self.transport.close()

    def _arm(self) -> None:
        self._disarm()
        self._head_timer = self.loop.call_later(HEAD_TIMEOUT, self._expire)

    def _disarm(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _expire(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()


class ApiServer:
    def __init__(self, service, addr: str, token: str | None = None):
        host, port = addr.rsplit(":", 1)
        if not is_loopback(host) and not token:
            raise UsageError(f"the API on {addr} would be reachable off this host: give a "
                             f"token (--token-file FILE or NETVIRT_API_TOKEN), or listen on "
                             f"127.0.0.1")
        self.app = Api(service, token, connections=lambda: len(self._server.server_state.connections))
        self._sock = _listen(host, int(port), addr)  # now: a second controller fails here
        self.address = self._sock.getsockname()[:2]
        config = uvicorn.Config(
            self.app, http=_Protocol, lifespan="off", log_config=None, access_log=False,
            limit_concurrency=MAX_CONNECTIONS, timeout_keep_alive=KEEP_ALIVE,
            h11_max_incomplete_event_size=64 << 10)
        self._server = uvicorn.Server(config)
        # uvicorn warns of every malformed request and refused connection: a hostile client
        # would write the log full; the answers say it, and errors still show
        logging.getLogger("uvicorn.error").setLevel(logging.ERROR)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._sock]},
                                        name="api", daemon=True)

    @property
    def service(self):
        return self.app.service

    @service.setter
    def service(self, value) -> None:
        self.app.attach(value)

    def start(self) -> None:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise ControllerError(f"the API server did not start on {self.address}")
            time.sleep(0.005)

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(10)
        self._sock.close()
        self.app.close()


def _listen(host: str, port: int, addr: str) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(1024)
    except OSError as e:
        sock.close()
        raise ControllerError(f"cannot listen for the API on {addr}: {e.strerror}; is another "
                              f"controller running? (--api HOST:PORT)") from None
    return sock


class Api:
    """The ASGI application."""

    def __init__(self, service, token: str | None, connections=lambda: 0):
        self.service = None
        self.token = token
        self._connections = connections
        self._long_polls = 0
        self._pool = ThreadPoolExecutor(WORKERS, thread_name_prefix="api")
        self._loop: asyncio.AbstractEventLoop | None = None
        self._changed: asyncio.Event | None = None  # set, and replaced, at every agent pass
        if service is not None:
            self.attach(service)

    def attach(self, service) -> None:
        self.service = service
        service.on_progress(self._progressed)

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)

    def stats(self) -> dict[str, int]:
        return {"connections": self._connections(), "long_polls": self._long_polls}

    # -- waking long polls from the agents' threads ----------------------------------------
    def _progressed(self) -> None:
        if self._loop is not None:
            try:
                self._loop.call_soon_threadsafe(self._bump)
            except RuntimeError:
                pass  # the loop is closed: the server stopped

    def _bump(self) -> None:
        if self._changed is not None:
            self._changed.set()
            self._changed = None

    def _next_change(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    # -- ASGI ------------------------------------------------------------------------------
    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return
        self._loop = asyncio.get_running_loop()
        close = False
        try:
            code, body, ctype = 200, await self._handle(scope, receive), JSON
        except Answer as a:
            code, body, ctype, close = a.code, a.body, JSON, a.close
        except _ClientGone:
            return
        except NetvirtError as e:
            code, body, ctype = 400 if isinstance(e, UsageError) else 500, {"error": str(e)}, JSON
        except Exception as e:  # a bug: say so, the traceback goes to the log
            log.exception("api: %s %s failed", scope["method"], scope["path"])
            code, body, ctype = 500, {"error": f"internal error ({type(e).__name__}: {e}); this "
                                               f"is a netvirt bug, the controller log has the "
                                               f"details"}, JSON
        if isinstance(body, tuple):  # (bytes, content type): text, not JSON
            body, ctype = body
        data = body if isinstance(body, bytes) else json.dumps(body, indent=1,
                                                              default=str).encode()
        headers = [(b"content-type", ctype), (b"content-length", str(len(data)).encode())]
        if close:  # the rest of the request was not read: do not read it to find the next
            headers.append((b"connection", b"close"))
        await send({"type": "http.response.start", "status": code, "headers": headers})
        await send({"type": "http.response.body", "body": data})

    async def _handle(self, scope, receive):
        self._authorize(scope)
        method, path = scope["method"], scope["path"]
        routes = {"/v1/status": "GET", "/v1/topology": "GET", "/v1/openapi.json": "GET",
                  "/metrics": "GET", "/v1/config": "POST", "/v1/plan": "POST",
                  "/v1/trace": "POST"}
        if path not in routes:
            raise Answer(404, {"error": f"no such endpoint {path}; see /v1/openapi.json"})
        if method != routes[path]:
            raise Answer(405, {"error": f"{path} takes {routes[path]}, not {method}"})
        if self.service is None:
            raise Answer(503, {"error": "the controller is starting; try again"})
        if path == "/v1/status":
            return await self._status(scope, receive)
        if path == "/v1/openapi.json":
            return SPEC
        if path == "/v1/topology":
            return await self._run(self.service.topology)
        if path == "/metrics":
            return (await self._run(exposition, self.service, self.stats()),
                    b"text/plain; version=0.0.4")
        body = await _json_body(scope, receive)
        if path == "/v1/trace":
            try:
                return await self._run(self.service.trace, body)
            except NetvirtError as e:  # a request the walk cannot make
                raise Answer(400, {"error": str(e)}) from None
        return await self._run(self._config, body, path == "/v1/config")

    def _authorize(self, scope) -> None:
        if not self.token:
            return
        given = _header(scope, b"authorization")
        scheme, _, credentials = given.partition(" ")
        # RFC 7235: the scheme is case-insensitive
        if scheme.lower() == "bearer" and hmac.compare_digest(credentials.strip().encode(),
                                                              self.token.encode()):
            return
        raise Answer(401, {"error": "missing or wrong token: send Authorization: Bearer TOKEN"})

    async def _run(self, fn, *args):
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    async def _status(self, scope, receive) -> dict:
        q = urllib.parse.parse_qs(scope["query_string"].decode("latin-1"))
        if "wait_revision" not in q:
            return self.service.status()
        revision = int(_query(q, "wait_revision", _UINT, "a revision number, e.g. 3"))
        timeout = float(_query(q, "timeout", _SECONDS, "seconds, e.g. 30", "30"))
        if timeout > MAX_WAIT:
            raise Answer(400, {"error": f"timeout is at most {MAX_WAIT:.0f} seconds"})
        healthy = _query(q, "healthy", re.compile(r"0|1|true|false"), "1 or 0", "0") in (
            "1", "true")
        return await self._wait(revision, timeout, healthy, receive)

    async def _wait(self, revision: int, timeout: float, healthy: bool, receive) -> dict:
        """The status once in sync at ``revision`` (or when ``timeout`` runs out); ends
        early, answering no one, when the client goes."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        gone = asyncio.ensure_future(_disconnect(receive))
        self._long_polls += 1
        try:
            while True:
                changed = self._next_change()  # before the read: no pass is missed
                st = self.service.status()
                left = deadline - loop.time()
                if in_sync_at(st, revision, healthy) or left <= 0:
                    return st
                waiter = asyncio.ensure_future(changed.wait())
                await asyncio.wait({waiter, gone}, timeout=min(left, 1.0),
                                   return_when=asyncio.FIRST_COMPLETED)
                waiter.cancel()
                if gone.done():
                    raise _ClientGone
        finally:
            self._long_polls -= 1
            gone.cancel()

    def _config(self, body: dict, apply: bool) -> dict:
        """Body: {"source": YAML, "filename": NAME}, and optionally "data": the document
        the client parsed from the source, which spares the controller parsing the YAML
        (~70 ms at 1000 ports); the document is what is applied either way."""
        source, filename = body.get("source"), body.get("filename", "<api>")
        if unknown := sorted(set(body) - {"source", "filename", "data"}):
            raise Answer(400, {"error": f"bad request body: unknown field(s) {unknown}; "
                                        'send {"source": YAML, "filename": NAME, "data": '
                                        'DOCUMENT}'})
        if not isinstance(source, str) or not isinstance(filename, str):
            raise Answer(400, {"error": 'bad request body: send {"source": YAML, "filename": '
                                        'NAME}, both text'})
        current = self.service.snapshot()[1]
        try:
            loaded = (load_data(body["data"], source, filename, previous=current)
                      if "data" in body else load_text(source, filename, previous=current))
        except ConfigError as e:
            raise Answer(422, {"error": "invalid config; nothing was applied",
                               "diagnostics": [vars(d) for d in e.diagnostics]}) from None
        except UsageError as e:
            raise Answer(400, {"error": str(e)}) from None
        try:
            self.service.check(loaded)
        except ControllerError as e:
            raise Answer(409, {"error": str(e)}) from None
        if apply:
            try:
                return {"revision": self.service.apply(loaded), "digest": loaded.revision}
            except IsolationError as e:
                raise Answer(409, {"error": str(e)}) from None
        plans, proof = self.service.plan(loaded)
        old_at = current.location if current else None
        return {"hypervisors": {
            hv: {"per_table": p.per_table(), "add_groups": len(p.add_groups),
                 "delete_groups": len(p.delete_groups),
                 "lines": p.lines(known, new_at=loaded.location, old_at=old_at)}
            for hv, (p, known) in plans.items()},
            "isolation": {"proven": not proof.violations, "seconds": round(proof.seconds, 3),
                          "text": proof.explain(loaded)}}


def _header(scope, name: bytes) -> str:
    for k, v in scope["headers"]:
        if k == name:
            return v.decode("latin-1")
    return ""


def _query(q: dict, name: str, pattern: re.Pattern, what: str, default: str | None = None) -> str:
    """One query parameter, whole and plain: `nan`, `-1`, `1e9` and non-ASCII digits are
    refused rather than read by float() or int()."""
    value = q.get(name, [default])[0]
    if value is None or not pattern.fullmatch(value):
        raise Answer(400, {"error": f"{name} must be {what}, not {value!r}"})
    return value


async def _disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


async def _json_body(scope, receive) -> dict:
    declared = _header(scope, b"content-length")  # h11 has checked that it is a number
    if declared and int(declared) > MAX_BODY:
        raise Answer(413, {"error": f"body larger than {MAX_BODY} bytes"}, close=True)
    chunks, size = [], 0
    try:
        async with asyncio.timeout(BODY_TIMEOUT):
            while True:
                msg = await receive()
                if msg["type"] == "http.disconnect":
                    raise _ClientGone
                size += len(msg.get("body", b""))
                if size > MAX_BODY:
                    raise Answer(413, {"error": f"body larger than {MAX_BODY} bytes"}, close=True)
                chunks.append(msg.get("body", b""))
                if not msg.get("more_body"):
                    break
    except TimeoutError:
        raise Answer(408, {"error": f"the body did not arrive within {BODY_TIMEOUT:.0f}s"},
                     close=True) from None
    try:
        body = json.loads(b"".join(chunks), parse_constant=_refuse_constant)
    except RecursionError:
        raise Answer(400, {"error": "bad request body: JSON nested too deeply"}) from None
    except ValueError as e:
        raise Answer(400, {"error": f"bad request body: {e}"}) from None
    if not isinstance(body, dict):
        raise Answer(400, {"error": "bad request body: expected a JSON object"})
    return body
