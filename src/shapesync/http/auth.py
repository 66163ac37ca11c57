"""Who may use the shape API and the admin API.

With a secret (``ELECTRIC_SECRET`` / ``--secret``) every shape request except OPTIONS, and
every admin request, must carry it as the query parameter ``secret`` (or the deprecated
``api_secret`` when ``secret`` is absent: if ``secret`` is present it alone decides, as in
the reference); otherwise 401. Without a secret the shape API is open, as in the
reference, and the admin API answers only peers on a loopback address, and not web pages
(requests with an Origin header), 403 otherwise: Add Database makes this server open
connections to any address it is given, which must not be for anyone who can reach the
port or for a page that a local user happens to visit.
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
import logging

from shapesync.http.messages import Request, Response, json_response

log = logging.getLogger(__name__)

UNAUTHORIZED = "Unauthorized - Invalid API secret"
ADMIN_LOOPBACK_ONLY = ("Forbidden - the admin API accepts requests from loopback addresses "
                       "only when no API secret is configured (ELECTRIC_SECRET)")
ADMIN_NO_BROWSERS = ("Forbidden - the admin API does not accept requests from web pages (an "
                     "Origin header) when no API secret is configured (ELECTRIC_SECRET)")
# A request that came through a proxy on this host has a loopback peer but is not local.
FORWARDING_HEADERS = ("forwarded", "x-forwarded-for", "x-real-ip")


def presented_secret(query: dict[str, list[str]]) -> str | None:
    """The secret a request presents: ``secret`` when present (even empty), else
    ``api_secret``; the last value of a repeated parameter, like every other one."""
    values = query.get("secret")
    if values is None:
        values = query.get("api_secret")
    return values[-1] if values else None


def secret_matches(query: dict[str, list[str]], secret: str) -> bool:
    """Whether the request's query carries ``secret`` (compared in constant time)."""
    presented = presented_secret(query)
    if presented is None:
        return False
    # Digests first, so that neither the time taken nor anything else depends on the length.
    return hmac.compare_digest(_digest(presented), _digest(secret))


def _digest(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).digest()


def is_loopback(client: object) -> bool:
    """Whether an ASGI ``client`` (``(host, port)`` or None) is a loopback address:
    127.0.0.0/8, ::1, or an IPv4-mapped 127.x. None (a Unix socket, or unknown) is not."""
    if not isinstance(client, (tuple, list)) or not client or not isinstance(client[0], str):
        return False
    try:
        address = ipaddress.ip_address(client[0].split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped.is_loopback
    return address.is_loopback


class Auth:
    """The access rules of one server; ``secret`` None means none is configured."""

    def __init__(self, secret: str | None = None) -> None:
        self.secret = secret or None

    def check_shape(self, request: Request) -> Response | None:
        """None when the shape request may proceed, else the 401 to send."""
        if self.secret is None or request.method == "OPTIONS":
            return None
        if secret_matches(request.query, self.secret):
            return None
        return json_response(401, {"message": UNAUTHORIZED})

    def check_admin(self, request: Request, client: object) -> Response | None:
        """None when the admin request may proceed, else the 401 or 403 to send."""
        if self.secret is not None:
            if secret_matches(request.query, self.secret):
                return None
            return json_response(401, {"message": UNAUTHORIZED})
        if not is_loopback(client) or any(request.header_values(h) for h in FORWARDING_HEADERS):
            return json_response(403, {"message": ADMIN_LOOPBACK_ONLY})
        # A page in a browser on this host reaches loopback too, and a POST without a
        # content-type needs no CORS preflight; browsers send Origin with every POST and
        # DELETE (cross-origin or after DNS rebinding alike), command-line clients do not.
        if request.header_values("origin"):
            return json_response(403, {"message": ADMIN_NO_BROWSERS})
        return None

    def log_mode(self) -> None:
        """Say at startup which rules apply."""
        if self.secret is not None:
            log.info("API secret set: shape and admin requests need ?secret=")
        else:
            log.warning("no API secret (ELECTRIC_SECRET) set: the shape API is open to anyone "
                        "who can reach the port, and the admin API (/v1/admin/*) answers "
                        "requests from loopback addresses only")
