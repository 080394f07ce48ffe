"""A lean HTTP/1.1 client for the direct transport: pooled keep-alive connections to one server.

Why not aiohttp, which the direct transport used before: importing it costs 0.2-0.4 s of CPU
(it loads the system's CA store into two TLS contexts at import time), paid before a small job's
first request, and its request machinery costs about 1 ms of CPU a call, which the reward server
pays on every item. A judge request is one POST of a JSON body answered by one JSON body, so
this client is asyncio's transports with httptools' C parser (installed for uvicorn): about 15 ms
to import, a TLS context only for an https URL, and a fraction of aiohttp's CPU per request
(`bench/small_job.py`, `bench/serve_rewards.py`).

What it speaks: HTTP and HTTPS; keep-alive with at most `limit` connections; answers sized by
Content-Length, chunked, or ended by the connection's close; a timeout over the whole exchange;
one retry on a fresh connection when a kept-alive one turns out to have been closed by the server
before it answered anything. Proxies are not spoken here: `transport.DirectClient` sends a proxied
URL through aiohttp, which tunnels and authenticates.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

# An answer larger than this is refused rather than held in memory: a judge's answer is a few KB.
MAX_RESPONSE_BYTES = 64 * 1024 * 1024


class HTTPClientError(Exception):
    """No complete answer: the connection could not be opened or broke, or the bytes were not HTTP.

    The OSError that stopped a connection from opening (refused, unknown host) is its `__cause__`,
    so `retry.is_unreachable` can tell an unreachable server from one that answered badly.
    """


@dataclass(frozen=True)
class Response:
    """A whole answer, whatever its status."""

    status: int
    headers: dict[str, str]  # names lower-cased; a repeated header's values joined with ", "
    body: bytes


@dataclass(frozen=True)
class Origin:
    """Where requests go: scheme, host and port of a URL."""

    scheme: str
    host: str
    port: int

    @classmethod
    def of(cls, url: str) -> Origin:
        """The origin of an http(s) URL.

        Raises:
            ValueError: not an http or https URL with a host.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"not an http(s) URL with a host: {url!r}")
        return cls(parts.scheme, parts.hostname, parts.port or (443 if parts.scheme == "https" else 80))

    @property
    def authority(self) -> str:
        """The Host header's value: the port only when it is not the scheme's default."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return host if self.port == (443 if self.scheme == "https" else 80) else f"{host}:{self.port}"


class _Connection(asyncio.Protocol):
    """One TCP (or TLS) connection, carrying one request and its answer at a time."""

    def __init__(self) -> None:
        import httptools

        self._parser = httptools.HttpResponseParser(self)
        self._parser_error: tuple[type[Exception], ...] = (httptools.HttpParserError,)
        self.transport: asyncio.Transport | None = None
        self.open = False
        self.reusable = False
        self.received_any = False  # any byte of the current answer
        self._waiter: asyncio.Future[Response] | None = None
        self._reset()

    def _reset(self) -> None:
        self._headers: dict[str, str] = {}
        self._body: list[bytes] = []
        self._size = 0
        self._headers_done = False
        self._framed = False  # sized by Content-Length or chunked, not by the connection's end

    async def exchange(self, request: bytes) -> Response:
        """Send one request and wait for its whole answer."""
        assert self.transport is not None
        self._reset()
        self.received_any = False
        self.reusable = False
        self._waiter = asyncio.get_running_loop().create_future()
        self.transport.write(request)
        try:
            return await self._waiter
        finally:
            self._waiter = None

    def close(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.close()

    # asyncio.Protocol

    def connection_made(self, transport: Any) -> None:
        self.transport = transport
        self.open = True

    def data_received(self, data: bytes) -> None:
        if self._waiter is None or self._waiter.done():
            self.close()  # bytes nobody asked for: the connection is out of step; never reuse it
            return
        self.received_any = True
        try:
            self._parser.feed_data(data)
        except self._parser_error as exc:
            self._fail(HTTPClientError(f"the server's answer is not valid HTTP: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        if self._waiter is None or self._waiter.done():
            return
        if self._headers_done and not self._framed:  # an answer whose end is the connection's end
            self._waiter.set_result(self._response())
            return
        error = HTTPClientError("the server closed the connection before it finished answering"
                                + (f" ({type(exc).__name__}: {exc})" if exc is not None else ""))
        error.__cause__ = exc
        self._waiter.set_exception(error)

    # httptools callbacks

    def on_header(self, name: bytes, value: bytes) -> None:
        key = name.decode("latin-1").lower()
        text = value.decode("latin-1")
        self._headers[key] = f"{self._headers[key]}, {text}" if key in self._headers else text

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._framed = "content-length" in self._headers or "chunked" in self._headers.get("transfer-encoding", "").lower()

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > MAX_RESPONSE_BYTES:
            self._fail(HTTPClientError(f"the server's answer is larger than {MAX_RESPONSE_BYTES // (1024 * 1024)} MiB"))
            return
        self._body.append(body)

    def on_message_complete(self) -> None:
        if self._parser.get_status_code() < 200:  # an interim answer (100 Continue): the real one follows
            self._reset()
            return
        self.reusable = self._parser.should_keep_alive()
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(self._response())

    def _response(self) -> Response:
        return Response(self._parser.get_status_code(), self._headers, b"".join(self._body))

    def _fail(self, error: HTTPClientError) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(error)
        self.close()


class ConnectionPool:
    """Keep-alive connections to one server, at most `limit` open at once (use inside one event loop)."""

    def __init__(self, url: str, limit: int, user_agent: str = "rubric-judge"):
        """`url`: any URL on the server (its scheme, host and port are used). Raises ValueError
        for a URL that is not http(s)."""
        self.origin = Origin.of(url)
        self.limit = max(1, limit)
        self.user_agent = user_agent
        self._idle: list[_Connection] = []
        self._slots: asyncio.Semaphore | None = None
        self._tls: Any = None

    async def post(self, url: str, headers: dict[str, str], body: bytes, timeout: float) -> Response:
        """POST `body` to `url` (on this pool's server) and return the answer, whatever its status.

        Args:
            url: the full URL; its path and query are the request target.
            headers: sent as given, after Host, User-Agent, Accept-Encoding and Content-Length.
            body: the request body.
            timeout: seconds for the whole exchange, waiting for a free connection included.

        Raises:
            HTTPClientError: no connection, a connection that broke, or an answer that is not HTTP.
            TimeoutError: no whole answer within `timeout`.
        """
        request = self._request_bytes(url, headers, body)
        if self._slots is None:
            self._slots = asyncio.Semaphore(self.limit)
        async with asyncio.timeout(timeout), self._slots:
            while True:
                connection, reused = await self._checkout()
                try:
                    response = await connection.exchange(request)
                except HTTPClientError:
                    connection.close()
                    if reused and not connection.received_any:
                        continue  # closed by the server while idle: once more, on a new connection
                    raise
                except BaseException:  # a timeout or a cancellation mid-exchange: the connection is out of step
                    connection.close()
                    raise
                if connection.reusable and connection.open:
                    self._idle.append(connection)
                else:
                    connection.close()
                return response

    async def close(self) -> None:
        """Close every idle connection."""
        idle, self._idle = self._idle, []
        for connection in idle:
            connection.close()

    async def _checkout(self) -> tuple[_Connection, bool]:
        while self._idle:
            connection = self._idle.pop()
            if connection.open and connection.transport is not None and not connection.transport.is_closing():
                return connection, True
        loop = asyncio.get_running_loop()
        tls = self._tls_context() if self.origin.scheme == "https" else None
        try:
            _, connection = await loop.create_connection(_Connection, self.origin.host, self.origin.port, ssl=tls,
                                                         server_hostname=self.origin.host if tls else None)
        except OSError as exc:
            raise HTTPClientError(f"cannot connect to {self.origin.authority}: {exc.strerror or exc}") from exc
        return connection, False

    def _tls_context(self) -> Any:
        if self._tls is None:
            import ssl

            self._tls = ssl.create_default_context()
        return self._tls

    def _request_bytes(self, url: str, headers: dict[str, str], body: bytes) -> bytes:
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        lines = [f"POST {target} HTTP/1.1", f"Host: {self.origin.authority}", f"User-Agent: {self.user_agent}",
                 "Accept-Encoding: identity", f"Content-Length: {len(body)}"]
        for name, value in headers.items():
            if any(character in name or character in value for character in "\r\n"):
                raise ValueError(f"the {name.splitlines()[0]!r} header contains a line break")  # it would inject headers
            lines.append(f"{name}: {value}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body
