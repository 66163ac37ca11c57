"""Add Database / Remove Database (the reference's admin API): request parsing and
response bodies.

What a database is and how it starts and stops lives in ``shapesync.tenants``; this
module only turns HTTP requests into calls of a ``DatabaseAdmin`` and their outcomes
into responses.
"""

from __future__ import annotations

import uuid
from typing import Protocol

import orjson

from shapesync.config import database_id_error
from shapesync.http.messages import Request, Response, json_response
from shapesync.tenants.databases import DatabaseRejected, StoredDatabase


class DatabaseAdmin(Protocol):
    async def add_database(self, stored: StoredDatabase) -> None:
        """Check, persist and start a database; raises DatabaseRejected (a 400 body)."""

    async def remove_database(self, database_id: str) -> bool:
        """Stop and delete a database; False when there is none with this id."""


def _first(body: dict, *names: str) -> object:
    """The value of the first of ``names`` present (the seed's upper-case keys and the
    reference's lower-case ones are both accepted)."""
    for name in names:
        if name in body:
            return body[name]
    return None


class AdminApi:
    def __init__(self, databases: DatabaseAdmin) -> None:
        self.databases = databases

    async def add_database(self, request: Request, raw_body: bytes) -> Response:
        if raw_body.strip():
            content_type = (request.header_values("content-type") or [""])[0]
            media_type = content_type.split(";")[0].strip().lower()
            if media_type not in ("application/json", ""):  # no content-type: try JSON
                return json_response(415, {"message": "the body must be JSON "
                                                      "(content-type: application/json)"})
            try:
                body = orjson.loads(raw_body)
            except orjson.JSONDecodeError as exc:
                return json_response(400, {"message": f"the body is not valid JSON: {exc}"})
            if not isinstance(body, dict):
                return json_response(400, {"message": "the body must be a JSON object"})
        else:
            body = {}

        errors: dict[str, list[str]] = {}
        url = _first(body, "database_url", "DATABASE_URL")
        if url is None or (isinstance(url, str) and not url.strip()):
            errors["database_url"] = ["can't be blank"]
        elif not isinstance(url, str):
            errors["database_url"] = ["is invalid"]
        database_id = _first(body, "database_id", "DATABASE_ID")
        if database_id is None or database_id == "":
            database_id = str(uuid.uuid4())  # the seed: generated when not given
        elif not isinstance(database_id, str):
            errors["database_id"] = ["is invalid"]
        elif problem := database_id_error(database_id):
            errors["database_id"] = [problem]
        use_ipv6 = _first(body, "database_use_ipv6", "DATABASE_USE_IPV6")
        if use_ipv6 is None:
            use_ipv6 = False
        elif isinstance(use_ipv6, str) and use_ipv6.lower() in ("true", "false"):
            use_ipv6 = use_ipv6.lower() == "true"
        elif not isinstance(use_ipv6, bool):
            errors["database_use_ipv6"] = ["is invalid"]
        if errors:
            return json_response(400, errors)
        assert isinstance(url, str) and isinstance(database_id, str) and isinstance(use_ipv6, bool)

        try:
            await self.databases.add_database(StoredDatabase(database_id, url, use_ipv6))
        except DatabaseRejected as exc:
            return json_response(400, exc.body)
        return json_response(200, database_id)

    async def remove_database(self, request: Request, database_id: str | None) -> Response:
        if database_id is None:
            database_id = request.param("database_id")
        if not database_id:
            return json_response(400, {"database_id": ["can't be blank"]})
        if not await self.databases.remove_database(database_id):
            return json_response(404, f"Database {database_id} not found.")
        return json_response(200, database_id)
