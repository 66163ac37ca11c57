"""uvicorn's httptools protocol, with JSON error bodies and limits for slow and hostile clients.

uvicorn answers a request it cannot parse with a plain-text 400 before any ASGI app runs.
That includes a well-formed request whose URL is longer than 65,535 bytes: httptools'
URL parser (http-parser's ``parse_url``) keeps offsets in 16 bits and fails on it. Our
rule is a clear JSON body for every bad input, and 414 for a URL that is too long, so this
subclass answers those itself; parsing stays uvicorn's.

uvicorn also has no limit on how long or how large a request head may be, and keeps
writing to a client that stopped reading for as long as the socket stays open. So this
class adds (``ClientLimits``, set from ``Settings`` by ``cli.py``):

- a head deadline: request line + headers complete within ``header_timeout`` seconds of
  the connection (or of the request's first byte on a kept-alive connection), else 408;
- a size limit on the head: over ``max_header_bytes`` of header fields -> 431, a URL over
  64 KiB -> 414, each as soon as it is seen; what httptools buffers for one head is then at
  most the limit plus about one socket read;
- a send timeout: while the transport's write buffer is above its high-water mark (uvicorn
  has paused the response), it must shrink within ``send_timeout`` seconds, else the
  connection is reset, which frees the buffered bytes (ours and the kernel's) and ends
  the response's task;
- an optional connection limit: a connection accepted beyond ``max_connections`` gets 503
  with ``Retry-After`` for its first request.

Our own error responses are sent with ``connection: close``, then the write side is shut
and the rest of the request is read and dropped for at most ``LINGER_SECONDS`` (a lingering
close, as nginx does): closing a socket with unread input makes the kernel reset the
connection, and the client could lose the response.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from dataclasses import dataclass

import httptools
import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

MAX_URL_BYTES = 65535
RETRY_AFTER_SECONDS = 5
LINGER_SECONDS = 2.0
# The write buffer must shrink by at least this much per send_timeout to count as progress.
SEND_PROGRESS_BYTES = 1024

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ClientLimits:
    header_timeout: float = 30.0  # seconds; 0 turns the deadline off
    max_header_bytes: int = 32 * 1024  # header fields, without the request line
    send_timeout: float = 30.0  # seconds; 0 turns it off
    max_connections: int = 0  # 0: no limit


class _Rejected(Exception):
    """Raised from a parser callback to stop parsing; the protocol answers ``status``."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class HttpProtocol(HttpToolsProtocol):
    limits = ClientLimits()

    @classmethod
    def with_limits(cls, limits: ClientLimits) -> type[HttpProtocol]:
        """This protocol class with ``limits`` (uvicorn builds one instance per connection)."""
        return type(cls.__name__, (cls,), {"limits": limits})

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._head_timer: asyncio.TimerHandle | None = None
        self._head_bytes: int | None = None  # bytes of the unfinished head; None: not in one
        self._field_bytes = 0  # header names and values of the current head
        self._began_in_feed = False
        self._over_limit = False
        self._rejection: _Rejected | None = None
        self._lingering = False
        self._linger_timer: asyncio.TimerHandle | None = None
        self._send_timer: asyncio.TimerHandle | None = None
        self._buffered_at_check = 0

    # -- connection ------------------------------------------------------------------
    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        limit = self.limits.max_connections
        self._over_limit = bool(limit) and len(self.connections) > limit
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        for timer in (self._head_timer, self._linger_timer, self._send_timer):
            if timer is not None:
                timer.cancel()
        self._head_timer = self._linger_timer = self._send_timer = None
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._lingering:
            return  # the rest of a request we already answered
        self._unset_keepalive_if_required()
        self._began_in_feed = False
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            if self._rejection is not None:
                self._reject(self._rejection.status, self._rejection.message)
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("")
            return
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        self._count_head(len(data))

    def _count_head(self, fed: int) -> None:
        """After a feed that left a head unfinished: reject it once it is too large.

        Bytes of a head that began in this feed are counted from what the parser reported
        (the URL and the complete header fields), so that a pipelined request's bytes in the
        same read do not count; later reads count whole.
        """
        if self._head_bytes is None:
            return
        url = len(getattr(self, "url", b""))
        self._head_bytes = url + self._field_bytes if self._began_in_feed else self._head_bytes + fed
        if self._head_bytes - url > self.limits.max_header_bytes:
            self._reject(431, self._too_large())

    # -- parser callbacks ----------------------------------------------------------------
    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._head_bytes = 0
        self._field_bytes = 0
        self._began_in_feed = True
        self._arm_head_timer()

    def on_url(self, url: bytes) -> None:
        super().on_url(url)
        if len(self.url) > MAX_URL_BYTES:
            self._stop(414, f"request URL longer than {MAX_URL_BYTES} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        self._field_bytes += len(name) + len(value) + 4
        if self._field_bytes > self.limits.max_header_bytes:
            self._stop(431, self._too_large())
        super().on_header(name, value)

    def on_headers_complete(self) -> None:
        self._head_bytes = None
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if self._over_limit:
            self._stop(503, "too many connections; retry later")
        super().on_headers_complete()

    def _stop(self, status: int, message: str) -> None:
        self._rejection = _Rejected(status, message)
        raise self._rejection

    def _too_large(self) -> str:
        return f"request headers larger than {self.limits.max_header_bytes} bytes"

    # -- head deadline -------------------------------------------------------------------
    def _arm_head_timer(self) -> None:
        if self._head_timer is None and self.limits.header_timeout > 0 and not self._lingering:
            self._head_timer = self.loop.call_later(self.limits.header_timeout, self._head_timed_out)

    def _head_timed_out(self) -> None:
        self._head_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is not None and not self.cycle.response_complete:
            # A pipelined head waits behind a response in progress: give it another period.
            self._arm_head_timer()
        elif self._head_bytes is None:
            self.transport.close()  # nothing of a request arrived: nobody to answer
        else:
            seconds = f"{self.limits.header_timeout:g}"
            self._reject(408, f"request headers not received within {seconds} seconds")

    # -- send timeout --------------------------------------------------------------------
    def pause_writing(self) -> None:
        super().pause_writing()
        if self._send_timer is None and self.limits.send_timeout > 0:
            self._buffered_at_check = self.transport.get_write_buffer_size()
            self._send_timer = self.loop.call_later(self.limits.send_timeout, self._send_stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._send_timer is not None:
            self._send_timer.cancel()
            self._send_timer = None

    def _send_stalled(self) -> None:
        self._send_timer = None
        buffered = self.transport.get_write_buffer_size()
        if buffered <= self._buffered_at_check - SEND_PROGRESS_BYTES:
            self._buffered_at_check = buffered  # slow, but reading: another period
            self._send_timer = self.loop.call_later(self.limits.send_timeout, self._send_stalled)
            return
        log.debug("client %s stopped reading; resetting with %d bytes unsent", self.client, buffered)
        self._reset()

    def _reset(self) -> None:
        """Close now with a TCP reset: drop our buffer and the kernel's (a plain close would
        leave the unsent bytes queued in an orphaned socket behind a zero window)."""
        sock = self.transport.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.transport.abort()

    # -- our own responses ---------------------------------------------------------------
    def send_400_response(self, msg: str) -> None:  # noqa: ARG002 - uvicorn's text is replaced
        if len(getattr(self, "url", b"")) > MAX_URL_BYTES:
            self._reject(414, f"request URL longer than {MAX_URL_BYTES} bytes")
        else:
            self._reject(400, "invalid HTTP request: the request line or headers are malformed")

    def _reject(self, status: int, message: str) -> None:
        """Answer ``status`` with a JSON body, then close the connection (lingering)."""
        if self.transport.is_closing() or self._lingering:
            return
        body = orjson.dumps({"message": message})
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        if status == 503:
            content.append(b"retry-after: %d\r\n" % RETRY_AFTER_SECONDS)
        content.append(b"content-type: application/json\r\n")
        if not getattr(self, "url", b"").startswith(b"/v1/admin"):  # never CORS on admin
            content.append(b"access-control-allow-origin: *\r\n")
        content.extend([
            b"cache-control: max-age=0, private, must-revalidate\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n",
            b"\r\n",
            body,
        ])
        self.transport.write(b"".join(content))
        self._linger()

    def _linger(self) -> None:
        """Shut the write side once the response is out, drop what the client still sends,
        and close when it closes or after LINGER_SECONDS."""
        self._lingering = True
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None
        if not self.transport.can_write_eof():
            self.transport.close()
            return
        self.transport.write_eof()
        self.flow.resume_reading()
        self._linger_timer = self.loop.call_later(LINGER_SECONDS, self._reset)
