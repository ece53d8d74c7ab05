"""A site's privacy budget: the one ε computation, the ledger, admission and the round guard."""
