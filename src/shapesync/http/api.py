"""The Electric 0.7 shape protocol, independent of the web framework: Request in,
Response out.

Decides what each request gets (400, 409, 304, catch-up, live, 204) from the request's
parameters and the shape's state; the shapes themselves (definitions, logs, snapshots,
waiting for changes) are the layers below, and bodies are framed by ``render``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Protocol

from shapesync.http import cache
from shapesync.http.identifiers import IdentifierError, parse_columns, parse_relation
from shapesync.http.messages import JSON, Request, Response, json_response
from shapesync.http.render import (
    PIECE_BYTES,
    UP_TO_DATE,
    JsonArrayBody,
    json_array,
    json_array_length,
    must_refetch_body,
)
from shapesync.offsets import LogOffset, parse_offset
from shapesync.pg.catalog import TableLookupError
from shapesync.shapes.definition import InvalidDefinition, ShapeDefinition, build_definition
from shapesync.shapes.shape import Shape, ShapeGone
from shapesync.tables import TableInfo
from shapesync.tenants.tenant import RETRY_AFTER_S, Busy, NotReady
from shapesync.where import CompiledWhere

UNKNOWN_SHAPE_ID = "no shape with this shape_id exists (it was removed, or never existed)"
MULTIPLE_DATABASES = (
    "Database ID was not provided and there are multiple databases. Please specify a "
    "database ID using the `database_id` query parameter."
)
MISMATCH = (
    "The specified shape definition and ID do not match. Please ensure the shape definition "
    "is correct or omit the shape ID from the request to obtain a new one."
)
Errors = dict[str, list[str]]
log = logging.getLogger(__name__)


class Tenant(Protocol):
    """What the shape API needs of a database (``tenants.tenant.Tenant``). ``ensure_open``,
    ``table`` and ``get_or_create`` raise NotReady once the database is removed or the
    server stops (``table`` also before it is first connected)."""

    id: str
    status: str  # "starting", "active" or "stopping"
    removed: bool

    def ensure_open(self) -> None: ...
    async def table(self, schema: str | None, name: str) -> TableInfo: ...
    def find_shape(self, definition: ShapeDefinition) -> Shape | None: ...
    def shape_by_id(self, shape_id: str) -> Shape | None: ...
    def removal_reason(self, shape_id: str) -> str | None: ...
    async def get_or_create(self, definition: ShapeDefinition, table: TableInfo,
                            where: CompiledWhere | None = None) -> Shape: ...
    def delete_shape(self, shape: Shape, reason: str) -> None: ...
    def wake_all(self) -> None: ...


class ShapeApi:
    def __init__(self, tenants: Mapping[str, Tenant], *, cache_max_age: int = 60,
                 cache_stale_age: int = 300, long_poll_timeout: float = 20.0,
                 allow_shape_deletion: bool = False) -> None:
        self.tenants = tenants
        self.catch_up_cache_control = cache.catch_up_cache_control(cache_max_age, cache_stale_age)
        self.long_poll_timeout = long_poll_timeout
        self.allow_shape_deletion = allow_shape_deletion
        self.stopping = False
        self._is_stopping = lambda: self.stopping  # made once, not per long-poll

    def begin_shutdown(self) -> None:
        """Answer every waiting long-poll now (204) so shutdown does not wait for them."""
        self.stopping = True
        for tenant in self.tenants.values():
            tenant.wake_all()

    # -- tenants ------------------------------------------------------------------------
    def resolve_tenant(self, request: Request) -> Tenant | Response:
        wanted = request.query.get("database_id")
        if wanted:
            tenant = self.tenants.get(wanted[-1])
            return tenant or json_response(404, "Database not found")
        if len(self.tenants) == 1:
            return next(iter(self.tenants.values()))
        if not self.tenants:
            return json_response(404, "Database not found")
        return json_response(400, MULTIPLE_DATABASES)

    # -- health ---------------------------------------------------------------------------
    async def health(self, request: Request) -> Response:
        tenant = self.resolve_tenant(request)
        if isinstance(tenant, Response):
            return tenant
        headers = {"content-type": "application/json",
                   "cache-control": "no-cache, no-store, must-revalidate"}
        if tenant.status != "active":
            headers["retry-after"] = str(RETRY_AFTER_S)
        return Response(200 if tenant.status == "active" else 503, headers,
                        b'{"status":"%s"}' % tenant.status.encode())

    # -- validation -------------------------------------------------------------------
    async def _table(self, tenant: Tenant, root_table: str, errors: Errors) -> TableInfo | None:
        """The table named by the path segment, or None with the message in ``errors``."""
        try:
            schema, name = parse_relation(root_table)
            return await tenant.table(schema, name)
        except (IdentifierError, TableLookupError) as exc:
            errors.setdefault("root_table", []).append(str(exc))
            return None

    @staticmethod
    def _definition(table: TableInfo, request: Request,
                    errors: Errors) -> tuple[ShapeDefinition, CompiledWhere | None] | None:
        """The shape the ``where`` and ``columns`` parameters ask for, or None with
        messages in ``errors`` (columns first, then where)."""
        columns: list[str] | None = None
        if (raw_columns := request.param("columns")) is not None:
            try:
                columns = parse_columns(raw_columns)
            except IdentifierError as exc:
                errors["columns"] = [str(exc)]
        try:
            built = build_definition(table, request.param("where"), columns)
        except InvalidDefinition as exc:
            errors.update(exc.errors)
            return None
        return None if "columns" in errors else built

    @staticmethod
    def _offset_params(request: Request, errors: Errors) -> tuple[LogOffset | None, bool]:
        """``offset`` and ``live``, checked with ``shape_id``; problems go to ``errors``."""
        raw_offset = request.param("offset")
        offset: LogOffset | None = None
        if raw_offset is None:
            errors["offset"] = ["can't be blank"]
        else:
            try:
                offset = parse_offset(raw_offset)
            except ValueError:
                errors["offset"] = ["has invalid format"]
        live_values = request.query.get("live") or []
        live = bool(live_values) and live_values[-1] != "false"
        if offset is not None:
            if not offset.is_before_all and request.param("shape_id") is None:
                errors["shape_id"] = ["can't be blank when offset != -1"]
            if offset.is_before_all and live:
                errors["live"] = ["can't be true when offset == -1"]
        return offset, live

    # -- GET /v1/shape/:root_table -----------------------------------------------------------
    async def get_shape(self, request: Request, root_table: str) -> Response:
        tenant = self.resolve_tenant(request)
        if isinstance(tenant, Response):
            return tenant
        try:
            return await self._get_shape(tenant, request, root_table)
        except NotReady as exc:
            # Removed (or shutting down) while this request was in flight.
            if tenant.removed:
                return json_response(404, "Database not found")
            return _unavailable(f"Database is not ready: {exc}")
        except Busy as exc:
            return _unavailable(str(exc))
        except TableLookupError as exc:  # found, but it cannot be prepared for replication
            return json_response(400, {"root_table": [str(exc)]})
        except OSError as exc:  # reading the shape's files (too many open files, say)
            log.error("serving a shape of database %s failed: %s", tenant.id, exc)
            return _unavailable("the server cannot read the shape now: try again shortly")

    async def _get_shape(self, tenant: Tenant, request: Request, root_table: str,
                         retry: bool = True) -> Response:
        errors: Errors = {}
        offset, live = self._offset_params(request, errors)
        table = await self._table(tenant, root_table, errors)
        built = self._definition(table, request, errors) if table is not None else None
        if errors:
            return json_response(400, errors)
        assert offset is not None and built is not None and table is not None
        definition, where = built

        resolved = await self._resolve(tenant, definition, table, where, request.param("shape_id"))
        tenant.ensure_open()
        if isinstance(resolved, Response):
            return resolved
        shape = resolved
        if shape.storage_failing:  # serving the older, durable part would claim up-to-date
            return _unavailable("the shape's storage is failing: try again shortly")
        if not offset.is_before_all and not shape.storage.contains(offset):
            return self._must_refetch(shape, request, f"offset {offset} is not in the shape's log")
        if offset.is_before_all:
            try:
                await shape.wait_snapshot()
            except ShapeGone:
                tenant.ensure_open()
                if retry:  # deleted while its snapshot ran: serve a fresh one
                    return await self._get_shape(tenant, request, root_table, retry=False)
                return self._must_refetch(shape, request, shape.gone_reason or "")
            except Exception:  # noqa: BLE001 - snapshot failure
                tenant.ensure_open()
                return _unavailable("Failed creating or fetching the snapshot")
            tenant.ensure_open()
        if live:
            # Awaited here, not in a helper coroutine: one frame less per waiting request.
            deadline = asyncio.get_running_loop().time() + self.long_poll_timeout
            read = await shape.read_when_available(offset, deadline, self._is_stopping)
            if read is None:  # the shape went away while we waited: point at its successor
                tenant.ensure_open()
                successor = await tenant.get_or_create(definition, table)
                return self._must_refetch(successor, request, shape.gone_reason or "")
            return self._live_response(request, shape, *read)
        return self._catch_up(request, shape, offset)

    async def _resolve(self, tenant: Tenant, definition: ShapeDefinition, table: TableInfo,
                       where: CompiledWhere | None, shape_id: str | None) -> Shape | Response:
        if shape_id is None:
            return await tenant.get_or_create(definition, table, where)
        shape = tenant.find_shape(definition)
        if shape is not None and shape.id == shape_id:
            return shape
        if tenant.shape_by_id(shape_id) is not None:
            return json_response(400, {"message": MISMATCH})
        reason = tenant.removal_reason(shape_id) or UNKNOWN_SHAPE_ID
        shape = await tenant.get_or_create(definition, table, where)
        return self._must_refetch(shape, None, reason)

    @staticmethod
    def _must_refetch(shape: Shape, request: Request | None, reason: str) -> Response:
        """409 + must-refetch naming the current shape (and, answering a request for a
        known shape, a location to fetch it from)."""
        headers = {"content-type": JSON, "electric-shape-id": shape.id}
        if request is not None:
            headers["location"] = f"?shape_id={shape.id}&offset=-1"
        return json_response(409, must_refetch_body(reason), headers)

    @staticmethod
    def _base_headers(shape: Shape, chunk_end: LogOffset, up_to_date: bool) -> dict[str, str]:
        headers = {"content-type": JSON, "electric-shape-id": shape.id,
                   "electric-chunk-last-offset": str(chunk_end)}
        if up_to_date:
            headers["electric-chunk-up-to-date"] = ""
        return headers

    def _catch_up(self, request: Request, shape: Shape, offset: LogOffset) -> Response:
        storage = shape.storage
        chunk_end = storage.chunk_end(offset)
        up_to_date = chunk_end == storage.last_offset and not offset.is_before_all
        headers = self._base_headers(shape, chunk_end, up_to_date)
        headers["electric-schema"] = shape.schema_header
        tag = cache.etag(shape.id, str(offset), str(chunk_end))
        if cache.if_none_match(request.header_values("if-none-match"), tag):
            del headers["content-type"]
            return Response(304, headers)
        headers["etag"] = tag
        headers["cache-control"] = (
            cache.INITIAL_CACHE_CONTROL if offset.is_before_all else self.catch_up_cache_control
        )
        if offset.is_before_all:
            return Response(200, headers, JsonArrayBody(storage.read_with_snapshot(chunk_end)))
        length = storage.range_length(offset, chunk_end)
        if length <= PIECE_BYTES:
            return Response(200, headers, json_array(storage.read(offset, chunk_end), up_to_date))
        # A large chunk streams from the file in bounded pieces, its length known up front.
        headers["content-length"] = str(json_array_length(length, up_to_date))
        tail = b"," + UP_TO_DATE if up_to_date else b""
        return Response(200, headers, JsonArrayBody(storage.open_range(offset, chunk_end), tail))

    def _live_response(self, request: Request, shape: Shape, chunk_end: LogOffset,
                       items: bytes) -> Response:
        """200 with the new items (none: 204, the long-poll timed out), or 304."""
        up_to_date = not items or chunk_end == shape.storage.last_offset
        headers = self._base_headers(shape, chunk_end, up_to_date)
        if cache.if_none_match(request.header_values("if-none-match"),
                               cache.etag(shape.id, request.param("offset") or "", str(chunk_end))):
            del headers["content-type"]
            return Response(304, headers)
        headers["cache-control"] = cache.LIVE_CACHE_CONTROL
        headers["electric-next-cursor"] = cache.next_cursor(self.long_poll_timeout,
                                                            request.param("cursor"))
        if not items:
            del headers["content-type"]
            return Response(204, headers)
        return Response(200, headers, json_array(items, up_to_date))

    # -- DELETE /v1/shape/:root_table -------------------------------------------------
    async def delete_shape(self, request: Request, root_table: str) -> Response:
        if not self.allow_shape_deletion:
            return json_response(404, {"status": "Not found"})
        tenant = self.resolve_tenant(request)
        if isinstance(tenant, Response):
            return tenant
        errors: Errors = {}
        try:
            table = await self._table(tenant, root_table, errors)
        except NotReady as exc:
            return _unavailable(f"Database is not ready: {exc}")
        if table is None:
            return json_response(400, errors)
        shape_id = request.param("shape_id")
        if shape_id:
            shape = tenant.shape_by_id(shape_id)
        else:
            shape = tenant.find_shape(ShapeDefinition(table.schema, table.name, table.oid))
        if shape is not None:
            tenant.delete_shape(shape, "deleted through the API")
        return Response(202, {"content-type": JSON})


def _unavailable(message: str) -> Response:
    """503 for overload or a database that is not ready: the client should retry."""
    return json_response(503, {"message": message}, {"retry-after": str(RETRY_AFTER_S)})
