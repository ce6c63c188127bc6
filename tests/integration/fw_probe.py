"""Run inside a VM namespace (`ip netns exec NS python fw_probe.py ...`).

    serve tcp|udp IP PORT    an echo server; prints READY once listening
    connect tcp|udp IP PORT  one exchange: prints OK, or FAIL and why (exit 1)
    session IP PORT          a TCP connection kept open: prints CONNECTED (or FAIL), then
                             for each line on stdin sends it and prints the echo, or FAIL
"""
import socket
import sys
import threading

TIMEOUT = 2.0


def serve(proto: str, ip: str, port: int) -> None:
    if proto == "udp":
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((ip, port))
        print("READY", flush=True)
        while True:
            data, peer = s.recvfrom(2048)
            s.sendto(data, peer)
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((ip, port))
    s.listen(16)
    print("READY", flush=True)
    while True:
        conn, _ = s.accept()
        threading.Thread(target=_echo, args=(conn,), daemon=True).start()


def _echo(conn) -> None:
    with conn:
        while data := conn.recv(2048):
            conn.sendall(data)


def connect(proto: str, ip: str, port: int) -> int:
    try:
        if proto == "udp":
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            s.settimeout(TIMEOUT)
            s.sendto(b"ping", (ip, port))
            ok = s.recvfrom(2048)[0] == b"ping"
        else:
            s = socket.create_connection((ip, port), timeout=TIMEOUT)
            s.sendall(b"ping")
            ok = s.recv(2048) == b"ping"
    except OSError as e:
        print(f"FAIL {e}")
        return 1
    print("OK" if ok else "FAIL wrong echo")
    return 0 if ok else 1


def session(ip: str, port: int) -> None:
    try:
        s = socket.create_connection((ip, port), timeout=TIMEOUT)
    except OSError as e:
        print(f"FAIL {e}", flush=True)
        return
    print("CONNECTED", flush=True)
    for line in sys.stdin:
        try:
            s.sendall(line.strip().encode())
            print(s.recv(2048).decode(), flush=True)
        except OSError as e:
            print(f"FAIL {e}", flush=True)


if __name__ == "__main__":
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "serve":
        serve(args[0], args[1], int(args[2]))
    elif cmd == "connect":
        sys.exit(connect(args[0], args[1], int(args[2])))
    else:
        session(args[0], int(args[1]))
