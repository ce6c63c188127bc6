"""Run inside a VM namespace (`ip netns exec NS python lb_probe.py ...`).

    serve NAME IP PORT        an HTTP server whose every answer is NAME; prints READY.
                              GET /health answers 200, or 503 after a line "sick" on
                              stdin (until a line "well")
    fetch URL N [PAUSE]       N GETs, each on a new connection (PAUSE seconds apart);
                              prints a JSON object: answer -> count ("error: ..." for a
                              request that failed)
"""
import json
import sys
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(name: str, ip: str, port: int) -> None:
    body = name.encode()
    sick = threading.Event()

    class Answer(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 (http.server's name)
            self.send_response(503 if self.path == "/health" and sick.is_set() else 200)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer((ip, port), Answer)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print("READY", flush=True)
    for line in sys.stdin:
        if line.strip() == "sick":
            sick.set()
        elif line.strip() == "well":
            sick.clear()
    threading.Event().wait()  # stdin closed: serve until killed


def fetch(url: str, n: int, pause: float) -> None:
    counts: dict[str, int] = {}
    for _ in range(n):
        try:
            with urllib.request.urlopen(url, timeout=3) as r:
                key = r.read().decode()
        except OSError as e:
            key = f"error: {e}"
        counts[key] = counts.get(key, 0) + 1
        time.sleep(pause)
    print(json.dumps(counts), flush=True)


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2], sys.argv[3], int(sys.argv[4]))
    else:
        fetch(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]) if len(sys.argv) > 4 else 0.0)
