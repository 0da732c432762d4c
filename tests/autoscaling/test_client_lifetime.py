"""A closed lag poller leaves no Kafka client for the garbage collector to destroy in librdkafka's own thread.

Run in a child process: what is checked is that the process survives. The child holds a poller in a reference
cycle (as the external metrics API server and its monitor are), with an admin request still in flight (as one
is after a ``result()`` timed out), closes it, drops it, and lets the request's result callback run with the
collector armed on every allocation. A client the collector reaches there is destroyed from the thread of that
very callback, which librdkafka refuses by aborting the process.
"""

from __future__ import annotations

import subprocess
import sys
import textwrap

CHILD = textwrap.dedent(
    """
    import gc, threading
    from confluent_kafka import TopicCollection
    from kinfer_operator.autoscaling.poller import KafkaLagPoller

    class Owner:  # something in a reference cycle that holds the poller
        pass

    gc.disable()
    gc.set_threshold(1, 1, 1)
    owner = Owner()
    owner.me = owner
    owner.poller = KafkaLagPoller({"bootstrap.servers": "127.0.0.1:1", "log_level": 0}, 1.0)
    answered = threading.Lock()  # a bare lock: waiting on it allocates nothing, so no collection runs here
    answered.acquire()
    futures = owner.poller.admin.describe_topics(TopicCollection(["t"]), request_timeout=1.0)
    futures["t"].add_done_callback(lambda _: answered.release())
    owner.poller.close()
    del owner, futures
    gc.enable()
    assert answered.acquire(timeout=10), "the request never completed"
    print("survived")
    """
)


def test_closed_poller_survives_collection_during_an_admin_callback() -> None:
    child = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60)
    assert child.returncode == 0 and "survived" in child.stdout, (child.returncode, child.stderr[-2000:])
