"""uvicorn's httptools protocol, with JSON error bodies for requests the app never sees.

uvicorn answers a request it cannot parse with a plain-text 400 before any ASGI app runs.
That includes a well-formed request whose URL is longer than 65,535 bytes: httptools'
URL parser (http-parser's ``parse_url``) keeps offsets in 16 bits and fails on it. Our
rule is a clear JSON body for every bad input, and 414 for a URL that is too long, so this
subclass overrides only the error response; parsing stays uvicorn's.
"""

from __future__ import annotations

import orjson
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

MAX_URL_BYTES = 65535


class HttpProtocol(HttpToolsProtocol):
    def send_400_response(self, msg: str) -> None:  # noqa: ARG002 - uvicorn's text is replaced
        if len(getattr(self, "url", b"")) > MAX_URL_BYTES:
            status, message = 414, f"request URL longer than {MAX_URL_BYTES} bytes"
        else:
            status, message = 400, "invalid HTTP request: the request line or headers are malformed"
        body = orjson.dumps({"message": message})
        content = [STATUS_LINE[status]]
        for name, value in self.server_state.default_headers:
            content.extend([name, b": ", value, b"\r\n"])
        content.extend([
            b"content-type: application/json\r\n",
            b"access-control-allow-origin: *\r\n",
            b"cache-control: max-age=0, private, must-revalidate\r\n",
            b"content-length: " + str(len(body)).encode("ascii") + b"\r\n",
            b"connection: close\r\n",
            b"\r\n",
            body,
        ])
        self.transport.write(b"".join(content))
        self.transport.close()
