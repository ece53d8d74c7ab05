"""The site node's Flower ClientApp (thin: it only wires Flower to :mod:`site_node.client`).

Every training message passes through Flower's ``secaggplus_mod``, so the site's update leaves
the node only masked.
"""

from __future__ import annotations

from flwr.app import Context
from flwr.client import Client, ClientApp
from flwr.client.mod import secaggplus_mod

from site_node.client import client_for


def _client_fn(context: Context) -> Client:
    return client_for(context).to_client()


app = ClientApp(client_fn=_client_fn, mods=[secaggplus_mod])
