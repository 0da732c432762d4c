"""``make bench``: kinfer against its alternatives on one broker, same records and model (issue 3, item 12).

Run as ``python -m tests.bench``. It is a benchmark, not a test: it prints figures and writes
``.bench/results.json``; nothing in it passes or fails on speed.
"""
