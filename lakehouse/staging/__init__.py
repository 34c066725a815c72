"""Landing files in, typed and judged records out: discovery, the exact parser, staging, contracts, drift."""
