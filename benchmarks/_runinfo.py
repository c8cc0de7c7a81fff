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


def machine() -> dict:
    return {"python": platform.python_version(), "cpus": os.cpu_count(), "platform": platform.platform(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "loadavg_start": [round(v, 2) for v in os.getloadavg()]}


def finish(m: dict) -> dict:
    m["loadavg_end"] = [round(v, 2) for v in os.getloadavg()]
    load = max(m["loadavg_start"][0], m["loadavg_end"][0])
    cpus = m.get("cpus") or 1
    m["contended"] = bool(load > 0.75 * cpus)
    m["note"] = (f"shared machine: 1-min load average {m['loadavg_start'][0]:.1f} at start, "
                 f"{m['loadavg_end'][0]:.1f} at end, on {cpus} CPUs"
                 + ("; the CPU was contended, absolute times are inflated (ratios measured in the same "
                    "run, with repeats interleaved, are less affected)" if m["contended"] else ""))
    return m


def spread(values: Sequence[float]) -> dict:
    """Median, min, max and all values of repeated measurements."""
    v = [float(x) for x in values]
    return {"median": statistics.median(v), "min": min(v), "max": max(v), "n": len(v), "values": v}


def fmt(s: dict, digits: int = 2) -> str:
    """``median (min–max, n=N)``."""
    return f"{s['median']:.{digits}f} ({s['min']:.{digits}f}–{s['max']:.{digits}f}, n={s['n']})"
