"""What every benchmark result file records: the real command line, the machine's load, the spread.

``command(argv)`` is the argv the script was really started with (``sys.argv`` when ``argv`` is None,
else the list passed to ``main``), so a reader can re-run exactly what produced a file.
"""

from __future__ import annotations

import os
import platform
import shlex
import statistics
import sys
import time
from collections.abc import Sequence


def command(script: str, argv: Sequence[str] | None = None) -> str:
    """``python benchmarks/<script> <args>`` with the arguments actually used (shell-quoted)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return " ".join(["python", f"benchmarks/{script}", *map(shlex.quote, args)])


SHARED_NOTE = ("benchmarks run at normal priority, one at a time (flock /tmp/tg-bench.lock), while other "
               "engineers' nice-19 jobs may have been running; those yield the CPU, so the benchmark gets "
               "~98 % of it, but the load average counts them")


def machine() -> dict:
    t = os.times()
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "loadavg_start": [round(v, 2) for v in os.getloadavg()],
            "_t0": (time.perf_counter(), t.user + t.system + t.children_user + t.children_system)}


def finish(m: dict) -> dict:
    m["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    if "_t0" in m:  # CPU seconds this process (and its waited-for children) got per wall-clock second
        w0, c0 = m.pop("_t0")
        t = os.times()
        wall = time.perf_counter() - w0
        m["wall_s"] = round(wall, 2)
        m["cpu_s"] = round(t.user + t.system + t.children_user + t.children_system - c0, 2)
    load = max(m["loadavg_start"][0], m["loadavg_end"][0])
    cpus = m.get("cpus") or 1
    m["contended"] = bool(load > 0.75 * cpus)
    m["note"] = (f"shared machine: 1-min load average {m['loadavg_start'][0]:.1f} at start, "
                 f"{m['loadavg_end'][0]:.1f} at end, on {cpus} CPUs"
                 + ("; the CPU was contended, absolute times are inflated (ratios measured in the same "
                    "run, with repeats interleaved, are less affected)" if m["contended"] else "")
                 + f"; {SHARED_NOTE}")
    return m


def spread(values: Sequence[float]) -> dict:
    """Median, min, max and all values of repeated measurements."""
    v = [float(x) for x in values]
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v), "values": v}


def fmt(s: dict, digits: int = 2) -> str:
    """``median (min–max, n=N)``."""
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f}, n={s['n']})"
