"""Independent receivers of orderstream's notifications: pika for RabbitMQ, nats-py for NATS
JetStream. Not our code reading our messages: what a receiving service would run.

  notify_receiver.py rabbitmq URL QUEUE [--reject N] [--dead QUEUE]
      drain QUEUE (a consumer, until it stays empty for 3 s), rejecting (requeue=false) the first N messages and
      acking the rest; then drain the dead-letter queue DEAD. Prints one JSON object:
      {"received": [...], "rejected": [...], "dead": [...]}
  notify_receiver.py rabbitmq-depth URL QUEUE AT_LEAST TIMEOUT_S
      ask QUEUE's message count (a passive declare) every 20 ms until it is at least AT_LEAST
      or TIMEOUT_S pass; consumes nothing. Prints {"depth": N} (the last count seen).
  notify_receiver.py rabbitmq-delete-queue URL QUEUE
      delete QUEUE (to make messages unroutable). Prints {"deleted": QUEUE}
  notify_receiver.py rabbitmq-delete URL NAME
      delete exchange NAME, its queue, and NAME.unroutable / NAME.dead with their queues (cleanup)
  notify_receiver.py nats-delete-stream URL STREAM
      delete STREAM (cleanup)
  notify_receiver.py nats URL STREAM SUBJECTS
      read every message of STREAM (filter SUBJECTS, e.g. prefix.>) with an ordered consumer.
      Prints {"received": [...]}

Each message is {"id": <broker message id>, "event_id": <body's event id>, "kind": ..., "v": ...,
"redelivered": bool, "reason": <x-death reason for dead letters>}.
"""

import asyncio
import json
import sys
import time

import pika


def describe(message_id, body, redelivered=False, reason=None):
    doc = json.loads(body)
    return {
        "id": message_id,
        "event_id": doc["event_id"],
        "kind": doc["kind"],
        "v": doc["v"],
        "redelivered": redelivered,
        "reason": reason,
    }


def drain(channel, queue, reject=0):
    """Consumes QUEUE (prefetch 500) until it stays empty for 3 s."""
    received, rejected = [], []
    channel.basic_qos(prefetch_count=500)
    for method, props, body in channel.consume(queue, inactivity_timeout=3):
        if method is None:
            break
        if len(rejected) < reject:
            channel.basic_reject(delivery_tag=method.delivery_tag, requeue=False)
            rejected.append(describe(props.message_id, body, method.redelivered))
        else:
            channel.basic_ack(delivery_tag=method.delivery_tag)
            received.append(describe(props.message_id, body, method.redelivered))
    channel.cancel()
    return received, rejected


def rabbitmq(url, queue, reject, dead):
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    received, rejected = drain(channel, queue, reject)
    dead_letters = []
    if dead:
        # Dead-lettering is asynchronous inside the broker: give the rejected ones a moment.
        for _ in range(50):
            count = channel.queue_declare(queue=dead, passive=True).method.message_count
            if count >= len(rejected):
                break
            connection.sleep(0.1)
        while True:
            method, props, body = channel.basic_get(queue=dead, auto_ack=True)
            if method is None:
                break
            deaths = (props.headers or {}).get("x-death") or [{}]
            reason = deaths[0].get("reason")
            if isinstance(reason, bytes):
                reason = reason.decode()
            dead_letters.append(describe(props.message_id, body, method.redelivered, reason))
    connection.close()
    print(json.dumps({"received": received, "rejected": rejected, "dead": dead_letters}))


def depth(url, queue, at_least, timeout_s):
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    deadline = time.monotonic() + timeout_s
    while True:
        count = channel.queue_declare(queue=queue, passive=True).method.message_count
        if count >= at_least or time.monotonic() >= deadline:
            break
        time.sleep(0.02)
    connection.close()
    print(json.dumps({"depth": count}))


def delete_queue(url, queue):
    connection = pika.BlockingConnection(pika.URLParameters(url))
    connection.channel().queue_delete(queue=queue)
    connection.close()
    print(json.dumps({"deleted": queue}))


def delete_all(url, name):
    connection = pika.BlockingConnection(pika.URLParameters(url))
    channel = connection.channel()
    for n in (name, name + ".unroutable", name + ".dead"):
        channel.queue_delete(queue=n)
        channel.exchange_delete(exchange=n)
    connection.close()
    print(json.dumps({"deleted": name}))


async def nats_delete(url, stream):
    import nats

    nc = await nats.connect(url)
    await nc.jetstream().delete_stream(stream)
    await nc.close()
    print(json.dumps({"deleted": stream}))


async def nats_read(url, stream, subjects):
    import nats

    nc = await nats.connect(url)
    js = nc.jetstream()
    info = await js.stream_info(stream)
    total = info.state.messages
    received = []
    sub = await js.subscribe(subjects, ordered_consumer=True, stream=stream)
    while len(received) < total:
        msg = await sub.next_msg(timeout=10)
        headers = msg.headers or {}
        received.append(describe(headers.get("Nats-Msg-Id"), msg.data))
    await sub.unsubscribe()
    await nc.close()
    print(json.dumps({"received": received}))


def main(argv):
    if len(argv) >= 3 and argv[0] == "rabbitmq":
        reject, dead = 0, None
        rest = argv[3:]
        while rest:
            if rest[0] == "--reject":
                reject = int(rest[1])
            elif rest[0] == "--dead":
                dead = rest[1]
            else:
                raise SystemExit(f"unknown option {rest[0]}")
            rest = rest[2:]
        rabbitmq(argv[1], argv[2], reject, dead)
    elif len(argv) == 5 and argv[0] == "rabbitmq-depth":
        depth(argv[1], argv[2], int(argv[3]), float(argv[4]))
    elif len(argv) == 3 and argv[0] == "rabbitmq-delete-queue":
        delete_queue(argv[1], argv[2])
    elif len(argv) == 3 and argv[0] == "rabbitmq-delete":
        delete_all(argv[1], argv[2])
    elif len(argv) == 3 and argv[0] == "nats-delete-stream":
        asyncio.run(nats_delete(argv[1], argv[2]))
    elif len(argv) == 4 and argv[0] == "nats":
        asyncio.run(nats_read(argv[1], argv[2], argv[3]))
    else:
        raise SystemExit(__doc__)


if __name__ == "__main__":
    main(sys.argv[1:])
