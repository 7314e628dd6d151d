"""The amqtt internals the hub overrides or calls are pinned: a new amqtt version, or a changed method, fails here.

The embedded broker carries fixes in overrides of amqtt's private methods (docs/mqtt.md, "What the hub
changes in amqtt"). A silent change upstream could undo one, such as authenticating before a session is
taken over. When this fails after an upgrade: read each method named in the failure in the new amqtt,
check that the override still does what docs/mqtt.md says, then update the pins below.
"""

from __future__ import annotations

import hashlib
import inspect
from importlib.metadata import version
from typing import Any

from amqtt.adapters import ReaderAdapter, StreamWriterAdapter
from amqtt.broker import Broker
from amqtt.mqtt.protocol.broker_handler import BrokerProtocolHandler
from amqtt.plugins.base import BaseAuthPlugin, BaseTopicPlugin

from hub.ingest.mqtt_embedded import HubAuthPlugin, HubBroker, HubTopicPlugin
from hub.ingest.mqtt_guard import ClosingWriter, GuardedBroker, GuardedReader

AMQTT_VERSION = "0.12.1"
AMQTT_CLASSES: dict[str, type] = {
    "Broker": Broker,
    "BrokerProtocolHandler": BrokerProtocolHandler,
    "ReaderAdapter": ReaderAdapter,
    "StreamWriterAdapter": StreamWriterAdapter,
    "BaseAuthPlugin": BaseAuthPlugin,
    "BaseTopicPlugin": BaseTopicPlugin,
}
HUB_CLASSES = [HubBroker, GuardedBroker, GuardedReader, ClosingWriter, HubAuthPlugin, HubTopicPlugin]
# amqtt method -> (its parameters, the first 12 hex digits of the SHA-256 of its source), as of AMQTT_VERSION.
PINNED = {
    # overridden
    "Broker.__init__": ("(self, config=None, loop=None, plugin_namespace=None)", "5158ff3ca649"),
    "Broker._initialize_client_session": (
        "(self, reader, writer, remote_address, remote_port)",
        "5dd89158bbe4",
    ),
    "Broker._authenticate": ("(self, session, _)", "4d7db8cc6fe2"),
    "Broker._handle_message_delivery": ("(self, client_session, handler, wait_deliver)", "89727723da55"),
    "Broker._broadcast_message": ("(self, session, topic, data, force_qos=None)", "78ad4edb7efb"),
    "Broker.retain_message": ("(self, source_session, topic_name, data, qos=None)", "6233eff2618b"),
    "Broker._handle_disconnect": ("(self, client_session, handler, disconnect_waiter)", "8c3b8702f356"),
    "Broker.stream_connected": ("(self, reader, writer, listener_name)", "d1c68240cb49"),
    "ReaderAdapter.read": ("(self, n=-1)", "a3b696fb6479"),
    "ReaderAdapter.feed_eof": ("(self)", "f8dc2bc62da9"),
    "StreamWriterAdapter.close": ("(self)", "9f228a1f968d"),
    "BaseAuthPlugin.authenticate": ("(self, *, session)", "474dbca3f34c"),
    "BaseTopicPlugin.topic_filtering": ("(self, *, session=None, topic=None, action=None)", "001653f7e521"),
    # called from the overrides
    "Broker._client_connected": ("(self, listener_name, reader, writer)", "432b724bc4fb"),
    "Broker._delete_session": ("(self, client_id)", "a8333dded506"),
    "Broker.internal_message_broadcast": ("(self, topic, data, qos=None)", "737942352c1c"),
    "BrokerProtocolHandler.init_from_connect": (
        "(reader, writer, plugins_manager, loop=None)",
        "036dc04c1133",
    ),
    "BrokerProtocolHandler.handle_connection_closed": ("(self)", "e9c448557a8d"),
    "StreamWriterAdapter.__init__": ("(self, writer)", "9612036ac78e"),
}


def shape(function: Any) -> str:
    """A method's parameters: names, kinds and defaults, without annotations (their repr varies by Python)."""
    signature = inspect.signature(function)
    bare = [p.replace(annotation=inspect.Parameter.empty) for p in signature.parameters.values()]
    return str(signature.replace(parameters=bare, return_annotation=inspect.Signature.empty))


def digest(function: Any) -> str:
    """The start of the SHA-256 of a method's source."""
    return hashlib.sha256(inspect.getsource(function).encode()).hexdigest()[:12]


def amqtt_owner(cls: type, name: str) -> str | None:
    """``Class.name`` of the amqtt class ``cls`` inherits ``name`` from, if any."""
    for base in cls.__mro__[1:]:
        if base.__module__.startswith("amqtt.") and name in vars(base):
            return f"{base.__name__}.{name}"
    return None


def test_the_amqtt_version_is_the_pinned_one() -> None:
    """Any other amqtt release fails: read the overridden methods in it first (docs/mqtt.md)."""
    assert version("amqtt") == AMQTT_VERSION


def test_every_override_of_an_amqtt_method_is_pinned() -> None:
    """A new override without a pin fails: it must be listed here and in docs/mqtt.md."""
    unpinned = [
        f"{cls.__name__}.{name} overrides {owner}"
        for cls in HUB_CLASSES
        for name, value in vars(cls).items()
        if callable(value) and (owner := amqtt_owner(cls, name)) is not None and owner not in PINNED
    ]
    assert not unpinned


def test_the_pinned_methods_keep_their_signature_and_source() -> None:
    """Each overridden or called amqtt method still has the parameters and the code the overrides were written for."""
    changed = []
    for key, (parameters, source) in PINNED.items():
        owner, name = key.split(".")
        function = getattr(AMQTT_CLASSES[owner], name, None)
        if function is None:
            changed.append(f"{key}: gone")
        elif shape(function) != parameters:
            changed.append(f"{key}: now {shape(function)}")
        elif digest(function) != source:
            changed.append(f"{key}: its code changed ({digest(function)})")
    assert not changed
