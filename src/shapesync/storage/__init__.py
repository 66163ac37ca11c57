"""Shape logs on disk."""
