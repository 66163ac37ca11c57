"""Transactions assembled from pgoutput messages."""
