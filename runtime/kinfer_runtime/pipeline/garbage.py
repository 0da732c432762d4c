"""How the runtime's process uses Python's cyclic garbage collector (reference counting frees everything else).

The loop's records are not cyclic: a decoded JSON object, an output's header list or a delivery callback is freed
by reference counting as soon as its batch is done with it. The cyclic collector only finds nothing in them, at a
cost. Two settings keep that cost out of the loop:

- Everything alive once the model is loaded (TensorFlow, the model, imported modules: about 280,000 objects) is
  frozen, out of the collector's reach. A full collection over them took 143-165 ms on the test machine, a stall
  of the whole loop that came back every few seconds under load and made the p99 of end-to-end latency.
- The youngest generation is collected after 50,000 more container allocations than deallocations instead of
  Python's 700. A 256-record batch holds a few thousand containers alive at once, so with 700 every batch set off
  several young collections, each scanning the batch's live objects, and every tenth an older one: 2,136, 194 and
  15 collections of the three generations in 300,000 records, 0.16 s of the loop's time (0.53 µs per record, about
  5 % of its work), measured with ``gc.callbacks`` in a ``kinfer run`` of the bench's fraud records. With 50,000,
  none. Real cycles (an exception's traceback, a closure) are still collected, at most 50,000 objects late.
"""

from __future__ import annotations

import gc

YOUNG_GENERATION_THRESHOLD = 50_000


def settle_garbage_collector() -> None:
    """Freeze every object alive now and set the young generation's threshold. Called once the model is loaded, and
    after each reload (unfreezing first, so that the previous version's cycles can be collected: one full
    collection per reload)."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, older, oldest)
