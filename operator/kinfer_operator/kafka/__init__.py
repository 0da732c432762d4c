"""The pipeline's Kafka topics: the pure plan (``topic_plan``) and the AdminClient layer that carries it out."""
