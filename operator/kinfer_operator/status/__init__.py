"""Pure status logic: spec checks before anything is made, conditions, and the status document with its Events."""
