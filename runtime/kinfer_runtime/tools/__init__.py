"""The data tools of the ``kinfer`` command (produce, replay, score, demo) and their helpers."""
