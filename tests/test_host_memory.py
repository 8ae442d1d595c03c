"""retain_freed_memory: glibc keeps freed memory for reuse (the step's page faults: tests/test_benchmarks.py)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from vardiu_pyro.host_memory import _glibc, retain_freed_memory


@pytest.mark.skipif(_glibc() is None, reason="mallopt is glibc's")
def test_applies_on_glibc():
    code = "from vardiu_pyro.host_memory import retain_freed_memory as r; print(r())"  # in a process of its own
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["True"]


def test_thresholds_must_be_positive():
    with pytest.raises(ValueError, match="positive"):
        retain_freed_memory(mmap_threshold=0)
    with pytest.raises(ValueError, match="positive"):
        retain_freed_memory(trim_threshold=-1)
    with pytest.raises(ValueError, match="below 2"):  # a C int: 2**32 would reach glibc as 0
        retain_freed_memory(trim_threshold=2**32)
