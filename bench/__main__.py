"""`make bench`: run every benchmark in turn; each prints its own ratios."""

import runpy
import sys

BENCHMARKS = [
    "bench.admin_changelist",
    "bench.api_audit",
    "bench.streams",
    "bench.ingest",
    "bench.otlp",
    "bench.export",
    "bench.client",
    "bench.queue",
    "bench.memory",
]


def main() -> int:
    for name in BENCHMARKS:
        print(f"== {name}", flush=True)
        sys.argv = [name]
        try:
            runpy.run_module(name, run_name="__main__")
        except SystemExit as exc:
            if exc.code not in (None, 0):
                return int(exc.code) if isinstance(exc.code, int) else 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
