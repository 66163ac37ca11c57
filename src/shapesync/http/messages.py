"""Request and response values shared by the protocol code and the ASGI shell."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Protocol

import orjson

JSON = "application/json; charset=utf-8"


@dataclass
class Request:
    method: str
    path_segments: list[str]
    query: dict[str, list[str]]
    headers: dict[str, list[str]]  # lower-case names

    def param(self, name: str) -> str | None:
        """A query parameter; empty or whitespace-only values count as absent, as in the reference."""
        values = self.query.get(name)
        if not values or not values[-1].strip():
            return None
        return values[-1]

    def header_values(self, name: str) -> list[str]:
        return self.headers.get(name, [])


class StreamedBody(Protocol):
    """A body sent in pieces; ``aclose`` is always called, whether or not it was read."""

    def __aiter__(self) -> AsyncIterator[bytes]: ...
    async def aclose(self) -> None: ...


@dataclass
class Response:
    status: int
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes | StreamedBody = b""


def json_response(status: int, payload: object, headers: dict[str, str] | None = None) -> Response:
    return Response(status, {"content-type": JSON, **(headers or {})}, orjson.dumps(payload))
