from collections.abc import Callable

from services.scanner.walk_types import Totals, WalkCounters

def walk(
    root_fd: int,
    flags: int,
    dev: int,
    root_ino: int,
    disk: int,
    on_tick: Callable[[WalkCounters], None] | None,
    counters: WalkCounters,
    tick_every: int,
    max_open_dirs: int,
    tree_options: tuple[float, int, int] | None,
    threads: int,
    /,
) -> Totals: ...
