"""Device memory: how much is free, what a compiled program needs, and how much work fits.

Work whose size does not change a result (how many path points are evaluated together, how
many examples a chunk of the "running" BN policy holds) is sized from the free memory of the
device instead of a hard-coded number:

    bytes(k) = XLA's own account of the compiled program for k units of work
               (arguments + outputs + temporaries - aliased; `Compiled.memory_analysis()`),
    k*       = the largest k in [1, k_max] with bytes(k) <= fraction x free bytes.

bytes(k) is probed at k = 1 and k = 2 and extended along the secant (vmapped or batched work
grows about linearly in k), then probed again at each guess until the guess fits and the next
k does not. Free bytes are the allocator's bytes_limit - bytes_in_use on a GPU/TPU and the host's
MemAvailable on a CPU, whose memory is the host's RAM.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import jax

DEFAULT_FRACTION = 0.5


def available_bytes(device: jax.Device | None = None) -> int:
    """Free memory of `device` (default: the first local device), in bytes."""
    device = device or jax.local_devices()[0]
    stats = device.memory_stats() or {}
    if "bytes_limit" in stats:
        return int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    try:
        with open("/proc/meminfo") as meminfo:
            for line in meminfo:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def program_bytes(compiled: jax.stages.Compiled) -> int:
    """Device bytes a compiled program holds while it runs: its arguments, outputs and
    temporaries, less the outputs that reuse argument buffers (XLA's memory analysis)."""
    stats = compiled.memory_analysis()
    return int(
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )


def largest_fitting(
    bytes_at: Callable[[int], int],
    most: int,
    budget: int,
    *,
    what: str = "the work",
    max_probes: int = 8,
) -> int:
    """The largest k in [1, most] with bytes_at(k) <= budget (bytes), for bytes_at increasing
    in k. Each probe of bytes_at (usually one compilation) refines a secant guess through the
    last two probes inside the bracket [largest k known to fit, smallest k known not to]; for
    memory linear in k that is k = 1, 2, the answer and the one after it. After `max_probes`
    probes the largest k known to fit is returned.

    Raises MemoryError naming `what` when even k = 1 needs more than `budget`.
    """
    if most < 1:
        raise ValueError(f"most={most} must be at least 1")
    probed = {1: bytes_at(1)}
    if probed[1] > budget:
        raise MemoryError(
            f"{what} needs {probed[1] / 1e9:.2f} GB at its smallest but {budget / 1e9:.2f} GB "
            "are free: free device memory, or use smaller data or chunks"
        )
    fits, too_big = 1, most + 1
    last, guess = 1, 2
    for _ in range(max_probes):
        guess = min(max(guess, fits + 1), too_big - 1)
        if guess <= fits:
            break
        probed[guess] = bytes_at(guess)
        if probed[guess] <= budget:
            fits = guess
        else:
            too_big = guess
        slope = max((probed[guess] - probed[last]) / (guess - last), 1.0)
        last, guess = guess, guess + int((budget - probed[guess]) // slope)
    return fits


def check_fraction(fraction: float) -> None:
    """Raise a ValueError naming `fraction` unless it is a share of memory in (0, 1]."""
    if not 0 < fraction <= 1:
        raise ValueError(f"memory fraction={fraction} must be in (0, 1]")


def budget_bytes(fraction: float = DEFAULT_FRACTION) -> int:
    """`fraction` of the first local device's free memory, in bytes."""
    check_fraction(fraction)
    return int(fraction * available_bytes())
