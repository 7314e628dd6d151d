"""Spool and dead-letter files, and the InfluxStore overflow path."""

from __future__ import annotations

from pathlib import Path

import pytest

from hub.errors import StoreUnavailable
from hub.telemetry import TelemetryPoint
from hub.telemetry.spool import DeadLetters, Spool
from tests.servers.influxdb import InfluxServer
from tests.telemetry.conftest import InfluxFactory, influx_count


def test_segments_keep_order_across_reopen(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=1000)
    spool.open()
    first, second = spool.reserve(), spool.reserve()
    spool.append(second, b"b\n")
    spool.append(first, b"a\n", sync=False)
    spool.sync()
    (tmp_path / "00000000000000000099.tmp").write_bytes(b"half written")
    again = Spool(tmp_path, max_bytes=1000)
    again.open()
    assert not list(tmp_path.glob("*.tmp"))  # never committed, so dropped
    assert again.oldest() == first
    assert again.read(first) == b"a\n"
    again.remove(first)
    assert again.oldest() == second
    assert again.reserve() == second + 1  # numbering continues after a restart


def test_full_spool_refuses_but_replacing_fits(tmp_path: Path) -> None:
    spool = Spool(tmp_path, max_bytes=10)
    spool.open()
    seq = spool.reserve()
    spool.append(seq, b"12345678\n")
    with pytest.raises(StoreUnavailable):
        spool.append(spool.reserve(), b"xx\n")
    spool.append(seq, b"123\n")  # a segment rewritten smaller after a partial replay
    assert spool.size == 4


def test_dead_letters_are_bounded(tmp_path: Path) -> None:
    letters = DeadLetters(tmp_path / "dl.jsonl", max_bytes=300)
    for i in range(20):
        letters.append([(float(i), "bad", f"m v={i}")])
    assert (tmp_path / "dl.jsonl").stat().st_size <= 300
    assert (tmp_path / "dl.jsonl.1").exists()
    assert letters.read()[-1]["line"] == "m v=19"


async def test_overflow_spills_to_spool_then_refuses(
    make_influx_store: InfluxFactory, influxdb: InfluxServer, influx_database: str
) -> None:
    store = await make_influx_store(queue_max=10, batch_size=1000, flush_interval=3600, spool_max_bytes=2000)
    written = 0
    with pytest.raises(StoreUnavailable):
        for i in range(1000):  # no await: the writer cannot drain, so the queue overflows
            store.write(TelemetryPoint("d", "smoke", 1e9 + i, {"v": 1.0}))
            written += 1
    assert store.stats.spooled > 0
    assert store.stats.dropped == 1
    await store.flush()
    assert store.stats.replayed == store.stats.spooled
    assert influx_count(influxdb, influx_database, "smoke") == written
