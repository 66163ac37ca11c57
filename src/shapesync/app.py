"""Composition root: settings -> databases -> HTTP application. Nothing else lives here."""

from __future__ import annotations

from shapesync.config import Settings
from shapesync.http.admin import AdminApi
from shapesync.http.api import ShapeApi
from shapesync.http.asgi import App
from shapesync.http.auth import Auth
from shapesync.tenants.service import TenantService


class Service:
    """One server: its databases (``tenants``), the shape API and the ASGI app over both;
    ``start``/``stop`` bracket its life."""

    def __init__(self, settings: Settings) -> None:
        self.databases = TenantService(settings)
        self.tenants = self.databases.tenants
        self.api = ShapeApi(
            self.tenants,
            cache_max_age=settings.cache_max_age,
            cache_stale_age=settings.cache_stale_age,
            long_poll_timeout=settings.long_poll_timeout,
            allow_shape_deletion=settings.allow_shape_deletion,
        )
        self.auth = Auth(settings.secret)
        self.app = App(self.api, AdminApi(self.databases), self.auth)

    async def start(self) -> None:
        self.auth.log_mode()
        await self.databases.start()

    async def stop(self) -> None:
        await self.databases.stop()

    def begin_shutdown(self) -> None:
        """Answer live long-polls at once so a graceful shutdown does not wait for them."""
        self.api.begin_shutdown()
