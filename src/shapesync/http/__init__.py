"""HTTP: routing and the ASGI shell, request parsing, the shape protocol's decisions and
bodies, caching rules, the admin API."""
