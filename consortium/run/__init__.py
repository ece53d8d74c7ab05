"""One consortium run: its plan, the round loop, attribution of replies, convergence, and the
engines it runs on (Flower's simulation for the local demonstration; a SuperLink in
deployment)."""
