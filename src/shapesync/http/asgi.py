"""A thin ASGI application: routing, global headers, HEAD, and sending Responses.

Hand-written rather than Starlette: the reference's router answers 404 (not 405) for
unknown methods, adds CORS headers to every response including 404s, and treats HEAD as
GET; with three routes a small dispatcher is clearer than overriding a framework's
defaults, and it keeps per-request overhead low for many long-polls.

Access (http/auth.py) is checked before a request is routed: the API secret on shape
requests, the secret or a loopback peer on ``/v1/admin/*``, whose responses never carry
CORS headers (so browsers on other origins cannot call it).
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
from urllib.parse import parse_qsl, unquote

from shapesync import __version__
from shapesync.http.admin import AdminApi
from shapesync.http.api import ShapeApi
from shapesync.http.auth import Auth
from shapesync.http.messages import Request, Response, json_response

log = logging.getLogger(__name__)

SHAPE_METHODS = "GET, HEAD, DELETE, OPTIONS"
ADMIN_METHODS = "GET, POST, DELETE, OPTIONS"
OTHER_METHODS = "GET, HEAD"
NO_CORS = ""  # as ``allowed``: send no access-control-* headers at all (the admin API)
# Room for a maximal where clause (16,384 characters, up to 3 bytes each once encoded);
# URLs over 64 KiB never reach the app: http/protocol.py answers those with 414.
MAX_QUERY_BYTES = 60 * 1024
MAX_BODY_BYTES = 64 * 1024  # admin requests carry a URL and an id
# x-request-id: unique per process start and request, without a random read per response.
_REQUEST_ID_PREFIX = os.urandom(4).hex()
_request_numbers = itertools.count(1)


def _parse_request(scope: dict) -> Request | Response:
    raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
    raw_query: bytes = scope.get("query_string", b"")
    if len(raw_query) > MAX_QUERY_BYTES:
        return json_response(414, {"message": f"query string longer than {MAX_QUERY_BYTES} bytes"})
    try:
        path = raw_path.decode("ascii")
        segments = [unquote(s, errors="strict") for s in path.split("?")[0].split("/")[1:]]
        query: dict[str, list[str]] = {}
        invalid: dict[str, list[str]] = {}
        # Invalid UTF-8 decodes to lone surrogates, which fail to encode again: a bad value
        # is reported under its parameter's name, like any other invalid parameter.
        for key, value in parse_qsl(raw_query.decode("ascii"), keep_blank_values=True,
                                    errors="surrogateescape"):
            key.encode()
            try:
                value.encode()
            except UnicodeError:
                invalid[key] = ["is not valid UTF-8"]
                continue
            query.setdefault(key, []).append(value)
    except UnicodeError:
        return json_response(400, {"message": "the request URL is not valid UTF-8"})
    if invalid:
        return json_response(400, invalid)
    headers: dict[str, list[str]] = {}
    for name, value in scope.get("headers", []):
        headers.setdefault(name.decode("latin-1").lower(), []).append(value.decode("latin-1"))
    return Request(scope["method"], segments, query, headers)


class App:
    def __init__(self, api: ShapeApi, admin: AdminApi | None = None,
                 auth: Auth | None = None) -> None:
        self.api = api
        self.admin = admin
        self.auth = auth or Auth()

    async def __call__(self, scope: dict, receive, send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request = _parse_request(scope)
        method = scope["method"]
        admin = _is_admin_path(scope)  # never any CORS headers: browsers may not call it
        if isinstance(request, Response):
            await self._send(send, request, method, NO_CORS if admin else OTHER_METHODS, {})
            return
        denied = self._authorize(request, scope, admin)
        if denied is not None:
            await self._send(send, denied, method, NO_CORS if admin else SHAPE_METHODS,
                             request.headers)
            return
        try:
            if "live" in request.query and method in ("GET", "HEAD"):
                routed = await _unless_disconnected(self._route(request), receive)
                if routed is None:
                    return  # the client left while waiting: free everything now
                response, allowed = routed
            elif method == "POST":
                body = await _read_body(receive)
                if body is None:
                    response, allowed = json_response(
                        413, {"message": f"request body larger than {MAX_BODY_BYTES} bytes"}
                    ), ADMIN_METHODS
                else:
                    response, allowed = await self._route(request, body)
            else:
                response, allowed = await self._route(request)
        except Exception:
            # repr: a client's path may hold control characters that would forge log lines
            log.exception("unhandled error serving %s %r", method, scope.get("path"))
            response, allowed = json_response(500, {"error": "internal server error"}), OTHER_METHODS
        await self._send(send, response, method, NO_CORS if admin else allowed, request.headers,
                         receive)

    def _authorize(self, request: Request, scope: dict, admin: bool) -> Response | None:
        """The 401/403 for a request that may not proceed (http/auth.py), else None."""
        if admin:
            return self.auth.check_admin(request, scope.get("client"))
        seg = request.path_segments
        if len(seg) == 3 and seg[:2] == ["v1", "shape"]:
            return self.auth.check_shape(request)
        return None

    async def _route(self, request: Request, body: bytes = b"") -> tuple[Response, str]:
        method = "GET" if request.method == "HEAD" else request.method
        seg = request.path_segments
        if seg == [""] or seg == []:
            if method == "GET":
                return Response(200), OTHER_METHODS
        elif len(seg) == 3 and seg[:2] == ["v1", "shape"]:
            if method == "GET":
                return await self.api.get_shape(request, seg[2]), SHAPE_METHODS
            if method == "DELETE":
                return await self.api.delete_shape(request, seg[2]), SHAPE_METHODS
            if method == "OPTIONS":
                return _preflight(request), SHAPE_METHODS
            return _not_found(), SHAPE_METHODS
        elif seg == ["v1", "health"] and method == "GET":
            return await self.api.health(request), OTHER_METHODS
        elif seg[:3] == ["v1", "admin", "database"] and len(seg) <= 4 and self.admin is not None:
            database_id = seg[3] if len(seg) == 4 else None
            if method == "POST" and database_id is None:
                return await self.admin.add_database(request, body), ADMIN_METHODS
            if method == "DELETE":
                return await self.admin.remove_database(request, database_id), ADMIN_METHODS
            if method == "OPTIONS":  # no CORS preflight answer: a plain 204
                return Response(204, {"allow": ADMIN_METHODS}), ADMIN_METHODS
            return _not_found(), ADMIN_METHODS
        elif seg[:2] == ["v1", "admin"]:
            return _not_found(), ADMIN_METHODS
        return _not_found(), OTHER_METHODS

    async def _send(self, send, response: Response, method: str, allowed: str,
                    request_headers: dict[str, list[str]], receive=None) -> None:
        """Send ``response``; a streamed body stops early when the client disconnects (known
        only through ``receive``), e.g. when http/protocol.py aborts a client that stopped
        reading, so the rest of the body is never read."""
        headers = dict(response.headers)
        if allowed == NO_CORS:
            headers = {k: v for k, v in headers.items() if not k.startswith("access-control-")}
        else:
            origins = request_headers.get("origin", [])
            headers.setdefault("access-control-allow-origin", origins[0] if origins else "*")
            headers.setdefault("access-control-expose-headers", "*")
            headers.setdefault("access-control-allow-methods", allowed)
        if response.status != 204 or method != "OPTIONS":
            headers.setdefault("cache-control", "max-age=0, private, must-revalidate")
        headers["server"] = f"shapesync/{__version__}"
        headers["x-request-id"] = f"{_REQUEST_ID_PREFIX}{next(_request_numbers):08x}"
        body = response.body
        raw = [(k.encode(), v.encode()) for k, v in headers.items()]
        if isinstance(body, bytes):
            if response.status not in (204, 304):
                raw.append((b"content-length", str(len(body)).encode()))
            await send({"type": "http.response.start", "status": response.status, "headers": raw})
            await send({"type": "http.response.body",
                        "body": b"" if method == "HEAD" else body})
            return
        try:
            await send({"type": "http.response.start", "status": response.status, "headers": raw})
            pieces = _send_pieces(send, body, method)
            if receive is None:
                await pieces
            elif await _unless_disconnected(pieces, receive) is None:
                return  # the client left, or stopped reading and was cut off: read no further
        finally:
            await body.aclose()
        await send({"type": "http.response.body", "body": b""})

    async def _lifespan(self, receive, send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return


async def _unless_disconnected(work, receive):
    """Run ``work`` (a long-poll) unless the client disconnects first; then cancel it.

    Without this a departed client's long-poll holds its socket, task and buffers until
    the poll times out: uvicorn only reports the disconnect through ``receive()``. The
    work runs in this task (a watcher task cancels it), not in a task of its own, so a
    woken long-poll goes straight on to sending its response in the same loop step.
    """
    task = asyncio.current_task()
    assert task is not None
    departed = False

    async def watch() -> None:
        nonlocal departed
        await _wait_disconnect(receive)
        departed = True
        task.cancel()

    watcher = asyncio.get_running_loop().create_task(watch())
    try:
        return await work
    except asyncio.CancelledError:
        if departed:
            task.uncancel()
            return None
        raise
    finally:
        watcher.cancel()


async def _send_pieces(send, body, method: str) -> bool:
    async for piece in body:
        if method != "HEAD":
            await send({"type": "http.response.body", "body": piece, "more_body": True})
    return True


async def _read_body(receive) -> bytes | None:
    """The whole request body, or None when it is larger than MAX_BODY_BYTES."""
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            break
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > MAX_BODY_BYTES:
            return None
        chunks.append(chunk)
        if not message.get("more_body"):
            break
    return b"".join(chunks)


async def _wait_disconnect(receive) -> None:
    while (await receive())["type"] != "http.disconnect":
        pass


def _is_admin_path(scope: dict) -> bool:
    """``/v1/admin`` or below, on the decoded path (so percent-encoded spellings count)."""
    path: str = scope.get("path", "")
    return path == "/v1/admin" or path.startswith("/v1/admin/")


def _not_found() -> Response:
    return Response(404, {"content-type": "text/plain"}, b"Not found")


def _preflight(request: Request) -> Response:
    headers = {"access-control-max-age": "86400", "connection": "keep-alive"}
    wanted = [v for v in request.header_values("access-control-request-headers") if v.strip()]
    if wanted:
        # More permissive than the reference (which echoes only if-none-match), so that
        # browser clients sending auth headers pass preflight.
        headers["access-control-allow-headers"] = ", ".join(wanted)
    return Response(204, headers)
