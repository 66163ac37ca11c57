"""HTTP: protocol decisions (api), caching rules (cache), the ASGI shell (asgi)."""
