"""Many shapes: a client that makes a new shape per request must not exhaust the server's
file descriptors, and ELECTRIC_MAX_SHAPES bounds how many are kept."""

from __future__ import annotations

import os
import resource
import time
from concurrent.futures import ThreadPoolExecutor

import httpx

from tests.helpers import ShapeFollower, table_rows

FD_LIMIT = 128


def make_shape(url: str, where: str) -> httpx.Response:
    """offset=-1 for a new shape, retried while the server says 503 (busy)."""
    for _ in range(200):
        r = httpx.get(f"{url}/v1/shape/items", params={"offset": "-1", "where": where},
                      timeout=30)
        if r.status_code != 503:
            return r
        time.sleep(0.05)
    raise AssertionError(f"still 503: {r.text}")


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_hundreds_of_shapes_under_a_low_descriptor_limit(server_factory, db):
    """Before, each shape held three descriptors: ~40 shapes exhausted a limit of 128."""
    db.execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
    db.execute("INSERT INTO items SELECT g, 'row ' || g FROM generate_series(0, 499) g")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, hard))  # inherited by the server
    try:
        server = server_factory().start()
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    limits = open(f"/proc/{server.proc.pid}/limits").read().splitlines()
    assert [line.split()[3] for line in limits if line.startswith("Max open files")] == [
        str(FD_LIMIT)]
    with ThreadPoolExecutor(4) as pool:
        statuses = list(pool.map(lambda i: make_shape(server.url, f"id = {i}").status_code,
                                 range(400)))
    assert statuses == [200] * 400
    assert open_fds(server.proc.pid) < 40
    follower = ShapeFollower(server.url, "items", {"where": "id = 7"})
    follower.sync()
    db.execute("UPDATE items SET v = 'changed' WHERE id = 7")
    expected = {k: v for k, v in table_rows(db, "items").items() if v["id"] == "7"}
    assert follower.wait_for(lambda rows: rows == expected) == expected
    server.stop()
    resource.setrlimit(resource.RLIMIT_NOFILE, (FD_LIMIT, hard))
    try:
        server.start()  # restores all 400 shapes under the same limit
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    r = httpx.get(f"{server.url}/v1/shape/items", timeout=30, params={
        "offset": follower.offset, "shape_id": follower.shape_id, "where": "id = 7"})
    assert r.status_code == 200, r.text
    assert "restored shape" in server.logs() and "Too many open files" not in server.logs()


def test_max_shapes_drops_the_least_recently_used(server_factory, db):
    db.execute("CREATE TABLE items (id int PRIMARY KEY, v text)")
    db.execute("INSERT INTO items SELECT g, 'row ' || g FROM generate_series(0, 9) g")
    server = server_factory({"ELECTRIC_MAX_SHAPES": "3"}).start()
    ids = {}
    for i in range(3):
        ids[i] = make_shape(server.url, f"id = {i}").headers["electric-shape-id"]
    # shape 0 is used again, so shape 1 is now the least recently used
    assert make_shape(server.url, "id = 0").headers["electric-shape-id"] == ids[0]
    ids[3] = make_shape(server.url, "id = 3").headers["electric-shape-id"]

    def resume(i: int) -> httpx.Response:
        return httpx.get(f"{server.url}/v1/shape/items", timeout=30, params={
            "offset": "0_0", "shape_id": ids[i], "where": f"id = {i}"})

    for i in (0, 2, 3):
        assert resume(i).status_code == 200, i
    gone = resume(1)
    assert gone.status_code == 409
    assert "least recently used" in gone.json()[0]["reason"]
    assert "ELECTRIC_MAX_SHAPES" in server.logs()
    assert len(list((server.storage / "shapes" / "test_db").iterdir())) <= 3
