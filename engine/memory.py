"""What a plan will allocate, checked against the memory this machine has before anything is allocated: a huge
receptive field or tile is refused with the figure and the fix, not with numpy's "Unable to allocate 1.31 TiB"."""

import os

from .errors import EngineError

GIB = 1 << 30


def available_bytes() -> int:
    """Memory available to a new allocation now (MemAvailable), else the physical memory."""
    try:
        with open("/proc/meminfo", encoding="ascii") as handle:
            for line in handle:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return 1 << 62


def check_memory(need: int, what: str, field: str | None, fix: str) -> None:
    """Refuse when `need` bytes (a lower bound: the arrays the engine itself holds, not the model's own
    activations) exceed the memory available."""
    have = available_bytes()
    if need > have:
        raise EngineError(f"{what} needs at least {need / GIB:.1f} GiB of memory but {have / GIB:.1f} GiB are "
                          f"available; {fix}.", field)
