"""The runtime's Kafka side: librdkafka settings from the spec, client events, bounded topic reads."""
