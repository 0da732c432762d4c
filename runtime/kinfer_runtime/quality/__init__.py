"""What the runtime measures about the model's inputs beyond their validity: drift from the training data. Pure:
no Kafka, no TensorFlow."""
