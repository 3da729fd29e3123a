#!/usr/bin/env python3
"""Opens N connections to 127.0.0.1:PORT that never send a byte and reports
when the server closed them (bounded by LIMIT seconds). NOT run in CI.

    python3 hack/bench/silent_connections.py PORT N LIMIT

Against `kargo-harbor-receiver run` (any KUBECONFIG: the listener needs no API
server), each silent connection is closed --header-read-timeout after it opened
(or earlier, when a newer one of the same client takes its slot). Loopback only.
"""
import socket, sys, time, selectors
port, n, limit = int(sys.argv[1]), int(sys.argv[2]), float(sys.argv[3])
sel = selectors.DefaultSelector()
socks = []
t0 = time.monotonic()
for _ in range(n):
    s = socket.create_connection(("127.0.0.1", port)); s.setblocking(False)
    sel.register(s, selectors.EVENT_READ); socks.append(s)
opened = time.monotonic() - t0
closed = {}
while len(closed) < n and time.monotonic() - t0 < limit:
    for key, _ in sel.select(timeout=0.5):
        s = key.fileobj
        try:
            data = s.recv(4096)
        except OSError:
            data = b""
        if not data:
            closed[s] = time.monotonic() - t0; sel.unregister(s)
times = sorted(closed.values())
print(f"opened {n} in {opened:.2f}s; closed {len(times)} of {n} within {limit:.0f}s" + (f": first {times[0]:.2f}s, last {times[-1]:.2f}s after the first connect" if times else ""))
