"""The contract the consortium server and the site nodes both speak.

Wire keys (:mod:`.wire`), the Flower run config's keys (:mod:`.run_config`), the DP mechanism
value object (:mod:`.mechanism`), privacy receipts (:mod:`.receipt`), key files and
fingerprints (:mod:`.keys`) and the SecAgg+ mask generator (:mod:`.masking`). This subpackage
depends only on the standard library, NumPy and ``cryptography``, and on nothing else of the
project (an import-linter contract checks it), so both sides can rely on it without pulling in
each other.
"""
