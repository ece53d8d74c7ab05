"""The consortium's Flower ServerApp, for ``flwr run`` (thin: it only delegates).

Its settings come from the Flower run config (``[tool.flwr.app.config]`` in pyproject.toml,
overridable with ``flwr run . --run-config "store='/abs/path.sqlite' num-server-rounds=5"``).
"""

from consortium.run.server import server_app_for

app = server_app_for()
