"""Autoscaling on consumer lag (issue 5): lag engine, Kafka poller, external metrics API, HPA/KEDA builders.

Pure parts: ``lag``, ``progress``, ``replicas``, ``engine``, ``builders``, ``status``. Side effects are kept
in ``poller`` (Kafka AdminClient), ``monitor`` (the poll loop the operator starts) and ``metrics_api``
(the aiohttp server behind the APIService). See ``docs/autoscaling.md``.
"""
