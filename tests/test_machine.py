"""What a report says about the machine and the memory it used: the CPU class from /proc/cpuinfo's
flags, and the process's resident set, sampled so a build's own stretch of the run has a peak."""

import time

import numpy as np

from resnext_spec.machine import RssSampler, cpu_class, peak_rss_mb, rss_mb

# Flag lines as the kernel writes them (cut short): an AVX-512 server, an AVX2-only EPYC, an old core.
AVX512 = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma avx512f avx512dq avx512bw\n"
AVX2 = "processor\t: 0\nflags\t\t: fpu sse sse2 avx avx2 fma bmi2\n"
OLD = "processor\t: 0\nflags\t\t: fpu sse sse2\n"


def test_the_cpu_class_is_read_off_the_flags():
    assert [cpu_class(t) for t in (AVX512, AVX2, OLD, "processor : 0\n")] == [
        "AVX-512",
        "AVX2",
        "other",
        "unknown",
    ]
    assert cpu_class() in ("AVX-512", "AVX2", "other", "unknown")


def test_a_stretch_that_holds_an_array_peaks_by_its_size():
    with RssSampler(interval=0.01) as rss:
        time.sleep(0.05)
        before_end = time.perf_counter()
        t0 = time.perf_counter()
        block = np.ones(64 * 2**20 // 8)  # 64 MiB, touched
        time.sleep(0.1)
        t1 = time.perf_counter()
        del block
        time.sleep(0.05)
    quiet = rss.peak_between(0, before_end)
    busy = rss.peak_between(t0, t1)
    assert busy - quiet >= 60, (quiet, busy)
    assert peak_rss_mb() >= busy - 1 and rss_mb() > 0
