"""A small asyncio HTTP/1.1 server: keep-alive, one write per reply, TCP_NODELAY.

Python's http.server writes headers and body separately; with keep-alive, Nagle plus delayed
ACKs cost ~40 ms a request (field notes). Here each reply leaves in a single write and Nagle is
off, so one core serves thousands of requests a second. Requests on one connection are answered
in order; an added latency delays the reply without blocking other connections.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Callable
from http import HTTPStatus

from worker.sandbox.http import Reply, Request

MAX_HEADER_BYTES = 64 * 1024
MAX_BODY_BYTES = 16 * 1024 * 1024

Handler = Callable[[Request], Reply]


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def encode(reply: Reply, keep_alive: bool) -> bytes:
    lines = [f"HTTP/1.1 {reply.status} {_reason(reply.status)}"]
    if reply.status not in (204, 304):
        lines.append(f"Content-Type: {reply.content_type}")
        lines.append(f"Content-Length: {len(reply.body)}")
    lines.extend(f"{name}: {value}" for name, value in reply.headers)
    lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return head if reply.status in (204, 304) else head + reply.body


def _error(status: int, message: str) -> Reply:
    body = json.dumps([{"error_key": "http.error", "error_message": message}]).encode()
    return Reply(status, body)


class HttpProtocol(asyncio.Protocol):
    def __init__(self, handler: Handler, connections: set[HttpProtocol]) -> None:
        self.handler = handler
        self.connections = connections
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.busy = False  # a delayed reply is pending: later requests wait their turn
        self.closing = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        self.connections.add(self)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        self.connections.discard(self)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        self._drain()

    def close(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def _drain(self) -> None:
        while not self.busy and not self.closing:
            parsed = self._next_request()
            if parsed is None:
                return
            request, keep_alive = parsed
            reply = self.handler(request)
            if reply.drop:
                self.closing = True
                assert self.transport is not None
                self.transport.abort()
                return
            if reply.delay_s > 0:
                self.busy = True
                asyncio.get_running_loop().call_later(
                    reply.delay_s, self._send_later, reply, keep_alive)
                return
            self._send(reply, keep_alive)

    def _send_later(self, reply: Reply, keep_alive: bool) -> None:
        self.busy = False
        if self.closing:
            return
        self._send(reply, keep_alive)
        self._drain()

    def _send(self, reply: Reply, keep_alive: bool) -> None:
        assert self.transport is not None
        self.transport.write(encode(reply, keep_alive))
        if not keep_alive:
            self.close()

    def _fail(self, status: int, message: str) -> None:
        self._send(_error(status, message), keep_alive=False)

    def _next_request(self) -> tuple[Request, bool] | None:
        end = self.buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(self.buffer) > MAX_HEADER_BYTES:
                self._fail(431, "request headers too large")
            return None
        try:
            head = bytes(self.buffer[:end]).decode("latin-1")
            request_line, *header_lines = head.split("\r\n")
            method, target, version = request_line.split(" ")
        except ValueError:
            self._fail(400, "malformed request line")
            return None
        headers: dict[str, str] = {}
        for line in header_lines:
            name, sep, value = line.partition(":")
            if not sep:
                self._fail(400, "malformed header line")
                return None
            headers[name.strip().lower()] = value.strip()
        if "chunked" in headers.get("transfer-encoding", "").lower():
            self._fail(411, "chunked request bodies are not supported; send Content-Length")
            return None
        try:
            length = int(headers.get("content-length", "0"))
        except ValueError:
            self._fail(400, "bad Content-Length")
            return None
        if length < 0 or length > MAX_BODY_BYTES:
            self._fail(413, f"request bodies are limited to {MAX_BODY_BYTES} bytes")
            return None
        start = end + 4
        if len(self.buffer) < start + length:
            return None
        body = bytes(self.buffer[start:start + length])
        del self.buffer[:start + length]
        path, _, query = target.partition("?")
        connection = headers.get("connection", "").lower()
        # HTTP/1.1 keeps the connection unless told otherwise; HTTP/1.0 only when asked.
        keep_alive = connection != "close" if version == "HTTP/1.1" else connection == "keep-alive"
        return Request(method.upper(), path, query, headers, body), keep_alive
