"""Preprocessing: raw record values of a batch to the model's input tensors, vectorised, with a reason for each bad
record. Pure: no Kafka, no TensorFlow."""
