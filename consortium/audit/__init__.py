"""The tamper-evident audit trail: the signed log, the site key registry, the run's trail,
the independent accountant, verification and the auditor's report. No torch, no Flower."""
