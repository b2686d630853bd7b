"""What a result's floating-point bytes can depend on: CPU model and vector extensions, library versions.

Recorded beside the committed baseline (results/baseline-platform.json): the baseline check demands
byte-identical files where the platform is the same, and states its tolerance where it is not.
"""

from __future__ import annotations

import platform
import sys
from importlib import metadata
from pathlib import Path

# Vector extensions that change which kernels oneDNN / Eigen pick, hence float rounding.
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "amx_tile")


def describe() -> dict:
    flags, model = set(), platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
                break
    except OSError:
        pass
    versions = {}
    for package in ("tensorflow", "keras", "numpy", "scikit-learn", "pandas", "pillow"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return {"machine": platform.machine(), "cpu": model, "isa": [f for f in ISA_FLAGS if f in flags],
            "python": "%d.%d" % sys.version_info[:2], "packages": versions}


if __name__ == "__main__":
    import json

    print(json.dumps(describe(), indent=2, sort_keys=True))
