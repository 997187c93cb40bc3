"""Load shedding: refuse early what the service cannot serve, so what it serves stays fast.

`LoadShedder` caps the calls running at once with a static or an adaptive limit (`AIMD`,
`Gradient2`), queues a few more in a bounded FIFO per priority level, and turns the rest
away at once with `resilient.LoadShedError`. A call's priority flows down like a deadline:
`with priority(level):` sets it for everything inside. Framework-free; the ASGI middleware is
`resilient.asgi.LoadSheddingMiddleware`.

Examples:
    ```python
    from resilient.load_shedding import AIMD, LoadShedder, priority

    shedder = LoadShedder(AIMD(min_limit=4), max_waiting=8, max_wait=0.05, priority_levels=2)

    @shedder
    async def handle(job: Job) -> Result: ...

    with priority(1):                     # sheddable before the critical work
        await handle(background_job)
    ```
"""

from __future__ import annotations

from resilient.load_shedding._limits import AIMD as AIMD
from resilient.load_shedding._limits import AdaptiveLimit as AdaptiveLimit
from resilient.load_shedding._limits import Gradient2 as Gradient2
from resilient.load_shedding._priority import current_priority as current_priority
from resilient.load_shedding._priority import priority as priority
from resilient.load_shedding._shedder import LoadShedder as LoadShedder

__all__ = ("AIMD", "AdaptiveLimit", "Gradient2", "LoadShedder", "current_priority", "priority")

for _name in __all__:
    _obj = globals()[_name]
    if isinstance(_obj, type):
        _obj.__module__ = __name__
del _name, _obj
