"""The records kinfer writes: the output record of a scored input, and the dead-letter record of one that failed."""
