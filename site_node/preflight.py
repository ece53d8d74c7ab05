"""The site's answer to the consortium's preflight: would it admit the run, without training?

Before a run's first round (and before the next round of a resumed run) the server asks every
member site whether it would admit the run. The site answers with exactly the checks a round
makes before training (:meth:`site_node.client.SiteClient.fit`): the instruction, the server's
SecAgg+ mask version, its receipt
key, the task, its data against the task, SecAgg+'s weight limit, its own policy merged into
the consortium's, the expected batch q·N ≥ 1 and its ε ceilings projected over the rest of the
planned run (:meth:`site_node.privacy.guard.SiteGuard.would_admit`). Nothing is trained,
spent, reserved or written to the ledger. The reply carries only the site's name, the SecAgg+
mask version it masks with, admit or refuse, the reason of a refusal in clear and whether that
refusal is final for the run.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from site_node.errors import FinalRefusal, Refusal, SiteNodeError
from site_node.instruction import parse_instruction
from site_node.privacy.guard import SiteGuard
from site_node.protocol import masking, wire
from site_node.protocol.errors import ProtocolError
from site_node.settings import NodeSettings

log = logging.getLogger(__name__)

Scalar = bool | bytes | float | int | str


def _check(settings: NodeSettings, config: Mapping[str, Scalar]) -> None:
    """Raise :class:`Refusal` (or another site error) if the site would refuse the round."""
    from site_node.client import checked_data  # torch loads here, as for a training round

    instruction = parse_instruction(config)
    masks_refused = instruction.mask_refusal(settings.site)
    if masks_refused is not None:
        raise Refusal(masks_refused)
    guard = SiteGuard(settings)
    guard.signing_key()
    if guard.spent_before(instruction) is not None:
        return  # the site re-sends that round's receipt and never trains it twice
    data = checked_data(settings, instruction)
    guard.would_admit(instruction, num_examples=data.num_train,
                      num_patients=data.num_patients)


def answer(settings: NodeSettings, config: Mapping[str, Scalar]) -> dict[str, Scalar]:
    """The site's preflight reply to the instruction ``config`` (never raises a site error)."""
    reply: dict[str, Scalar] = {wire.SITE: settings.site, wire.ADMITS: False,
                                wire.MASK_VERSION: masking.MASK_VERSION}
    try:
        _check(settings, config)
    except FinalRefusal as exc:
        reply |= {wire.REFUSAL: str(exc), wire.REFUSAL_FINAL: True}
    except (SiteNodeError, ProtocolError) as exc:  # fail closed: it cannot say it would admit
        reply[wire.REFUSAL] = str(exc)
    else:
        reply[wire.ADMITS] = True
    log.info("site %s preflight: %s", settings.site,
             "admits" if reply[wire.ADMITS] else f"refuses: {reply.get(wire.REFUSAL)!s}")
    return reply
