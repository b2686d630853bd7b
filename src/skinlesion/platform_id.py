"""What a result's floating-point bytes can depend on: CPU model and vector extensions, the BLAS kernels
picked for that CPU, library versions.

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


def blas_kernels() -> list[str]:
    """The BLAS libraries NumPy and SciPy loaded and the kernel family each picked for this CPU.

    Two CPUs with the same name and vector extensions can get different OpenBLAS kernels, and the kernels
    decide rounding: seen here, two "AMD EPYC" machines with the same extensions trained every network to
    the same bytes but fitted the logistic regressions 1e-7 apart (this one, family 26, runs the Haswell
    kernels). So the kernels are part of the platform."""
    import numpy  # noqa: F401  (loads NumPy's OpenBLAS)
    import scipy.linalg  # noqa: F401  (and SciPy's, which scikit-learn's solvers use)
    from threadpoolctl import threadpool_info

    return sorted({f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}"
                   for i in threadpool_info() if i.get("user_api") == "blas"})


def describe() -> dict:
    flags, model, family = set(), platform.processor() or platform.machine(), {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            key = key.strip()
            if key == "model name":
                model = value.strip()
            elif key in ("cpu family", "model"):
                family[key] = value.strip()
            elif key == "flags":
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
            "cpu_family_model": " ".join(family.get(k, "?") for k in ("cpu family", "model")),
            "blas": blas_kernels(), "python": "%d.%d" % sys.version_info[:2], "packages": versions}


if __name__ == "__main__":
    import json

    print(json.dumps(describe(), indent=2, sort_keys=True))
