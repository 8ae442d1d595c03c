"""Where a benchmark's numbers come from: the commit of the code and the machine that ran it.

Shared by the scripts under ``benchmarks/`` so that every report names its commit and machine the same way.
"""
from __future__ import annotations

import os
import platform
from pathlib import Path

import pyro
import torch

from vardiu_pyro.code_version import git_commit  # noqa: F401 (the benchmarks name the commit as a run's summary does)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict:
    """The machine as a report states it: CPU, threads, versions, load average, GPU if any."""
    info = {"cpu": cpu_name(), "logical_cpus": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "platform": platform.platform(), "python": platform.python_version(), "torch": torch.__version__,
            "pyro": pyro.__version__}
    try:
        info["load_average"] = [round(x, 2) for x in os.getloadavg()]
    except OSError:
        pass
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def machine_line() -> str:
    """One line for a report's header: ``<cpu> (<n> logical CPUs)``, and the GPU when there is one."""
    info = machine()
    line = f"{info['cpu']} ({info['logical_cpus']} logical CPUs)"
    return line + (f", {info['gpu']}" if "gpu" in info else "")
