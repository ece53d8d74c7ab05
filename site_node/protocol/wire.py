"""Wire keys: every key of an instruction (server -> site) and of a reply (site -> server).

Only model parameters are masked by SecAgg+; everything named here travels in clear to the
consortium, and the README's threat model lists it. Node configuration and node state names are
not wire keys: they never leave the site (see :mod:`site_node.settings`).
"""

from __future__ import annotations

# -- instructions, server -> site (legacy FitIns / EvaluateIns config) -------------------------
RUN_ID = "run-id"
ROUND = "round"
ROUNDS_PLANNED = "rounds-planned"
POLICY_JSON = "policy-json"  # the consortium policy, canonical JSON (the site re-validates it)
POLICY_SHA256 = "policy-sha256"
TASK_JSON = "task-json"  # the consortium's task, canonical JSON (the site re-validates it)
TASK_SHA256 = "task-sha256"
NOISE_MULTIPLIER = "noise-multiplier"  # the consortium's σ for the planned rounds
#: JSON object: member site -> the rounds of this run for which the consortium holds that site's
#: verified receipt (the site refuses if its ledger lacks any: another site home?)
RECEIPTS_HELD = "receipts-held"
#: The SecAgg+ mask version the server unmasks with (protocol.masking.MASK_VERSION); the site
#: refuses another. Also in the site's preflight answer: the version the site masks with.
MASK_VERSION = "secagg-mask-version"

# -- replies, site -> server (legacy FitRes / EvaluateRes metrics) ------------------------------
SITE = "site"  # the site a reply claims to come from (checked against the node's enrolment)
ACCURACY = "accuracy"
#: share of the site's test split in its most frequent class (the accuracy of always predicting
#: it): a model that does not beat it learned nothing for that site
MAJORITY_RATE = "majority-rate"
RECEIPT = "receipt"  # canonical JSON of the site's signed privacy receipt (protocol.receipt)
RECEIPT_SIGNATURE = "receipt-signature"  # hex Ed25519 signature over exactly those bytes
REFUSAL = "refusal"  # why a site refused a round (it trained nothing, spent nothing, weight 0)
REFUSAL_FINAL = "refusal-final"  # True: an admission refusal, final for the run (ledger rule)

# -- preflight, before a run's first (or resumed) round: a query message, nothing trained ------
PREFLIGHT_RECORD = "preflight"  # config record: the instruction of the next round (as above)
ADMITS = "admits"  # reply: True if the site would admit the run now (else REFUSAL says why)
