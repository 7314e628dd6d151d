"""Node-RED's side of the ingest bench as data: its settings.js and the flow MQTT → threshold → InfluxDB.

The flow is what a competent Node-RED user builds for throughput with the stock nodes and
node-red-contrib-influxdb:

    mqtt in (devices/+/up, persistent session) → function "threshold" → join (array of 5000 or 0.1 s)
      → influxdb batch (1.x, precision s)
    complete(influxdb batch) → function "acked"   (tells the bench how many points InfluxDB acknowledged)
    status(mqtt in) → function "status";  catch(all) → function "error"

The "influxdb out" node writes one point per HTTP request; batching needs "influxdb batch", which takes
an array of points per message, so a join node builds the arrays, by size and age like the hub's store
(5000 points or 0.1 s after the first). The device registry's kinds are in ``functionGlobalContext``
(a lookup, as a Node-RED user would load from a file), since the topic names only the device.
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["MARK", "flows", "settings_js"]

MARK = "NRBENCH"  # log lines the bench reads from Node-RED's stdout start their message with this

# The hub's rules in spirit: parse, look the device up, check a threshold, shape a point per uplink.
_THRESHOLD = """\
const d = JSON.parse(msg.payload);
const serial = msg.topic.split("/")[1];
const kind = global.get("kinds")[serial];
if (kind === undefined) {
    return null;
}
const fields = {};
for (const k in d) {
    const v = d[k];
    if (k !== "v" && k !== "seq" && k !== "ts" && (typeof v === "number" || typeof v === "boolean")) {
        fields[k] = v;
    }
}
if (kind === "smoke") {
    fields.over_temp = d.temperature > 57;
}
msg.payload = {measurement: kind, tags: {device_id: serial}, fields: fields, timestamp: d.ts};
return msg;
"""

# One log line per acknowledged batch (20 per 100 k points): the bench's clock stops on the last one.
_ACKED = f"""\
const n = (context.get("n") || 0) + msg.payload.length;
context.set("n", n);
node.warn("{MARK} acked " + n);
return null;
"""
_STATUS = f'node.warn("{MARK} status " + msg.status.fill + " " + msg.status.text);\nreturn null;\n'
_ERROR = f'node.warn("{MARK} error " + msg.error.message);\nreturn null;\n'


def settings_js(port: int) -> str:
    """Headless settings: loopback, no editor or admin auth, plain credentials, quiet log, start/stop API."""
    settings = {
        "uiHost": "127.0.0.1",
        "uiPort": port,
        "flowFile": "flows.json",
        "credentialSecret": False,
        "disableEditor": True,
        "httpNodeRoot": False,
        "runtimeState": {"enabled": True, "ui": False},
        "logging": {"console": {"level": "warn", "metrics": False, "audit": False}},
        "diagnostics": {"enabled": False},
        "telemetry": {"enabled": False},
        "externalModules": {"palette": {"allowInstall": False}, "modules": {"allowInstall": False}},
    }
    kinds = '{functionGlobalContext: {kinds: require("./kinds.json")}}'
    return f"module.exports = Object.assign({json.dumps(settings, indent=2)}, {kinds});\n"


def _function(node_id: str, name: str, code: str, wires: list[str]) -> dict[str, Any]:
    return {
        "id": node_id,
        "type": "function",
        "z": "f-bench",
        "name": name,
        "func": code,
        "outputs": 1,
        "timeout": 0,
        "noerr": 0,
        "initialize": "",
        "finalize": "",
        "libs": [],
        "wires": [wires],
    }


def flows(
    *,
    mqtt_port: int,
    client_id: str,
    user: str,
    password: str,
    qos: int,
    influx_port: int,
    database: str,
    batch: int,
    batch_age: float,
) -> list[dict[str, Any]]:
    """The whole flow, as ``POST /flows`` takes it (credentials inline; Node-RED stores them apart)."""
    return [
        {"id": "f-bench", "type": "tab", "label": "ingest"},
        {
            "id": "c-broker",
            "type": "mqtt-broker",
            "name": "mosquitto",
            "broker": "127.0.0.1",
            "port": str(mqtt_port),
            "clientid": client_id,
            "autoConnect": True,
            "usetls": False,
            "protocolVersion": "4",
            "keepalive": "60",
            "cleansession": False,
            # Otherwise stopping the flows unsubscribes, and the broker queues nothing for the session.
            "autoUnsubscribe": False,
            "birthTopic": "",
            "closeTopic": "",
            "willTopic": "",
            "credentials": {"user": user, "password": password},
        },
        {
            "id": "n-uplinks",
            "type": "mqtt in",
            "z": "f-bench",
            "name": "uplinks",
            "topic": "devices/+/up",
            "qos": str(qos),
            "datatype": "utf8",
            "broker": "c-broker",
            "inputs": 0,
            "wires": [["n-threshold"]],
        },
        _function("n-threshold", "threshold", _THRESHOLD, ["n-batch"]),
        {
            "id": "n-batch",
            "type": "join",
            "z": "f-bench",
            "name": "batch",
            "mode": "custom",
            "build": "array",
            "property": "payload",
            "propertyType": "msg",
            "key": "topic",
            "joiner": "\\n",
            "joinerType": "str",
            "accumulate": False,
            "timeout": str(batch_age),
            "count": str(batch),
            "reduceRight": False,
            "wires": [["n-influx"]],
        },
        {
            "id": "c-influxdb",
            "type": "influxdb",
            "hostname": "127.0.0.1",
            "port": str(influx_port),
            "protocol": "http",
            "database": database,
            "name": "bench",
            "usetls": False,
            "influxdbVersion": "1.x",
            "credentials": {"username": "", "password": ""},
        },
        {
            "id": "n-influx",
            "type": "influxdb batch",
            "z": "f-bench",
            "influxdb": "c-influxdb",
            "precision": "s",
            "retentionPolicy": "",
            "name": "telemetry",
            "wires": [],
        },
        {
            "id": "n-done",
            "type": "complete",
            "z": "f-bench",
            "scope": ["n-influx"],
            "uncaught": False,
            "wires": [["n-acked"]],
        },
        _function("n-acked", "acked", _ACKED, []),
        {"id": "n-watch", "type": "status", "z": "f-bench", "scope": ["n-uplinks"], "wires": [["n-status"]]},
        _function("n-status", "status", _STATUS, []),
        {
            "id": "n-errors",
            "type": "catch",
            "z": "f-bench",
            "scope": None,
            "uncaught": False,
            "wires": [["n-error"]],
        },
        _function("n-error", "error", _ERROR, []),
    ]
