"""Run every benchmark and print its numbers; results are recorded in docs/benchmarks.md."""

import runpy
from pathlib import Path

HERE = Path(__file__).resolve().parent

BENCHES = (
    "bench_startup.py",
    "bench_plan.py",
    "bench_validate_scale.py",
    "bench_verify.py",
    "bench_step_overhead.py",
    "bench_platforms.py",
)
for name in BENCHES:
    print(f"== {name}")
    runpy.run_path(str(HERE / name), run_name="__main__")
