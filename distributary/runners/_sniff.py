"""What answers at a host and port, for a clear error when a cluster address points at the wrong thing (a
dashboard, a socket that never answers): cluster clients wait for ever for a handshake such a peer never sends."""
from __future__ import annotations

import socket
import time

# The HTTP/2 client connection preface and an empty SETTINGS frame: a gRPC server (Ray's GCS, Ray Client) answers
# with a SETTINGS frame, an HTTP/1 server (a dashboard) with an "HTTP/1.x 4xx/5xx" status line.
_H2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"

GRPC, HTTP, SILENT, CLOSED, OTHER = "grpc", "http", "silent", "closed", "other"


def sniff(host: str, port: int, timeout: float) -> str:
    """One of GRPC, HTTP, SILENT (accepts, sends nothing within `timeout`), CLOSED (accepts, then hangs up) or
    OTHER (answers something else). Raises OSError if nothing accepts the connection within `timeout`."""
    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as s:
        try:
            s.sendall(_H2_PREFACE)
        except OSError:
            return CLOSED
        data = b""
        while len(data) < 16:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                chunk = s.recv(64)
            except TimeoutError:
                break
            except OSError:
                return CLOSED if not data else OTHER
            if not chunk:
                return CLOSED if not data else _classify(data)
            data += chunk
            if _classify(data) in (GRPC, HTTP):
                break
    return SILENT if not data else _classify(data)


def _classify(data: bytes) -> str:
    head = data.lstrip()[:16].lower()
    if data.startswith(b"HTTP/") or head.startswith((b"<!doctype", b"<html")):  # an HTTP/0.9-style error page
        return HTTP
    if len(data) >= 9 and data[3] == 0x04:  # an HTTP/2 frame of type SETTINGS
        return GRPC
    return OTHER


__all__ = ["sniff", "GRPC", "HTTP", "SILENT", "CLOSED", "OTHER"]
