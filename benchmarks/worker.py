"""One measurement in a fresh process: `python -m benchmarks.worker NAME WORK SCRATCH PARAMS_JSON`.

Prints one JSON line: seconds (the timed section only), rows, extra facts and the process's peak
resident memory (VmHWM), so no measurement inherits another's memory or warm caches.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def peak_rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError("no VmHWM in /proc/self/status: peak memory needs Linux")


def main(argv: list[str]) -> int:
    # Start-up, not measured: pandera imports its checks (and hypothesis, if installed) lazily on a
    # process's first validation, which costs over a second once per process, whatever the data.
    import pandera.backends.polars.builtin_checks  # noqa: F401

    import benchmarks.peer  # noqa: F401  (registers the peer's measure)
    from benchmarks.measures import MEASURES

    name, work, scratch, params = argv[0], Path(argv[1]), Path(argv[2]), json.loads(argv[3])
    scratch.mkdir(parents=True, exist_ok=True)
    seconds, rows, extra = MEASURES[name](work, scratch, params)
    print(json.dumps({"seconds": seconds, "rows": rows, "extra": extra, "peak_rss_bytes": peak_rss_bytes()}))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
