"""The quick set, in one command (root, about 4 minutes here):

    python -m bench.quick

compile (1k, 10k ports), convergence (100x3, 1000x3 cold/takeover/bound, 1000x10),
churn (1000 ports), restart (1000 ports), datapath.  Each writes bench/results/NAME.json
and prints its table.
"""
import subprocess
import sys
import time

STEPS = [
    ["bench.compile", "--sizes", "1000", "10000"],
    ["bench.convergence", "--quick"],
    ["bench.churn", "--repeat", "3"],
    ["bench.restart"],
    ["bench.datapath", "--runs", "3", "--seconds", "3"],
]


def main() -> int:
    t0 = time.monotonic()
    for step in STEPS:
        print(f"\n== {' '.join(step)}", flush=True)
        r = subprocess.run([sys.executable, "-m", *step])
        if r.returncode != 0:
            print(f"{step[0]} failed (exit {r.returncode})", file=sys.stderr)
            return 1
    print(f"\nquick set done in {time.monotonic() - t0:.0f}s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
