"""One measured call in a fresh process: ``python -m benchmarks.child CASE PARAMS THREADS``.

Prints one JSON line ``{"peak_mib", "before_mib", "call_mib"}``.
"""

from __future__ import annotations

import json
import resource
import sys

import torch

from benchmarks.cases import CASES
from benchmarks.measure import current_rss_mib


def peak_rss_mib() -> float:
    """High-water RSS of this process in MiB.

    ``VmHWM`` from /proc is reset by ``exec``; ``ru_maxrss`` is not on Linux (a child started
    from a big parent would report the parent's peak), so it is only the fallback.
    """
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def main() -> None:
    case, params, threads = sys.argv[1], json.loads(sys.argv[2]), int(sys.argv[3])
    torch.set_num_threads(threads)
    fn = CASES[case](**params)
    before = current_rss_mib()
    fn()
    peak = peak_rss_mib()
    print(json.dumps({"peak_mib": peak, "before_mib": before, "call_mib": peak - before}))


if __name__ == "__main__":
    main()
