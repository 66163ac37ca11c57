"""Shapes: definitions, the registry, and per-shape conversion of changes to log items."""
