"""The site node's Flower ClientApp (thin: it only wires Flower to :mod:`site_node.client`).

Every training message passes through Flower's ``secaggplus_mod``, so the site's update leaves
the node only masked.
"""

from __future__ import annotations

from flwr.app import Context
from flwr.client import Client, ClientApp
from flwr.client.mod import secaggplus_mod

from consortium import masking

masking.install()  # SecAgg+ masks from ChaCha20 over the full shared secret (see masking)

def _client_fn(context: Context) -> Client:
    # Imported here, not at module level: torch and Opacus take seconds to import, and in the
    # Deployment Engine every message starts a new ClientApp process. Three of SecAgg+'s four
    # stages are answered by secaggplus_mod alone and never reach this function.
    from site_node.client import client_for

    return client_for(context).to_client()


app = ClientApp(client_fn=_client_fn, mods=[secaggplus_mod])
