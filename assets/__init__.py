"""The billing feed: its spec, one module per layer, and its sensors."""
