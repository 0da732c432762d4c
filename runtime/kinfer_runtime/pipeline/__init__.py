"""The hot path of ``kinfer run``: consume a batch, preprocess, predict, produce, commit.

The loop (``loop``) runs the stages; the delivery sides (``at_least_once``, ``exactly_once``) and the
partition assignment (``assignment``) get the Kafka clients and callbacks they need, never the loop itself."""
