"""The poly runtime: Beast's C++ core (queues, batchers, actor pool, env and actor servers) behind pybind11.

The C++ lives in `csrc/` and is built into the extension `beast.poly._core` by
`pip install -e .`; this module loads it and lists the public surface.
"""

try:
    from beast.poly._core import (ActorClient, ActorPool, ActorServer, Batch, BatchingQueue,
                                  DynamicBatcher, EnvClient, EnvServer)
except ImportError as e:  # pragma: no cover - depends on how the package was built
    raise ImportError(
        "beast.poly needs the compiled extension beast.poly._core, which failed to import "
        f"({e}). Build it from the repository root with "
        "`pip install -e .` (again after any change under csrc/); "
        "beast.mono works without it."
    ) from e

__all__ = ["ActorClient", "ActorPool", "ActorServer", "Batch", "BatchingQueue", "DynamicBatcher", "EnvClient", "EnvServer"]
