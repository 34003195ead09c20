"""The worker's one connection to the plant's MQTT broker (paho-mqtt 2.x).

Opened when the dispatcher starts and kept: paho's network thread keeps it alive
and reconnects after a loss (1 s, doubling to 30 s). A delivery counts only once
the broker has acknowledged its QoS 1 publish (PUBACK); a publish not acknowledged
in time is a failed try, retried by the dispatcher like a webhook's.

The broker URL may carry a user name and password: neither is ever logged; the
log names the broker by host and port only.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from worker.webhook_sender import Attempt

log = logging.getLogger(__name__)

KEEPALIVE_S = 30


class MqttPublisher:
    def __init__(self, url: str, timeout_s: float, client_id: str | None = None) -> None:
        parts = urlsplit(url)
        tls = parts.scheme == "mqtts"
        self.host = parts.hostname or "localhost"
        self.port = parts.port or (8883 if tls else 1883)
        self.timeout_s = timeout_s
        self.connected = threading.Event()
        self.closing = False
        self.last_problem = "not connected yet"
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2,
            client_id=client_id or f"inspection-{socket.gethostname()}-{os.getpid()}",
            protocol=mqtt.MQTTv311,
        )
        if parts.username is not None:
            password = unquote(parts.password) if parts.password is not None else None
            self.client.username_pw_set(unquote(parts.username), password)
        if tls:
            self.client.tls_set()  # the system's CA certificates
        self.client.reconnect_delay_set(min_delay=1, max_delay=30)
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_connect_fail = self._on_connect_fail
        self.client.connect_async(self.host, self.port, keepalive=KEEPALIVE_S)
        self.client.loop_start()

    @property
    def broker(self) -> str:
        return f"{self.host}:{self.port}"

    def _on_connect(
        self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _properties: Any
    ) -> None:
        if reason.is_failure:
            self.last_problem = f"the broker refused the connection: {reason}"
            log.warning("the MQTT broker %s refused the connection: %s", self.broker, reason)
            return
        self.connected.set()
        log.info("connected to the MQTT broker %s", self.broker)

    def _on_disconnect(
        self, _client: Any, _userdata: Any, _flags: Any, reason: Any, _properties: Any
    ) -> None:
        was_connected = self.connected.is_set()
        self.connected.clear()
        self.last_problem = f"disconnected: {reason}"
        if was_connected and not self.closing:
            log.warning("lost the MQTT broker %s (%s); reconnecting", self.broker, reason)

    def _on_connect_fail(self, _client: Any, _userdata: Any) -> None:
        self.last_problem = "could not connect"
        log.debug("could not connect to the MQTT broker %s", self.broker)

    def publish(self, topic: str, body: bytes) -> Attempt:
        """Publish at QoS 1 and wait for the broker's acknowledgement."""
        if not self.connected.wait(self.timeout_s):
            return Attempt(False, None, f"MQTT broker {self.broker}: {self.last_problem}")
        info = self.client.publish(topic, body, qos=1)
        try:
            info.wait_for_publish(self.timeout_s)
        except (RuntimeError, ValueError) as exc:  # not sent: no connection, queue full
            return Attempt(False, None, f"MQTT broker {self.broker}: {exc}")
        if not info.is_published():
            return Attempt(
                False,
                None,
                f"MQTT broker {self.broker} did not acknowledge within {self.timeout_s:g} s",
            )
        return Attempt(True)

    def close(self) -> None:
        self.closing = True
        self.client.disconnect()
        self.client.loop_stop()
