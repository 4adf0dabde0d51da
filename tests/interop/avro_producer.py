#!/usr/bin/env python3
"""An independent Avro producer: "another team's service" writing order events.

It uses confluent-kafka's own AvroSerializer and SchemaRegistryClient (not our Rust code), registers
its own newer version of io.orderstream.orders.OrderEvent itself (auto.register.schemas=True,
normalize.schemas=False) and produces with it, so our Rust consumers can be tested reading it.

Variants (--variant):
  optional-field  v3 + a last field gift_message ["null","string"] default null (record doc says
                  version 4). Subject <topic>-value. 4 events per order: CREATED, PAID, SHIPPED,
                  DELIVERED (sequence 0..3), gift_message non-null on every event.
  enum-symbol     v3 with RETURNED appended to the EventType symbols (default stays UNKNOWN).
                  Subject <topic>-value. The same 4 events per order, plus a 5th RETURNED
                  (sequence 4) for even order numbers.
  unreadable      v3 with amount_minor a string, registered under <topic>-rogue-value (its own
                  subject, so the orders subject's compatibility rule never sees it). Exactly one
                  event (CREATED, sequence 0, order number --first-order) to the same topic.

Records: order n (n = first_order .. first_order+orders-1) has order_id "py-<topic>-<n>" (also the
Kafka key, UTF-8), customer_id "c-<n % 7>", amount_minor 1000+n, currency EUR, one line item
{sku "sku-<n>", quantity 1, unit_price_minor 1000+n}, occurred_at_micros now, note null,
channel "python". event_id = uuid5(NAMESPACE_URL, "orderstream:<topic>:<n>:<sequence>"), lowercase
hyphenated text.

stdout: one JSON line per delivered record
  {"order_id","event_id","event_type","sequence","partition","offset","schema_id"}
(schema_id = bytes 1..5 of the value, big-endian). Nothing else goes to stdout; diagnostics go to
stderr. Exit status: 0 when every record was delivered, 1 when any delivery (or the schema
registration) failed, 2 on usage errors.

Needs: confluent-kafka[avro]==2.16.1 (fastavro, avro, httpx2, authlib, attrs, cachetools, ...).
"""

import argparse
import copy
import json
import os
import sys
import time
import uuid

from confluent_kafka import KafkaException, Producer
from confluent_kafka.schema_registry import SchemaRegistryClient, topic_subject_name_strategy
from confluent_kafka.schema_registry.avro import AvroSerializer
from confluent_kafka.schema_registry.error import SchemaRegistryError
from confluent_kafka.serialization import MessageField, SerializationContext, StringSerializer

VARIANTS = ("optional-field", "enum-symbol", "unreadable")
LIFECYCLE = ("CREATED", "PAID", "SHIPPED", "DELIVERED")
DEFAULT_SCHEMA = os.path.join(
    os.path.dirname(os.path.abspath(__file__)), "..", "..", "schemas", "order_event.v3.avsc"
)


def log(msg):
    print(f"avro_producer: {msg}", file=sys.stderr, flush=True)


def field(schema, name):
    for f in schema["fields"]:
        if f["name"] == name:
            return f
    raise SystemExit(f"avro_producer: base schema has no field {name!r}")


def variant_schema(v3, variant):
    """The writer schema of a variant, derived from our v3 schema (a dict)."""
    s = copy.deepcopy(v3)
    if variant == "optional-field":
        s["doc"] = (
            "One event in the life of an order. Keyed by order_id on Kafka. "
            "Version 4: adds the optional gift message."
        )
        s["fields"].append({"name": "gift_message", "type": ["null", "string"], "default": None})
    elif variant == "enum-symbol":
        enum = field(s, "event_type")["type"]
        enum["symbols"].append("RETURNED")
        if enum.get("default") != "UNKNOWN":
            raise SystemExit("avro_producer: base schema's EventType default is not UNKNOWN")
    elif variant == "unreadable":
        f = field(s, "amount_minor")
        f["type"] = "string"
        f["doc"] = "Order total as decimal text (rogue: not our long)."
    return s


def event_id(topic, n, seq):
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"orderstream:{topic}:{n}:{seq}"))


def events(args):
    """(key, record) pairs in production order."""
    now = time.time_ns() // 1000
    out = []
    if args.variant == "unreadable":
        plan = [(args.first_order, [(0, "CREATED")])]
    else:
        plan = []
        for n in range(args.first_order, args.first_order + args.orders):
            evs = list(enumerate(LIFECYCLE))
            if args.variant == "enum-symbol" and n % 2 == 0:
                evs.append((4, "RETURNED"))
            plan.append((n, evs))
    for n, evs in plan:
        order_id = f"py-{args.topic}-{n}"
        for seq, etype in evs:
            amount = 1000 + n
            rec = {
                "event_id": event_id(args.topic, n, seq),
                "order_id": order_id,
                "customer_id": f"c-{n % 7}",
                "sequence": seq,
                "event_type": etype,
                "amount_minor": f"{amount // 100}.{amount % 100:02d}" if args.variant == "unreadable" else amount,
                "currency": "EUR",
                "items": [{"sku": f"sku-{n}", "quantity": 1, "unit_price_minor": amount}],
                "occurred_at_micros": now,
                "note": None,
                "channel": "python",
            }
            if args.variant == "optional-field":
                rec["gift_message"] = f"Happy birthday from order {n} ({etype.lower()})"
            out.append((order_id, rec))
    return out


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bootstrap", default=os.environ.get("ORDERSTREAM_BOOTSTRAP"),
                   help="Kafka bootstrap servers (default $ORDERSTREAM_BOOTSTRAP)")
    p.add_argument("--registry-url", default=os.environ.get("ORDERSTREAM_REGISTRY_URL"),
                   help="Confluent-compatible registry base URL (default $ORDERSTREAM_REGISTRY_URL)")
    p.add_argument("--topic", required=True)
    p.add_argument("--orders", type=int, default=20, help="number of orders (default 20; unreadable: ignored)")
    p.add_argument("--first-order", type=int, default=0,
                   help="number of the first order (default 0); lets several runs share a topic")
    p.add_argument("--variant", required=True, choices=VARIANTS)
    p.add_argument("--base-schema", default=DEFAULT_SCHEMA, help="our v3 schema (default schemas/order_event.v3.avsc)")
    p.add_argument("--partitioner", default="murmur2_random",
                   help="librdkafka partitioner (default murmur2_random: Java-compatible key hashing)")
    p.add_argument("--timeout", type=float, default=60.0, help="seconds to wait for deliveries (default 60)")
    p.add_argument("--print-schema", action="store_true",
                   help="print the variant's schema JSON to stderr before producing")
    args = p.parse_args(argv)
    if not args.bootstrap:
        p.error("--bootstrap (or $ORDERSTREAM_BOOTSTRAP) is required")
    if not args.registry_url:
        p.error("--registry-url (or $ORDERSTREAM_REGISTRY_URL) is required")
    if args.orders < 1:
        p.error("--orders must be >= 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    with open(args.base_schema, encoding="utf-8") as fh:
        v3 = json.load(fh)
    schema = variant_schema(v3, args.variant)
    schema_str = json.dumps(schema, indent=2)
    if args.print_schema:
        print(schema_str, file=sys.stderr)

    if args.variant == "unreadable":
        def strategy(ctx, record_name):
            return f"{ctx.topic}-rogue-{ctx.field}"
    else:
        strategy = topic_subject_name_strategy
    subject = strategy(SerializationContext(args.topic, MessageField.VALUE), None)

    registry = SchemaRegistryClient({"url": args.registry_url})
    value_ser = AvroSerializer(
        registry,
        schema_str,
        conf={
            "auto.register.schemas": True,
            "normalize.schemas": False,
            "subject.name.strategy": strategy,
        },
    )
    key_ser = StringSerializer("utf_8")

    producer = Producer({
        "bootstrap.servers": args.bootstrap,
        "enable.idempotence": True,
        "acks": "all",
        "partitioner": args.partitioner,
        "client.id": f"orderstream-python-{args.variant}",
        "linger.ms": 5,
        "message.timeout.ms": int(args.timeout * 1000),
    })

    failures = []
    delivered = [0]
    schema_ids = set()

    def on_delivery(err, msg, meta):
        if err is not None:
            failures.append(f"{meta['order_id']} seq {meta['sequence']}: {err}")
            log(f"delivery failed: {meta['order_id']} seq {meta['sequence']}: {err}")
            return
        value = msg.value()
        delivered[0] += 1
        schema_ids.add(int.from_bytes(value[1:5], "big"))
        print(json.dumps({
            **meta,
            "partition": msg.partition(),
            "offset": msg.offset(),
            "schema_id": int.from_bytes(value[1:5], "big"),
        }), flush=True)

    todo = events(args)
    log(f"variant {args.variant}: {len(todo)} events to topic {args.topic}, subject {subject}")
    for key, rec in todo:
        ctx = SerializationContext(args.topic, MessageField.VALUE)
        try:
            value = value_ser(rec, ctx)
        except SchemaRegistryError as e:
            log(f"schema registration under {subject} failed: HTTP {e.http_status_code} "
                f"error_code {e.error_code}: {e.error_message}")
            producer.flush(args.timeout)
            return 1
        meta = {"order_id": rec["order_id"], "event_id": rec["event_id"],
                "event_type": rec["event_type"], "sequence": rec["sequence"]}
        while True:
            try:
                producer.produce(
                    args.topic,
                    key=key_ser(key, SerializationContext(args.topic, MessageField.KEY)),
                    value=value,
                    on_delivery=lambda err, msg, meta=meta: on_delivery(err, msg, meta),
                )
                break
            except BufferError:
                producer.poll(0.1)
            except KafkaException as e:
                log(f"produce failed: {e}")
                failures.append(str(e))
                break
        producer.poll(0)

    remaining = producer.flush(args.timeout)
    if remaining:
        failures.append(f"{remaining} record(s) still undelivered after {args.timeout}s")
        log(f"{remaining} record(s) still undelivered after flush({args.timeout})")
    if failures:
        log(f"FAILED: {len(failures)} failure(s), {delivered[0]} of {len(todo)} delivered")
        return 1
    log(f"delivered {delivered[0]} record(s); schema id(s) in the values: {sorted(schema_ids)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
