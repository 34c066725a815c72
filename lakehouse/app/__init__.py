"""How people and Dagster drive it: the CLI, the in-process runner, status, the UI, backfills, the resource."""
