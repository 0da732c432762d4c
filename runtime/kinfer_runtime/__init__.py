"""kinfer's runtime: the consume → preprocess → predict → produce loop that every InferencePipeline runs.

It also owns the typed model of the InferencePipeline spec (:mod:`kinfer_runtime.spec`), which the operator
and the generated CRD share, so that the YAML a user applies is exactly what the runtime reads.
"""

__version__ = "0.1.0"
