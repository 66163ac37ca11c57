"""What a shape keeps on disk: its change log, snapshot file and metadata."""
