"""``python -m site_node.deployment.paced_supernode ARGS``: Flower's ``flower-supernode`` with
the SuperNode loop's fixed sleeps shortened (see :func:`site_node.flower_compat.pace_supernode`).
It takes exactly ``flower-supernode``'s arguments."""

from __future__ import annotations

import sys

from site_node.flower_compat import run_supernode

if __name__ == "__main__":
    sys.argv[0] = "flower-supernode"
    run_supernode()
