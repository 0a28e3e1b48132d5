"""``ray start`` for a node that joins a head on loopback (``python -m service.stack.ray_node
--address 127.0.0.1:PORT --node-ip-address 127.0.0.1 ...``, any other ``ray start`` option).

Ray on Linux swaps a loopback ``--node-ip-address`` (and a loopback ``--address``) for the
machine's address, and its GCS, raylet, object manager, agents and workers then listen there.
With ``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0`` it keeps 127.0.0.1 (the embedded head runs so), but
then ``ray start`` refuses to start a *worker* node: that switch also means "single node only"
to its CLI. Both are one flag, ``ray_constants.ENABLE_RAY_CLUSTER``, read in two modules: this
launcher shows the CLI module a copy of the constants with the flag on, so the CLI's refusal is
skipped, while address resolution (``ray._private.services``) and every process the node starts
(they inherit the variable) keep loopback. What it relies on is checked at start: a Ray whose
CLI no longer reads the flag this way makes this fail loudly, not bind elsewhere.

For several nodes on one machine (the multi-node test); nodes on other machines need no such
thing and use ``ray start`` itself with their own address.
"""

from __future__ import annotations

import os
import sys
import types

CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


class _ClusterAllowed(types.ModuleType):
    """``ray_constants`` as the CLI sees it: the same, but multi-node allowed."""

    def __init__(self, real: types.ModuleType) -> None:
        super().__init__(real.__name__)
        self._real = real

    def __getattr__(self, name: str) -> object:
        if name == "ENABLE_RAY_CLUSTER":
            return True
        return getattr(self._real, name)


def main(argv: list[str] | None = None) -> None:
    if os.environ.get(CLUSTER_SWITCH) != "0":
        raise SystemExit(f"{CLUSTER_SWITCH}=0 must be set: it keeps the node on loopback")
    import ray._private.ray_constants as ray_constants
    import ray._private.services as services
    from ray.scripts import scripts

    if (ray_constants.ENABLE_RAY_CLUSTER or scripts.ray_constants is not ray_constants
            or services.get_node_ip_address() != "127.0.0.1"):
        raise SystemExit("this Ray does not keep a node on loopback the way service.stack.ray_node "
                         "expects (ray_constants.ENABLE_RAY_CLUSTER)")
    scripts.ray_constants = _ClusterAllowed(ray_constants)
    sys.argv = ["ray", "start", *(sys.argv[1:] if argv is None else argv)]
    scripts.main()


if __name__ == "__main__":
    main()
