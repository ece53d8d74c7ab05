"""Wire keys shared by the consortium server and the site nodes.

Every key of a fit/evaluate instruction (server -> site) and of a site's reported metrics
(site -> server) is defined here once. Only model parameters are masked by SecAgg+; everything
named here travels in clear to the consortium (see the README's threat model).
"""

from __future__ import annotations

# -- instructions, server -> site (legacy FitIns / EvaluateIns config) -------------------------
RUN_ID = "run-id"
ROUND = "round"
POLICY_SHA256 = "policy-sha256"
NOISE_MULTIPLIER = "noise-multiplier"
SAMPLE_RATE = "sample-rate"
MAX_GRAD_NORM = "max-grad-norm"
LOCAL_EPOCHS = "local-epochs"
LEARNING_RATE = "learning-rate"
ACCOUNTANT = "accountant"
DELTA = "delta"
EPSILON_CEILING = "epsilon-ceiling"
LIFETIME_EPSILON_CEILING = "lifetime-epsilon-ceiling"
ROUNDS_PLANNED = "rounds-planned"

# -- metrics, site -> server (legacy FitRes / EvaluateRes metrics) ------------------------------
SITE = "site"
EPSILON = "epsilon"
STEPS = "steps"
NUM_TRAIN_EXAMPLES = "num-train-examples"
TRAIN_LOSS = "train-loss"
ACCURACY = "accuracy"
RECEIPT = "receipt"  # canonical JSON of the site's signed privacy receipt (consortium.receipt)
RECEIPT_SIGNATURE = "receipt-signature"  # hex Ed25519 signature over exactly those bytes

# -- node configuration (never leaves the site) ------------------------------------------------
NODE_SITE_ID = "site-id"
NODE_DATA_PATH = "data-path"
NODE_STATE_DIR = "state-dir"
NODE_PARTITION_ID = "partition-id"  # set by Flower's simulation engine

# -- node state record names (context.state) ---------------------------------------------------
STATE_PRIVACY = "site.privacy"
STATE_ACCOUNTANT_JSON = "accountant-json"
STATE_RUN_ID = "run-id"
