"""New TCP connections per second between two namespaces: `server PORT` accepts and closes
until killed; `client IP PORT SECONDS` connects and closes in a loop for SECONDS, then prints
the count.  Bounded in time; run only inside the benchmark's own namespaces."""
import socket
import sys
import time


def server(port: int) -> None:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("0.0.0.0", port))
    s.listen(512)
    print("READY", flush=True)
    while True:
        c, _ = s.accept()
        c.close()


def client(ip: str, port: int, seconds: float) -> None:
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        c = socket.create_connection((ip, port), timeout=2)
        c.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        c.close()
        n += 1
    print(n / seconds)


if __name__ == "__main__":
    if sys.argv[1] == "server":
        server(int(sys.argv[2]))
    else:
        client(sys.argv[2], int(sys.argv[3]), float(sys.argv[4]))
