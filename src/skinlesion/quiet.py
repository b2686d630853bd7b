"""Keep TensorFlow's CUDA-probe noise off the terminal on machines without an NVIDIA driver.

TensorFlow's C++ runtime writes these lines to file descriptor 2 before its log level applies
("All log messages before absl::InitializeLog() is called are written to STDERR", "Could not find
cuda drivers", "failed call to cuInit"), so TF_CPP_MIN_LOG_LEVEL cannot hide them, and level 3 would
hide real errors too. Where no driver exists the lines say nothing, so a small filter process between
fd 2 and the real stderr drops exactly them. Where a driver exists nothing is filtered: a CUDA
error there is news. A separate process (not a thread) so that nothing is lost if this one crashes.
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path
from typing import Iterator

NOISE = (
    "All log messages before absl::InitializeLog() is called are written to STDERR",
    "Could not find cuda drivers on your machine",
    "failed call to cuInit",
    "Unable to register cuDNN factory",
    "Unable to register cuFFT factory",
    "Unable to register cuBLAS factory",
    "computation placer already registered",
    "TF-TRT Warning: Could not find TensorRT",
)
_FILTER = (
    "import sys\n"
    f"noise = {tuple(s.encode() for s in NOISE)!r}\n"
    "for line in sys.stdin.buffer:\n"
    "    if not any(n in line for n in noise):\n"
    "        sys.stdout.buffer.write(line); sys.stdout.buffer.flush()\n"
)


def nvidia_driver_present() -> bool:
    return Path("/proc/driver/nvidia").exists() or any(Path("/dev").glob("nvidia[0-9]*"))


@contextlib.contextmanager
def cuda_probe_noise_filtered() -> Iterator[None]:
    if nvidia_driver_present() or os.environ.get("SKINLESION_RAW_STDERR") == "1":
        yield
        return
    sys.stderr.flush()
    real = os.dup(2)
    read, write = os.pipe()
    try:
        child = subprocess.Popen([sys.executable, "-S", "-c", _FILTER], stdin=read, stdout=real, close_fds=True)
    except OSError:
        os.close(read), os.close(write), os.close(real)
        yield
        return
    os.close(read)
    os.dup2(write, 2)
    os.close(write)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(real, 2)  # closes our end of the pipe: the filter drains what is left, then exits
        os.close(real)
        with contextlib.suppress(subprocess.TimeoutExpired):
            child.wait(timeout=10)
