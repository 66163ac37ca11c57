"""Shapes: definitions and identity, the per-shape view of replicated transactions, the
replication sink, snapshots, the registry."""
