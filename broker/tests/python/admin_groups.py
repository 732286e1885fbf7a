#!/usr/bin/env python3
"""Kafka's AdminClient group calls against a broker, for the tests: confluent-kafka (librdkafka)
lists, describes and deletes groups and lists and alters a group's committed offsets;
kafka-python deletes some of them (confluent-kafka's Python API has no DeleteConsumerGroupOffsets).

  admin_groups.py --bootstrap HOST:PORT --group G --topic T --partitions N STEP...

Steps, run in order, each printing one JSON object on stdout:
  list                {"step": "list", "groups": {"g": "state", ...}}
  describe            {"step": "describe", "state": s, "members": n, "assignor": a}
  offsets             {"step": "offsets", "offsets": {"p": offset or -1, ...}}
  alter:P=O           {"step": "alter", "offsets": {"p": offset}}        (commits offset O on P)
  delete-offsets:P    {"step": "delete-offsets", "deleted": [p]}          (kafka-python)
  delete              {"step": "delete", "deleted": true}
A failing step prints {"step": ..., "error": "..."} and the script goes on.
"""

import argparse
import json
import sys

from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

TIMEOUT = 20


def emit(obj):
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--group", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--partitions", type=int, required=True)
    parser.add_argument("steps", nargs="+")
    args = parser.parse_args()
    admin = AdminClient({"bootstrap.servers": args.bootstrap})
    group = args.group

    def every_partition():
        return [TopicPartition(args.topic, p) for p in range(args.partitions)]

    for step in args.steps:
        name, _, arg = step.partition(":")
        try:
            if name == "list":
                result = admin.list_consumer_groups(request_timeout=TIMEOUT).result()
                groups = {g.group_id: str(g.state).split(".")[-1] for g in result.valid}
                emit({"step": "list", "groups": groups, "errors": [str(e) for e in result.errors]})
            elif name == "describe":
                d = admin.describe_consumer_groups([group], request_timeout=TIMEOUT)[group].result()
                emit({
                    "step": "describe",
                    "state": str(d.state).split(".")[-1],
                    "members": len(d.members),
                    "assignor": d.partition_assignor,
                })
            elif name == "offsets":
                request = [ConsumerGroupTopicPartitions(group, every_partition())]
                r = admin.list_consumer_group_offsets(request, request_timeout=TIMEOUT)[group].result()
                offsets = {str(tp.partition): tp.offset for tp in r.topic_partitions}
                emit({"step": "offsets", "offsets": offsets})
            elif name == "alter":
                p, o = (int(x) for x in arg.split("="))
                request = [ConsumerGroupTopicPartitions(group, [TopicPartition(args.topic, p, o)])]
                r = admin.alter_consumer_group_offsets(request, request_timeout=TIMEOUT)[group].result()
                errors = [str(tp.error) for tp in r.topic_partitions if tp.error is not None]
                if errors:
                    raise RuntimeError("; ".join(errors))
                emit({"step": "alter", "offsets": {str(tp.partition): tp.offset for tp in r.topic_partitions}})
            elif name == "delete-offsets":
                from kafka.admin import KafkaAdminClient
                from kafka.structs import TopicPartition as KTopicPartition

                k = KafkaAdminClient(bootstrap_servers=args.bootstrap)
                try:
                    result = k.delete_group_offsets(group, [KTopicPartition(args.topic, int(arg))])
                finally:
                    k.close()
                # Values are error classes; NoError on success.
                failed = {str(tp): e.__name__ for tp, e in result.items() if e.__name__ != "NoError"}
                if failed:
                    raise RuntimeError(json.dumps(failed))
                emit({"step": "delete-offsets", "deleted": [int(arg)]})
            elif name == "delete":
                admin.delete_consumer_groups([group], request_timeout=TIMEOUT)[group].result()
                emit({"step": "delete", "deleted": True})
            else:
                raise ValueError("unknown step " + step)
        except Exception as e:  # noqa: BLE001 - every failure is reported to the test
            emit({"step": name, "error": "%s: %s" % (e.__class__.__name__, e)})


if __name__ == "__main__":
    main()
