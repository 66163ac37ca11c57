"""A minimal Electric protocol client for tests: follows a shape's log like the TS client."""

from __future__ import annotations

import time

import httpx
import orjson


class ShapeFollower:
    """Materialises a shape by following its HTTP log (snapshot, catch-up, live)."""

    def __init__(self, base_url: str, table: str, params: dict | None = None) -> None:
        self.client = httpx.Client(base_url=base_url, timeout=60)
        self.table = table
        self.params = params or {}
        self.reset()

    def reset(self) -> None:
        self.offset = "-1"
        self.shape_id: str | None = None
        self.cursor: str | None = None
        self.up_to_date = False
        self.rows: dict[str, dict] = {}
        self.messages: list[dict] = []

    def request(self, live: bool = False) -> httpx.Response:
        params = dict(self.params, offset=self.offset)
        if self.shape_id:
            params["shape_id"] = self.shape_id
        if live:
            params["live"] = "true"
            params["cursor"] = self.cursor or ""
        response = self.client.get(f"/v1/shape/{self.table}", params=params)
        if response.status_code == 409:
            new_id = response.headers["electric-shape-id"]
            self.reset()
            self.shape_id = new_id
            return response
        assert response.status_code in (200, 204), (response.status_code, response.text)
        self.shape_id = response.headers["electric-shape-id"]
        self.offset = response.headers["electric-chunk-last-offset"]
        self.cursor = response.headers.get("electric-next-cursor", self.cursor)
        if response.status_code == 200:
            for message in orjson.loads(response.content):
                self.apply(message)
        return response

    def apply(self, message: dict) -> None:
        self.messages.append(message)
        headers = message["headers"]
        if "control" in headers:
            if headers["control"] == "up-to-date":
                self.up_to_date = True
            return
        key, op = message["key"], headers["operation"]
        if op == "insert":
            self.rows[key] = dict(message["value"])
        elif op == "update":
            assert key in self.rows, f"update for unknown row {key}"
            self.rows[key].update(message["value"])
        elif op == "delete":
            assert key in self.rows, f"delete of unknown row {key}"
            del self.rows[key]

    def sync(self, timeout: float = 20) -> dict[str, dict]:
        """Read until up-to-date (non-live), then return the rows."""
        self.up_to_date = False
        deadline = time.monotonic() + timeout
        while not self.up_to_date:
            assert time.monotonic() < deadline, "shape never became up-to-date"
            self.request()
        return self.rows

    def wait_for(self, predicate, timeout: float = 20) -> dict[str, dict]:
        """Long-poll until ``predicate(rows)`` holds."""
        deadline = time.monotonic() + timeout
        if not self.up_to_date:
            self.sync()
        while not predicate(self.rows):
            assert time.monotonic() < deadline, f"condition not reached; rows={self.rows}"
            self.request(live=True)
            if not self.up_to_date:
                self.sync()
        return self.rows


def table_rows(conn, table: str, key: str = "id") -> dict[str, dict]:
    """The table as Electric values: {'"public"."t"/"<key>"': {col: text}} via output functions."""
    cur = conn.execute(f"SELECT * FROM {table} LIMIT 0")
    cols = [d.name for d in cur.description]
    select = ", ".join(f'CASE WHEN "{c}" IS NULL THEN NULL ELSE concat("{c}") END' for c in cols)
    result = {}
    for row in conn.execute(f"SELECT {select} FROM {table}").fetchall():
        values = dict(zip(cols, row, strict=True))
        k = values[key].replace("/", "//")
        result[f'"public"."{table}"/"{k}"'] = values
    return result
