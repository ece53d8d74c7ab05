"""``python -m consortium.deployment.guarded_superlink ARGS``: Flower's ``flower-superlink``
with its Control and Runtime APIs served to the SuperLink's own host only (see
:mod:`consortium.deployment.api_guard`). It takes exactly ``flower-superlink``'s arguments."""

from __future__ import annotations

import sys

from consortium.flower_compat import run_superlink

if __name__ == "__main__":
    sys.argv[0] = "flower-superlink"
    run_superlink()
