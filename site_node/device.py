"""Where a site trains: ``auto``, ``cpu`` or ``cuda[:N]``, parsed once at the edge.

A site admin names the device (``site-node start --device``, the node config's ``device``;
default ``auto``). :func:`parse_device` checks the spelling without importing torch (a typo such
as ``gpu`` or ``cuda:x`` is a :class:`~site_node.errors.ConfigError` naming the field);
:func:`resolve_device` turns it into a ``torch.device`` on this machine: ``auto`` takes the
first CUDA device when there is one, else the CPU; a ``cuda`` request on a machine without CUDA
(or without that device index) is refused with the reason, before any training.

The device changes where DP-SGD computes, never the mechanism: sampling, clipping, noise and
the accountant are the same on every device (:mod:`site_node.training`).
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from site_node.errors import ConfigError

if TYPE_CHECKING:
    import torch

AUTO = "auto"
CPU = "cpu"
_SPEC = re.compile(r"auto|cpu|cuda(?::(0|[1-9][0-9]{0,2}))?")


def parse_device(value: object, *, field: str = "device") -> str:
    """The canonical device spec (``auto``, ``cpu``, ``cuda`` or ``cuda:N``).

    Raises
    ------
    ConfigError
        Naming ``field`` and the accepted spellings, for anything else.
    """
    if isinstance(value, str) and _SPEC.fullmatch(value.strip()):
        return value.strip()
    raise ConfigError(f"{field}: {value!r} is not a device; expected auto, cpu, cuda or cuda:N "
                      "(N a device index)")


def resolve_device(spec: str, *, field: str = "device") -> torch.device:
    """The ``torch.device`` that ``spec`` means on this machine.

    Raises
    ------
    ConfigError
        If ``spec`` is not a device spec, or asks for CUDA (or a CUDA device index) that this
        machine does not have.
    """
    import torch

    spec = parse_device(spec, field=field)
    available = torch.cuda.is_available()
    if spec == AUTO:
        return torch.device("cuda:0" if available else CPU)
    if spec == CPU:
        return torch.device(CPU)
    if not available:
        raise ConfigError(f"{field}: {spec} asked for, but this machine has no CUDA device "
                          f"(torch {torch.__version__}, CUDA build: {torch.version.cuda or 'no'})"
                          "; use --device cpu or auto")
    index = int(spec.partition(":")[2] or 0)
    count = torch.cuda.device_count()
    if index >= count:
        raise ConfigError(f"{field}: {spec} asked for, but this machine has {count} CUDA "
                          f"device(s) (cuda:0 to cuda:{count - 1})")
    return torch.device("cuda", index)


def describe(device: torch.device) -> str:
    """``cpu``, or ``cuda:N (name)``: what ``site-node status`` shows."""
    if device.type != "cuda":
        return str(device)
    import torch

    return f"{device} ({torch.cuda.get_device_name(device)})"
