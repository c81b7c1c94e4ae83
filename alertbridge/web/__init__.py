"""HTTP endpoints: the webhook ingest and health checks."""
