"""A stock client's round trip (issue 16, part 3): confluent-kafka produces one 100-byte record
(acks=all, idempotent, linger 0), flushes, and polls it back (fetch.wait.max.ms 500,
fetch.min.bytes 1, the defaults); ROUNDS times after 200 warm-up rounds. Prints p50/p99/p99.9.

    python3 scripts/stock-e2e.py BOOTSTRAP TOPIC ROUNDS    (TOPIC: fresh, partition 0 is used)
"""
import sys
import time

from confluent_kafka import Consumer, Producer, TopicPartition

bootstrap, topic, rounds = sys.argv[1], sys.argv[2], int(sys.argv[3])
producer = Producer({'bootstrap.servers': bootstrap, 'acks': 'all', 'linger.ms': 0,
                     'enable.idempotence': True})
consumer = Consumer({'bootstrap.servers': bootstrap, 'group.id': 'stock-e2e',
                     'enable.auto.commit': False, 'fetch.wait.max.ms': 500,
                     'fetch.min.bytes': 1})
consumer.assign([TopicPartition(topic, 0, -2)])  # from the beginning: the topic is fresh
payload = b'x' * 100


def round_trip():
    start = time.perf_counter()
    producer.produce(topic, payload, partition=0)
    producer.flush()
    while True:
        m = consumer.poll(1.0)
        if m is not None and not m.error():
            return time.perf_counter() - start


for _ in range(200):
    round_trip()
lat = sorted(round_trip() for _ in range(rounds))
q = lambda f: lat[min(len(lat) - 1, int(f * len(lat)))] * 1e3
print(f'confluent-kafka {rounds} rounds: p50 {q(0.5):.3f} ms, p99 {q(0.99):.3f} ms, '
      f'p99.9 {q(0.999):.3f} ms, max {lat[-1] * 1e3:.3f} ms')
