"""Delta Lake I/O: every read and write, the keyed merge, writer locks, maintenance."""
