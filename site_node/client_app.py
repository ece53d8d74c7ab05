"""The site node's Flower ClientApp (thin: it only resolves the node's settings and delegates).

Every training message passes through Flower's ``secaggplus_mod``, so the site's update leaves
the node only masked; the mod's mask generator is replaced first (:mod:`site_node.flower_compat`).
A ``query`` message is the consortium's preflight (:mod:`site_node.preflight`): a mod answers it
before the legacy client is reached (Flower 1.42's ``ClientApp`` refuses ``@app.query()``
beside a ``client_fn``, and SecAgg+ exists only on the ``client_fn`` path).
A node's identity comes from its own configuration (deployment), from the settings the local
demonstration hands over (:func:`client_app_for`), or, under ``flwr run`` with the run config
``demo = true`` only, from the embedded example (run config ``example``) by partition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from flwr.app import ConfigRecord, ConfigRecordValues, Context, Message, MessageType, RecordDict
from flwr.client import Client, ClientApp
from flwr.client.mod import secaggplus_mod

from site_node import flower_compat
from site_node.errors import ConfigError
from site_node.protocol import run_config, wire
from site_node.settings import NODE_SITE_ID, NodeSettings, settings_from_node_config

flower_compat.install_masking()

PARTITION_ID = "partition-id"  # set by Flower's simulation engine


def resolve_settings(context: Context, sites: Sequence[NodeSettings] | None) -> NodeSettings:
    """This node's settings (see the module docstring for where they come from)."""
    config = context.node_config
    if sites is not None:
        pid = int(config[PARTITION_ID])
        if not 0 <= pid < len(sites):
            raise ConfigError(f"simulated node {pid} has no site (sites: {len(sites)})")
        return sites[pid]
    if NODE_SITE_ID in config or PARTITION_ID not in config:
        return settings_from_node_config(config)
    run = run_config.parse(context.run_config)
    if not run.demo:
        raise ConfigError("a simulated node has no site identity: use `consortium run`, or pass "
                          "--run-config 'demo=true' to play the embedded example")
    from site_node.demo import demo_settings, example_data, partition_site

    site = partition_site(int(config[PARTITION_ID]), context.run_config)
    return demo_settings(site, data_path=example_data(site, context.run_config),
                         example_policy=run.example_site_policies)


Handler = Callable[[Message, Context], Message]


def preflight_mod(sites: Sequence[NodeSettings] | None
                  ) -> Callable[[Message, Context, Handler], Message]:
    """A Flower mod that answers the preflight query and passes every other message on."""

    def mod(message: Message, context: Context, call_next: Handler) -> Message:
        if message.metadata.message_type != MessageType.QUERY:
            return call_next(message, context)
        from site_node.preflight import answer

        record = message.content.config_records.get(wire.PREFLIGHT_RECORD) or ConfigRecord()
        config = {k: v for k, v in record.items() if not isinstance(v, list)}
        reply: dict[str, ConfigRecordValues] = {
            **answer(resolve_settings(context, sites), config)}
        return Message(RecordDict({wire.PREFLIGHT_RECORD: ConfigRecord(reply)}),
                       reply_to=message)

    return mod


def client_app_for(sites: Sequence[NodeSettings] | None = None) -> ClientApp:
    """A ClientApp; with ``sites``, simulated node *i* plays ``sites[i]``."""

    def client_fn(context: Context) -> Client:
        # torch and Opacus load here, not at import: three of SecAgg+'s four stages are
        # answered by secaggplus_mod alone and never reach this function.
        from site_node.client import SiteClient

        return SiteClient(resolve_settings(context, sites)).to_client()

    return ClientApp(client_fn=client_fn, mods=[preflight_mod(sites), secaggplus_mod])


app = client_app_for()
