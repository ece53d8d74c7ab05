"""The consortium across hospitals: TLS material, membership, the SuperLink, submitting runs,
and a whole deployment on one machine for demos and tests."""
