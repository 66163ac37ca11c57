"""ShapeApi, the framework-free protocol core: which response each request gets.

The database is a small in-test double of the ``Tenant`` protocol; shapes are real
``Shape`` objects in ``tmp_path`` whose snapshot is written by hand.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
import pytest

from shapesync.http import cache
from shapesync.http.api import MISMATCH, MULTIPLE_DATABASES, UNKNOWN_SHAPE_ID, ShapeApi
from shapesync.http.messages import Request, Response
from shapesync.pg.catalog import TableLookupError
from shapesync.shapes.definition import ShapeDefinition
from shapesync.shapes.shape import Shape
from shapesync.shapes.visibility import SnapshotVisibility
from shapesync.tables import ColumnInfo, TableInfo
from shapesync.tenants.tenant import NotReady

TABLE = TableInfo(16384, "public", "items", (
    ColumnInfo("id", 23, "int4", None, -1, 0, True, 0),
    ColumnInfo("title", 25, "text", None, -1, 0, False, None),
))
SNAPSHOT_ITEMS = [{"key": '"public"."items"/"1"', "value": {"id": "1", "title": "a"},
                   "headers": {"operation": "insert", "relation": ["public", "items"]},
                   "offset": "0_0"}]
LOG_ITEM = b'{"k":1}'
UP_TO_DATE = {"headers": {"control": "up-to-date"}}


class FakeTenant:
    """The ``Tenant`` protocol over a dict of shapes, with one table: public.items."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.id = "db"
        self.status = "active"
        self.removed = False
        self.closed = False
        self.not_ready: str | None = None  # set: table() raises NotReady
        self.shapes: dict[str, Shape] = {}  # by definition key
        self.removals: dict[str, str] = {}
        self.woken = 0

    def ensure_open(self) -> None:
        if self.closed:
            raise NotReady("the database was removed" if self.removed else "shutting down")

    async def table(self, schema: str | None, name: str) -> TableInfo:
        if self.not_ready is not None:
            raise NotReady(self.not_ready)
        if schema in (None, "public") and name == "items":
            return TABLE
        raise TableLookupError("table not found")

    def find_shape(self, definition: ShapeDefinition) -> Shape | None:
        return self.shapes.get(definition.key)

    def shape_by_id(self, shape_id: str) -> Shape | None:
        return next((s for s in self.shapes.values() if s.id == shape_id), None)

    def removal_reason(self, shape_id: str) -> str | None:
        return self.removals.get(shape_id)

    async def get_or_create(self, definition: ShapeDefinition, table: TableInfo,
                            where=None) -> Shape:
        if (shape := self.find_shape(definition)) is not None:
            return shape
        shape_id = definition.new_shape_id()
        while shape_id in self.removals or self.shape_by_id(shape_id):
            shape_id = f"{shape_id}x"
        shape = Shape(shape_id, definition, table, self.root / shape_id, 10_000, where)
        shape.storage.snapshot_path.write_bytes(
            b"".join(b"," + orjson.dumps(item) for item in SNAPSHOT_ITEMS))
        shape.set_visibility(SnapshotVisibility(1, 1, frozenset(), 1))
        shape.mark_snapshot_complete()
        self.shapes[definition.key] = shape
        return shape

    def delete_shape(self, shape: Shape, reason: str) -> None:
        del self.shapes[shape.definition.key]
        self.removals[shape.id] = reason
        shape.invalidate(reason)
        shape.storage.delete()

    def wake_all(self) -> None:
        self.woken += 1
        for shape in self.shapes.values():
            shape.notify()


# -- helpers ------------------------------------------------------------------------------


@pytest.fixture
def tenant(tmp_path) -> FakeTenant:
    return FakeTenant(tmp_path)


def _api(*tenants: FakeTenant, **options) -> ShapeApi:
    options.setdefault("long_poll_timeout", 0.05)
    return ShapeApi({f"db{i}": t for i, t in enumerate(tenants)}, **options)


def _request(method: str = "GET", headers: dict[str, str] | None = None, **params) -> Request:
    query = {k: [v] for k, v in params.items() if v is not None}
    return Request(method, ["v1", "shape", "items"], query,
                   {k: [v] for k, v in (headers or {}).items()})


async def _body(response: Response) -> bytes:
    """The whole body; a streamed one is always closed."""
    body = response.body
    if isinstance(body, bytes):
        return body
    try:
        return b"".join([piece async for piece in body])
    finally:
        await body.aclose()


async def _get(api: ShapeApi, root_table: str = "items", headers=None, **params):
    """(response, decoded JSON body or None)."""
    response = await api.get_shape(_request(headers=headers, **params), root_table)
    body = await _body(response)
    return response, (orjson.loads(body) if body else None)


def _append(shape: Shape, tx: int, *ops: int) -> None:
    """A durable, published transaction in the shape's log, and its waiters woken."""
    storage = shape.storage
    storage.append_transaction(tx, [(op, LOG_ITEM) for op in ops])
    storage.write_pending()
    storage.sync()
    storage.publish()
    shape.notify()


async def _initial(api: ShapeApi, tenant: FakeTenant) -> tuple[Shape, Response]:
    response, _ = await _get(api, offset="-1")
    assert response.status == 200
    return tenant.shapes[ShapeDefinition("public", "items", TABLE.oid).key], response


# -- 400: invalid parameters -------------------------------------------------------------


@pytest.mark.parametrize(("params", "expected"), [
    ({}, {"offset": ["can't be blank"]}),
    ({"offset": " "}, {"offset": ["can't be blank"]}),
    ({"offset": "abc"}, {"offset": ["has invalid format"]}),
    ({"offset": "-2"}, {"offset": ["has invalid format"]}),
    ({"offset": "5_0"}, {"shape_id": ["can't be blank when offset != -1"]}),
    ({"offset": "-1", "live": "true"}, {"live": ["can't be true when offset == -1"]}),
])
def test_invalid_offset_parameters_are_400(tenant, params, expected):
    response, body = asyncio.run(_get(_api(tenant), **params))
    assert response.status == 400
    assert body == expected
    assert tenant.shapes == {}


def test_live_false_with_initial_offset_is_allowed(tenant):
    response, _ = asyncio.run(_get(_api(tenant), offset="-1", live="false"))
    assert response.status == 200


def test_bad_root_table_identifier_is_400(tenant):
    response, body = asyncio.run(_get(_api(tenant), root_table="a.b.c", offset="-1"))
    assert response.status == 400
    assert list(body) == ["root_table"]
    assert "too many delimiters" in body["root_table"][0]


def test_unknown_table_is_400(tenant):
    response, body = asyncio.run(_get(_api(tenant), root_table="nope", offset="-1"))
    assert response.status == 400
    assert body == {"root_table": ["table not found"]}


def test_bad_columns_are_400(tenant):
    api = _api(tenant)
    response, body = asyncio.run(_get(api, offset="-1", columns="title"))
    assert response.status == 400
    assert list(body) == ["columns"] and "primary key" in body["columns"][0]
    response, body = asyncio.run(_get(api, offset="-1", columns='id,"'))
    assert response.status == 400 and list(body) == ["columns"]


def test_bad_where_is_400(tenant):
    response, body = asyncio.run(_get(_api(tenant), offset="-1", where="nope = 1"))
    assert response.status == 400
    assert list(body) == ["where"]


def test_several_errors_come_in_the_documented_order(tenant):
    api = _api(tenant)
    _, body = asyncio.run(_get(api, offset="5_0", columns="nope", where="nope ="))
    assert list(body) == ["shape_id", "columns", "where"]
    _, body = asyncio.run(_get(api, offset="-1", live="true", columns="id,id", where="x"))
    assert list(body) == ["live", "columns", "where"]
    _, body = asyncio.run(_get(api, root_table='"', where="x"))
    assert list(body) == ["offset", "root_table"]


# -- databases ----------------------------------------------------------------------------


def test_multiple_databases_need_a_database_id(tmp_path):
    api = _api(FakeTenant(tmp_path / "a"), FakeTenant(tmp_path / "b"))
    response, body = asyncio.run(_get(api, offset="-1"))
    assert response.status == 400
    assert body == MULTIPLE_DATABASES


def test_database_id_selects_the_database(tmp_path):
    first, second = FakeTenant(tmp_path / "a"), FakeTenant(tmp_path / "b")
    api = _api(first, second)
    response, _ = asyncio.run(_get(api, offset="-1", database_id="db1"))
    assert response.status == 200
    assert first.shapes == {} and len(second.shapes) == 1


def test_unknown_database_id_is_404(tenant):
    response, body = asyncio.run(_get(_api(tenant), offset="-1", database_id="nope"))
    assert response.status == 404
    assert body == "Database not found"


def test_no_databases_is_404():
    response, _ = asyncio.run(_get(_api(), offset="-1"))
    assert response.status == 404


# -- the initial request (offset=-1) -------------------------------------------------------


def test_initial_request_headers(tenant):
    async def scenario():
        api = _api(tenant)
        response, body = await _get(api, offset="-1")
        return response, body, next(iter(tenant.shapes.values()))

    response, body, shape = asyncio.run(scenario())
    assert response.status == 200
    headers = response.headers
    assert headers["electric-shape-id"] == shape.id
    assert headers["electric-chunk-last-offset"] == "0_0"
    assert orjson.loads(headers["electric-schema"]) == orjson.loads(TABLE.schema_header())
    assert headers["etag"] == f"{shape.id}:-1:0_0"
    assert headers["cache-control"] == cache.INITIAL_CACHE_CONTROL
    assert "electric-chunk-up-to-date" not in headers
    assert body == SNAPSHOT_ITEMS  # no up-to-date message on the initial response


def test_initial_request_streams_snapshot_then_log(tenant):
    async def scenario():
        api = _api(tenant)
        shape, _ = await _initial(api, tenant)
        _append(shape, 100, 0, 2)
        response = await api.get_shape(_request(offset="-1"), "items")
        assert not isinstance(response.body, bytes)  # streamed from the files
        return response, orjson.loads(await _body(response))

    response, body = asyncio.run(scenario())
    assert response.headers["electric-chunk-last-offset"] == "100_2"
    assert body == SNAPSHOT_ITEMS + [{"k": 1}, {"k": 1}]


def test_same_definition_gets_the_same_shape(tenant):
    async def scenario():
        api = _api(tenant)
        first, _ = await _get(api, offset="-1")
        second, _ = await _get(api, offset="-1")
        other, _ = await _get(api, offset="-1", where="id > 1")
        return first, second, other

    first, second, other = asyncio.run(scenario())
    assert first.headers["electric-shape-id"] == second.headers["electric-shape-id"]
    assert other.headers["electric-shape-id"] != first.headers["electric-shape-id"]


# -- catch-up ---------------------------------------------------------------------------------


def test_catch_up_ends_with_up_to_date(tenant):
    async def scenario():
        api = _api(tenant)
        shape, initial = await _initial(api, tenant)
        _append(shape, 100, 0, 2)
        response, body = await _get(api, offset=initial.headers["electric-chunk-last-offset"],
                                    shape_id=shape.id)
        return shape, response, body

    shape, response, body = asyncio.run(scenario())
    assert response.status == 200
    assert body == [{"k": 1}, {"k": 1}, UP_TO_DATE]
    assert response.headers["electric-chunk-last-offset"] == "100_2"
    assert "electric-chunk-up-to-date" in response.headers
    assert response.headers["etag"] == f"{shape.id}:0_0:100_2"
    assert response.headers["cache-control"] == "public, max-age=60, stale-while-revalidate=300"


def test_catch_up_at_the_end_of_the_log_is_just_up_to_date(tenant):
    async def scenario():
        api = _api(tenant)
        shape, _ = await _initial(api, tenant)
        _append(shape, 100, 0)
        return await _get(api, offset="100_0", shape_id=shape.id)

    response, body = asyncio.run(scenario())
    assert response.status == 200
    assert body == [UP_TO_DATE]


def test_if_none_match_is_304(tenant):
    async def scenario():
        api = _api(tenant)
        shape, initial = await _initial(api, tenant)
        again, body = await _get(api, headers={"if-none-match": f'"{initial.headers["etag"]}"'},
                                 offset="-1")
        return initial, again, body

    initial, again, body = asyncio.run(scenario())
    assert again.status == 304
    assert body is None
    assert "content-type" not in again.headers
    assert again.headers["electric-shape-id"] == initial.headers["electric-shape-id"]


def test_if_none_match_with_another_etag_is_200(tenant):
    response, _ = asyncio.run(_get(_api(tenant), headers={"if-none-match": '"x:-1:0_0"'},
                                   offset="-1"))
    assert response.status == 200


# -- shape ids ---------------------------------------------------------------------------------


def test_unknown_shape_id_is_409_naming_the_current_shape(tenant):
    async def scenario():
        api = _api(tenant)
        return await _get(api, offset="0_0", shape_id="123-456")

    response, body = asyncio.run(scenario())
    shape = next(iter(tenant.shapes.values()))
    assert response.status == 409
    assert response.headers["electric-shape-id"] == shape.id
    assert body == [{"headers": {"control": "must-refetch"}, "reason": UNKNOWN_SHAPE_ID}]


def test_removed_shape_id_is_409_with_the_removal_reason(tenant):
    async def scenario():
        api = _api(tenant)
        old, _ = await _initial(api, tenant)
        tenant.delete_shape(old, "the table was truncated")
        response, body = await _get(api, offset="0_0", shape_id=old.id)
        return old, response, body

    old, response, body = asyncio.run(scenario())
    assert response.status == 409
    assert response.headers["electric-shape-id"] != old.id
    assert body[0]["reason"] == "the table was truncated"


def test_shape_id_of_another_definition_is_400_mismatch(tenant):
    async def scenario():
        api = _api(tenant)
        other, _ = await _get(api, offset="-1", where="id > 1")
        return await _get(api, offset="0_0", shape_id=other.headers["electric-shape-id"])

    response, body = asyncio.run(scenario())
    assert response.status == 400
    assert body == {"message": MISMATCH}


def test_offset_not_in_the_log_is_409(tenant):
    async def scenario():
        api = _api(tenant)
        shape, _ = await _initial(api, tenant)
        _append(shape, 100, 0)
        response, body = await _get(api, offset="50_0", shape_id=shape.id)
        return shape, response, body

    shape, response, body = asyncio.run(scenario())
    assert response.status == 409
    assert response.headers["electric-shape-id"] == shape.id
    assert response.headers["location"] == f"?shape_id={shape.id}&offset=-1"
    assert body[0]["headers"] == {"control": "must-refetch"}
    assert "50_0" in body[0]["reason"]


# -- live -----------------------------------------------------------------------------------


def test_live_request_times_out_with_204(tenant):
    async def scenario():
        api = _api(tenant, long_poll_timeout=0.05)
        shape, _ = await _initial(api, tenant)
        return await _get(api, offset="0_0", shape_id=shape.id, live="true")

    response, body = asyncio.run(scenario())
    assert response.status == 204
    assert body is None
    assert response.headers["electric-chunk-last-offset"] == "0_0"
    assert "electric-chunk-up-to-date" in response.headers
    assert response.headers["cache-control"] == cache.LIVE_CACHE_CONTROL
    assert "electric-next-cursor" in response.headers
    assert "content-type" not in response.headers


def test_live_request_answers_when_data_arrives(tenant):
    async def scenario():
        api = _api(tenant, long_poll_timeout=5)
        shape, _ = await _initial(api, tenant)
        waiting = asyncio.create_task(_get(api, offset="0_0", shape_id=shape.id, live="true"))
        await asyncio.sleep(0.01)
        assert not waiting.done()
        _append(shape, 100, 0)
        return await asyncio.wait_for(waiting, 1)

    response, body = asyncio.run(scenario())
    assert response.status == 200
    assert body == [{"k": 1}, UP_TO_DATE]
    assert response.headers["electric-chunk-last-offset"] == "100_0"
    assert response.headers["cache-control"] == cache.LIVE_CACHE_CONTROL


def test_live_request_with_data_already_there_answers_at_once(tenant):
    async def scenario():
        api = _api(tenant, long_poll_timeout=5)
        shape, _ = await _initial(api, tenant)
        _append(shape, 100, 0)
        return await asyncio.wait_for(_get(api, offset="0_0", shape_id=shape.id, live="true"), 1)

    response, body = asyncio.run(scenario())
    assert response.status == 200
    assert body == [{"k": 1}, UP_TO_DATE]


def test_begin_shutdown_answers_waiting_live_requests_at_once(tenant):
    async def scenario():
        api = _api(tenant, long_poll_timeout=30)
        shape, _ = await _initial(api, tenant)
        waiting = asyncio.create_task(_get(api, offset="0_0", shape_id=shape.id, live="true"))
        await asyncio.sleep(0.01)
        api.begin_shutdown()
        return await asyncio.wait_for(waiting, 1)

    response, _ = asyncio.run(scenario())
    assert response.status == 204
    assert tenant.woken == 1


def test_shape_removed_while_waiting_is_409_naming_its_successor(tenant):
    async def scenario():
        api = _api(tenant, long_poll_timeout=30)
        shape, _ = await _initial(api, tenant)
        waiting = asyncio.create_task(_get(api, offset="0_0", shape_id=shape.id, live="true"))
        await asyncio.sleep(0.01)
        tenant.delete_shape(shape, "the table's schema changed")
        response, body = await asyncio.wait_for(waiting, 1)
        return shape, response, body

    old, response, body = asyncio.run(scenario())
    successor = next(iter(tenant.shapes.values()))
    assert successor.id != old.id
    assert response.status == 409
    assert response.headers["electric-shape-id"] == successor.id
    assert response.headers["location"] == f"?shape_id={successor.id}&offset=-1"
    assert body == [{"headers": {"control": "must-refetch"},
                     "reason": "the table's schema changed"}]


# -- DELETE ---------------------------------------------------------------------------------


def test_delete_is_404_when_disabled(tenant):
    async def scenario():
        api = _api(tenant)
        await _initial(api, tenant)
        return await api.delete_shape(_request("DELETE"), "items")

    response = asyncio.run(scenario())
    assert response.status == 404
    assert orjson.loads(response.body) == {"status": "Not found"}
    assert len(tenant.shapes) == 1


def test_delete_removes_the_tables_shape(tenant):
    async def scenario():
        api = _api(tenant, allow_shape_deletion=True)
        shape, _ = await _initial(api, tenant)
        return shape, await api.delete_shape(_request("DELETE"), "items")

    shape, response = asyncio.run(scenario())
    assert response.status == 202
    assert tenant.shapes == {}
    assert tenant.removals == {shape.id: "deleted through the API"}
    assert not shape.storage.directory.exists()


def test_delete_by_shape_id(tenant):
    async def scenario():
        api = _api(tenant, allow_shape_deletion=True)
        await _initial(api, tenant)
        other, _ = await _get(api, offset="-1", where="id > 1")
        other_id = other.headers["electric-shape-id"]
        return other_id, await api.delete_shape(_request("DELETE", shape_id=other_id), "items")

    other_id, response = asyncio.run(scenario())
    assert response.status == 202
    assert other_id in tenant.removals
    assert len(tenant.shapes) == 1  # the table's other shape stays


def test_delete_of_an_unknown_table_is_400(tenant):
    api = _api(tenant, allow_shape_deletion=True)
    response = asyncio.run(api.delete_shape(_request("DELETE"), "nope"))
    assert response.status == 400
    assert orjson.loads(response.body) == {"root_table": ["table not found"]}


# -- health and readiness ------------------------------------------------------------------


@pytest.mark.parametrize(("status", "code"), [("active", 200), ("starting", 503),
                                              ("stopping", 503)])
def test_health_follows_the_database_status(tenant, status, code):
    tenant.status = status
    response = asyncio.run(_api(tenant).health(Request("GET", ["v1", "health"], {}, {})))
    assert response.status == code
    assert orjson.loads(response.body) == {"status": status}


def test_health_of_an_unknown_database_is_404(tenant):
    request = Request("GET", ["v1", "health"], {"database_id": ["nope"]}, {})
    assert asyncio.run(_api(tenant).health(request)).status == 404


def test_database_not_ready_is_503(tenant):
    tenant.not_ready = "database is not connected yet"
    response, body = asyncio.run(_get(_api(tenant), offset="-1"))
    assert response.status == 503
    assert body == {"message": "Database is not ready: database is not connected yet"}


def test_removed_database_is_404(tenant):
    tenant.not_ready = "the database was removed"
    tenant.removed = True
    response, body = asyncio.run(_get(_api(tenant), offset="-1"))
    assert response.status == 404
    assert body == "Database not found"


def test_database_closed_during_a_request_is_503(tenant):
    tenant.closed = True
    response, body = asyncio.run(_get(_api(tenant), offset="-1"))
    assert response.status == 503
    assert body == {"message": "Database is not ready: shutting down"}


def test_delete_when_the_database_is_not_ready_is_503(tenant):
    tenant.not_ready = "database is not connected yet"
    api = _api(tenant, allow_shape_deletion=True)
    response = asyncio.run(api.delete_shape(_request("DELETE"), "items"))
    assert response.status == 503

