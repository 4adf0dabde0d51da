#!/usr/bin/env python3
"""Producer saturation baseline: Python `confluent-kafka` producer sending pre-encoded payloads.

Run by `orderstream-bench` (crates/bench/src/produce.rs), once per round, with the venv that
scripts/bench.sh installs (`confluent-kafka==2.16.1` under .cache/). The bench writes the records
its own raw-bytes run sends (the same Avro-encoded values, order-id keys and `event_id` headers) to a file and passes
its producer's librdkafka properties as `-X key=value`, so this script sends the same bytes with
the same settings through the librdkafka bundled in the wheel.

    produce_baseline.py --version
    produce_baseline.py --bootstrap HOST:PORT --topic T --records FILE
                        [--header NAME=VALUE] [--warmup N] [-X key=value ...]

Records file: repeated [u32 big-endian length][bytes] for the key, the value and the record's
`event_id` header, in that order. Each record carries its `event_id` header, then the `--header`s.

Timed window: from the first produce() of the measured run to the return of the final flush();
interpreter start-up, reading the file and a warm-up (connections, idempotent producer id) are
outside it. Prints one line on stdout:

    delivered=N errors=E elapsed_ms=T cpu_ms=C p50_us=.. p99_us=.. p999_us=.. librdkafka=V ...

and exits 0 only when every record was delivered; any error exits non-zero with a message on
stderr.
"""

import argparse
import platform
import struct
import sys
import time

import confluent_kafka
from confluent_kafka import KafkaException, Producer

# poll(0) after this many produce() calls: serves delivery reports (which also frees queue
# slots) without paying a poll per record.
POLL_EVERY = 1000
# Upper bound for the final flush (the producer's delivery.timeout.ms is 30 s).
FLUSH_TIMEOUT_S = 120.0


def versions():
    """`confluent_kafka=X librdkafka=Y python=Z`."""
    ck = confluent_kafka.version()  # a string in 2.16, a (string, int) tuple before
    return "confluent_kafka={} librdkafka={} python={}".format(
        ck[0] if isinstance(ck, tuple) else ck,
        confluent_kafka.libversion()[0],
        platform.python_version(),
    )


def read_records(path, common):
    """[(key, value, headers)] from the length-prefixed file the bench wrote (headers: the
    record's `event_id`, then `common`)."""
    with open(path, "rb") as f:
        data = f.read()
    out = []
    pos = 0
    u32 = struct.Struct(">I")

    def field(pos, what):
        """The length-prefixed bytes at `pos` and the position after them."""
        if pos + 4 > len(data):
            raise ValueError(f"{path}: truncated {what} length at byte {pos}")
        (n,) = u32.unpack_from(data, pos)
        pos += 4
        if pos + n > len(data):
            raise ValueError(f"{path}: truncated record ending at byte {pos + n}")
        return data[pos : pos + n], pos + n

    while pos < len(data):
        key, pos = field(pos, "key")
        value, pos = field(pos, "value")
        event_id, pos = field(pos, "event_id")
        out.append((key, value, [("event_id", event_id)] + common))
    return out


class Reports:
    """Delivery-report counters (served on this thread by poll() / flush())."""

    def __init__(self):
        self.reset()
        self.fatal = None

    def reset(self):
        self.delivered = 0
        self.errors = 0
        self.first_error = None
        self.latencies = []

    def on_delivery(self, err, msg):
        if err is not None:
            self.errors += 1
            if self.first_error is None:
                self.first_error = str(err)
            return
        self.delivered += 1
        latency = msg.latency()
        if latency is not None:
            self.latencies.append(latency)

    def on_error(self, err):
        # Non-fatal errors (a dropped connection) are retried by librdkafka and show up in the
        # delivery reports if they cost a record; a fatal one ends the run.
        if err.fatal():
            self.fatal = str(err)
        print(f"produce_baseline: client error: {err}", file=sys.stderr)


def produce_all(producer, topic, records):
    """produce() every record, polling regularly and waiting on a full queue."""
    produce = producer.produce
    poll = producer.poll
    for i, (key, value, headers) in enumerate(records):
        while True:
            try:
                produce(topic, value, key, headers=headers)
                break
            except BufferError:
                poll(0.1)
        if i % POLL_EVERY == 0:
            poll(0)


def flush(producer):
    """Final flush; fails if anything is left in the queue."""
    left = producer.flush(FLUSH_TIMEOUT_S)
    if left:
        raise RuntimeError(f"{left} records still queued {FLUSH_TIMEOUT_S:.0f} s after flush()")


def quantile_us(sorted_s, q):
    if not sorted_s:
        return float("nan")
    i = min(len(sorted_s) - 1, int(q * len(sorted_s)))
    return sorted_s[i] * 1e6


def check(reports, expected, what):
    if reports.fatal:
        raise RuntimeError(f"{what}: fatal client error: {reports.fatal}")
    if reports.errors:
        raise RuntimeError(
            f"{what}: {reports.errors} delivery errors (first: {reports.first_error})"
        )
    if reports.delivered != expected:
        raise RuntimeError(f"{what}: {reports.delivered} of {expected} delivered")


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--version", action="store_true", help="print versions and exit")
    ap.add_argument("--bootstrap")
    ap.add_argument("--topic")
    ap.add_argument("--records", help="length-prefixed key/value/event_id file")
    ap.add_argument("--header", action="append", default=[], help="NAME=VALUE on every record")
    ap.add_argument("--warmup", type=int, default=10_000, help="records sent before timing")
    ap.add_argument("-X", dest="props", action="append", default=[], help="librdkafka key=value")
    a = ap.parse_args(argv)
    if not a.version and not (a.bootstrap and a.topic and a.records):
        ap.error("--bootstrap, --topic and --records are required")
    return a


def config(a, reports):
    conf = {}
    for kv in a.props:
        k, sep, v = kv.partition("=")
        if not sep:
            raise ValueError(f"-X {kv}: expected key=value")
        conf[k] = v
    conf["bootstrap.servers"] = a.bootstrap
    conf["on_delivery"] = reports.on_delivery
    conf["error_cb"] = reports.on_error
    return conf


def run(a):
    headers = []
    for h in a.header:
        name, sep, value = h.partition("=")
        if not sep:
            raise ValueError(f"--header {h}: expected NAME=VALUE")
        headers.append((name, value.encode()))
    records = read_records(a.records, headers)
    if not records:
        raise ValueError(f"{a.records}: no records")
    reports = Reports()
    producer = Producer(config(a, reports))

    warm = records[: max(0, min(a.warmup, len(records)))]
    if warm:
        produce_all(producer, a.topic, warm)
        flush(producer)
        check(reports, len(warm), "warm-up")
    reports.reset()

    cpu0 = time.process_time()
    t0 = time.perf_counter()
    produce_all(producer, a.topic, records)
    flush(producer)
    elapsed = time.perf_counter() - t0
    cpu = time.process_time() - cpu0

    lat = sorted(reports.latencies)
    print(
        "delivered={} errors={} elapsed_ms={:.3f} cpu_ms={:.3f} p50_us={:.0f} p99_us={:.0f} "
        "p999_us={:.0f} {}".format(
            reports.delivered,
            reports.errors,
            elapsed * 1e3,
            cpu * 1e3,
            quantile_us(lat, 0.5),
            quantile_us(lat, 0.99),
            quantile_us(lat, 0.999),
            versions(),
        ),
        flush=True,
    )
    check(reports, len(records), "measured run")


def main(argv):
    a = parse_args(argv)
    if a.version:
        print(versions())
        return 0
    try:
        run(a)
    except (KafkaException, RuntimeError, ValueError, OSError) as e:
        print(f"produce_baseline: error: {e}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
