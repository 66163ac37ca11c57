"""Composition root: settings -> tenants -> HTTP app, with startup and shutdown."""

from __future__ import annotations

import logging
import uuid

from shapesync.config import Settings
from shapesync.http.api import ShapeApi
from shapesync.http.asgi import App
from shapesync.tenant import Tenant

log = logging.getLogger(__name__)


def default_database_id(settings: Settings) -> str:
    """DATABASE_ID, else an id generated once and kept in the storage directory, so that
    shapes survive restarts (the reference draws a new random id on every start)."""
    if settings.database_id:
        return settings.database_id
    path = settings.storage_dir / "state" / "default_database_id"
    try:
        return path.read_text().strip()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        new_id = str(uuid.uuid4())
        path.write_text(new_id)
        return new_id


class Service:
    """Everything one server process runs; ``start``/``stop`` bracket its life."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.tenants: dict[str, Tenant] = {}
        self.api = ShapeApi(
            self.tenants,
            cache_max_age=settings.cache_max_age,
            cache_stale_age=settings.cache_stale_age,
            long_poll_timeout=settings.long_poll_timeout,
            allow_shape_deletion=settings.allow_shape_deletion,
        )
        self.app = App(self.api)

    async def start(self) -> None:
        if self.settings.database_url:
            database_id = default_database_id(self.settings)
            tenant = Tenant(database_id, self.settings.database_url, self.settings)
            self.tenants[database_id] = tenant
            await tenant.start()

    async def stop(self) -> None:
        for tenant in list(self.tenants.values()):
            await tenant.stop()
