"""keep_freed_memory: a freed large tensor's pages are reused, not faulted in again on the next step."""

from __future__ import annotations

import os
import platform
import subprocess
import sys

import pytest

FAULTS = """
import resource, sys, torch
from ophclip.allocator import keep_freed_memory
if sys.argv[1] == "keep":
    assert keep_freed_memory()
if sys.argv[1] == "opted_out":
    assert not keep_freed_memory()
for _ in range(3):
    torch.ones(64 << 20, dtype=torch.uint8)
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):  # a training loop's activations: the same sizes freed and allocated again
    torch.ones(64 << 20, dtype=torch.uint8)
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


# Faults when glibc unmaps and re-faults at least half of each of the 20 freed 64 MiB blocks (4 KiB pages).
REFAULTED = 20 * (64 << 20) // 4096 // 2


def _page_faults(mode: str, env: dict | None = None) -> int:
    out = subprocess.run([sys.executable, "-c", FAULTS, mode], capture_output=True, text=True, check=True,
                         env={**os.environ, **(env or {})})
    return int(out.stdout.split()[-1])


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_freed_blocks_are_reused_instead_of_faulted_in_again():
    default, kept = _page_faults("default"), _page_faults("keep")
    assert default > REFAULTED  # glibc unmapped and re-faulted most of every 64 MiB block
    assert kept < default / 3  # measured: 65,537 against 327,700


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")
def test_opting_out_keeps_glibc_defaults():
    opted_out = _page_faults("opted_out", {"OPHCLIP_KEEP_FREED_MEMORY": "0"})
    assert opted_out > REFAULTED
