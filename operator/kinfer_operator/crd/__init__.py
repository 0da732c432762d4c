"""The InferencePipeline CRD, generated from the spec model (``kinfer crdgen``)."""
