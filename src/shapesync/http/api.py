"""The shape protocol, independent of the web framework: Request in, Response out."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path

from shapesync.http import cache
from shapesync.http.identifiers import IdentifierError, parse_relation
from shapesync.http.messages import JSON, Request, Response, json_response
from shapesync.offsets import BEFORE_ALL, LogOffset, parse_offset
from shapesync.pg.catalog import TableLookupError
from shapesync.shapes.params import build_definition
from shapesync.shapes.shape import Shape, ShapeDefinition, ShapeGone
from shapesync.tables import TableInfo
from shapesync.tenant import NotReady, Tenant
from shapesync.where import CompiledWhere

log = logging.getLogger(__name__)

UP_TO_DATE = b'{"headers":{"control":"up-to-date"}}'
UNKNOWN_SHAPE_ID = "no shape with this shape_id exists (it was removed, or never existed)"
MULTIPLE_DATABASES = (
    "Database ID was not provided and there are multiple databases. Please specify a "
    "database ID using the `database_id` query parameter."
)
MISMATCH = (
    "The specified shape definition and ID do not match. Please ensure the shape definition "
    "is correct or omit the shape ID from the request to obtain a new one."
)
_READ_BLOCK = 1 << 20


class ShapeApi:
    def __init__(self, tenants: dict[str, Tenant], *, cache_max_age: int = 60,
                 cache_stale_age: int = 300, long_poll_timeout: float = 20.0,
                 allow_shape_deletion: bool = False) -> None:
        self.tenants = tenants
        self.catch_up_cache_control = cache.catch_up_cache_control(cache_max_age, cache_stale_age)
        self.long_poll_timeout = long_poll_timeout
        self.allow_shape_deletion = allow_shape_deletion
        self.stopping = False

    def begin_shutdown(self) -> None:
        """Answer every waiting long-poll now (204) so shutdown does not wait for them."""
        self.stopping = True
        for tenant in self.tenants.values():
            for shape in list(tenant.registry.by_id.values()):
                shape.notify()

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
        status = 200 if tenant.status == "active" else 503
        return Response(status, {"content-type": "application/json",
                                 "cache-control": "no-cache, no-store, must-revalidate"},
                        b'{"status":"%s"}' % tenant.status.encode())

    # -- validation -------------------------------------------------------------------
    async def _definition(
        self, tenant: Tenant, root_table: str, request: Request, errors: dict[str, list[str]],
        *, shape_params: bool = True,
    ) -> tuple[ShapeDefinition | None, TableInfo | None, CompiledWhere | None]:
        """Validate the table, ``where`` and ``columns``; messages go to ``errors``."""
        try:
            schema, name = parse_relation(root_table)
            table = await tenant.table(schema, name)
        except (IdentifierError, TableLookupError) as exc:
            errors.setdefault("root_table", []).append(str(exc))
            return None, None, None
        if not shape_params:
            return ShapeDefinition(table.schema, table.name, table.oid), table, None
        built = build_definition(table, request.param("where"), request.param("columns"), errors)
        if built is None:
            return None, table, None
        return built[0], table, built[1]

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
            return json_response(503, {"message": f"Database is not ready: {exc}"})

    async def _get_shape(self, tenant: Tenant, request: Request, root_table: str,
                         retry: bool = True) -> Response:
        errors: dict[str, list[str]] = {}
        raw_offset = request.param("offset")
        offset: LogOffset | None = None
        if raw_offset is None:
            errors["offset"] = ["can't be blank"]
        else:
            try:
                offset = parse_offset(raw_offset)
            except ValueError:
                errors["offset"] = ["has invalid format"]
        shape_id = request.param("shape_id")
        live_values = request.query.get("live")
        live = bool(live_values) and live_values[-1] != "false"
        if offset is not None:
            if not offset.is_before_all and shape_id is None:
                errors["shape_id"] = ["can't be blank when offset != -1"]
            if offset.is_before_all and live:
                errors["live"] = ["can't be true when offset == -1"]
        definition, table, where = await self._definition(tenant, root_table, request, errors)
        if errors:
            return json_response(400, errors)
        assert offset is not None and definition is not None and table is not None

        resolved = await self._resolve(tenant, definition, table, where, shape_id)
        tenant.ensure_open()
        if isinstance(resolved, Response):
            return resolved
        shape = resolved
        if not offset.is_before_all and not shape.log.contains(offset):
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
                return json_response(500, {"error": "Failed creating or fetching the snapshot"})
            tenant.ensure_open()
        if live:
            response = await self._live(request, shape, offset)
            if response is None:  # the shape went away while we waited: point at its successor
                tenant.ensure_open()
                successor = await tenant.get_or_create(definition, table)
                return self._must_refetch(successor, request, shape.gone_reason or "")
            return response
        return self._catch_up(request, shape, offset)

    async def _resolve(self, tenant: Tenant, definition: ShapeDefinition, table: TableInfo,
                       where: CompiledWhere | None, shape_id: str | None) -> Shape | Response:
        if shape_id is None:
            return await tenant.get_or_create(definition, table, where)
        shape = tenant.registry.get(definition)
        if shape is not None and shape.id == shape_id:
            return shape
        if shape_id in tenant.registry.by_id:
            return json_response(400, {"message": MISMATCH})
        reason = tenant.registry.removed.get(shape_id, UNKNOWN_SHAPE_ID)
        shape = await tenant.get_or_create(definition, table, where)
        return self._must_refetch(shape, None, reason)

    def _must_refetch(self, shape: Shape, request: Request | None, reason: str) -> Response:
        """409 + must-refetch naming the current shape. ``reason`` is an extra field of the
        message for people reading responses; clients only look at the control header."""
        headers = {"content-type": JSON, "electric-shape-id": shape.id}
        if request is not None:
            headers["location"] = f"?shape_id={shape.id}&offset=-1"
        body = [{"headers": {"control": "must-refetch"}, "reason": reason or "the shape was removed"}]
        return json_response(409, body, headers)

    def _base_headers(self, shape: Shape, chunk_end: LogOffset, up_to_date: bool) -> dict[str, str]:
        headers = {"content-type": JSON, "electric-shape-id": shape.id,
                   "electric-chunk-last-offset": str(chunk_end)}
        if up_to_date:
            headers["electric-chunk-up-to-date"] = ""
        return headers

    def _catch_up(self, request: Request, shape: Shape, offset: LogOffset) -> Response:
        chunk_end = shape.log.chunk_end(offset)
        up_to_date = chunk_end == shape.log.last_offset and not offset.is_before_all
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
        log_bytes = shape.log.read(offset, chunk_end)
        if offset.is_before_all:
            return Response(200, headers, _SnapshotBody(shape.snapshot_path, log_bytes))
        return Response(200, headers, _json_array(log_bytes, up_to_date))

    async def _live(self, request: Request, shape: Shape, offset: LogOffset) -> Response | None:
        """Answer as soon as the log holds something after ``offset``, or 204 at the timeout.

        Written for fan-out: a change wakes every waiter in one loop iteration, and each
        builds and sends its response in that same step (no helper task per wait), so the
        first bytes leave at once.
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.long_poll_timeout
        changed = shape.change_event()  # registered before reading: no lost wake-up
        chunk_end = shape.log.chunk_end(offset)
        data = shape.log.read(offset, chunk_end)
        while not data:
            if self.stopping or loop.time() >= deadline:
                return self._live_response(request, shape, 204, chunk_end, b"")
            try:
                async with asyncio.timeout_at(deadline):
                    await changed.wait()
            except TimeoutError:
                continue
            if shape.gone_reason or shape.log.closed:
                return None
            changed = shape.change_event()
            chunk_end = shape.log.chunk_end(offset)
            data = shape.log.read(offset, chunk_end)
        up_to_date = chunk_end == shape.log.last_offset
        return self._live_response(request, shape, 200, chunk_end, _json_array(data, up_to_date),
                                   up_to_date)

    def _live_response(self, request: Request, shape: Shape, status: int, chunk_end: LogOffset,
                       body: bytes, up_to_date: bool = True) -> Response:
        headers = self._base_headers(shape, chunk_end, up_to_date)
        if cache.if_none_match(request.header_values("if-none-match"),
                               cache.etag(shape.id, request.param("offset") or "", str(chunk_end))):
            del headers["content-type"]
            return Response(304, headers)
        headers["cache-control"] = cache.LIVE_CACHE_CONTROL
        headers["electric-next-cursor"] = cache.next_cursor(self.long_poll_timeout,
                                                            request.param("cursor"))
        if status == 204:
            del headers["content-type"]
        return Response(status, headers, body)

    # -- DELETE /v1/shape/:root_table -------------------------------------------------
    async def delete_shape(self, request: Request, root_table: str) -> Response:
        if not self.allow_shape_deletion:
            return json_response(404, {"status": "Not found"})
        tenant = self.resolve_tenant(request)
        if isinstance(tenant, Response):
            return tenant
        errors: dict[str, list[str]] = {}
        try:
            definition, _, _ = await self._definition(tenant, root_table, request, errors,
                                                      shape_params=False)
        except NotReady as exc:
            return json_response(503, {"message": f"Database is not ready: {exc}"})
        if errors:
            return json_response(400, errors)
        shape_id = request.param("shape_id")
        shape = tenant.registry.by_id.get(shape_id) if shape_id else tenant.registry.get(definition)
        if shape is not None:
            tenant.delete_shape(shape, "deleted through the API")
        return Response(202, {"content-type": JSON})


def _json_array(log_bytes: bytes, up_to_date: bool) -> bytes:
    """Log items (``,{...},{...}``) as a JSON array, ending with up-to-date if asked."""
    tail = log_bytes + b"," + UP_TO_DATE if up_to_date else log_bytes
    return b"[" + tail[1:] + b"]"


class _SnapshotBody:
    """``[`` + snapshot items + log items ``]``, streamed from the stored bytes.

    The snapshot is opened when the response is built, in step with the log read, so a
    shape deleted while its body streams stays readable (unlinked) to the end; ``aclose``
    releases it whether or not the body was ever iterated.
    """

    def __init__(self, path: Path, log_tail: bytes) -> None:
        self.fd: int | None = os.open(path, os.O_RDONLY)
        self.log_tail = log_tail

    def __aiter__(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        first = True
        while self.fd is not None and (block := os.read(self.fd, _READ_BLOCK)):
            yield (b"[" + block[1:]) if first else block
            first = False
        if first:
            yield b"[" + self.log_tail[1:] + b"]"
        else:
            yield self.log_tail + b"]"

    async def aclose(self) -> None:
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None


__all__ = ["ShapeApi", "BEFORE_ALL"]
