"""The rain stream on a durable log: producers -> NATS JetStream -> Spark Structured Streaming ->
minute files in the object store and a real-time view; Dagster loads completed minutes.

- ``log``: the stream, its subjects and key-value buckets, created idempotently.
- ``messages``: what producers publish, and the one parser both the processor and Dagster use.
- ``progress``: when a minute is complete (every shard's end marker seen).
- ``minute_store``: the processor's per-minute output in the object store.
- ``minute_log``: one minute read back from the log alone.
- ``minute_fetch``: the producer code path (fetch a minute of shards, publish it).
- ``producer``/``leases``, ``jetstream_source``/``processor``, ``services``: the services.
- ``realtime``: the real-time view, the latest next-hour total per coordinate.
"""
