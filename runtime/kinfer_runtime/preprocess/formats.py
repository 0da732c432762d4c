"""The preprocessor for a pipeline's record format (``spec.preprocessing.format``): JSON objects or Avro records
through the feature spec, tensor records read as they are, or encoded images decoded into the model's input.
The live loop, a rollout's candidate and ``kinfer score`` all build theirs here, so the three read records the
same way."""

from __future__ import annotations

from kinfer_runtime.preprocess.avro_records import AvroPreprocessor
from kinfer_runtime.preprocess.image_records import ImagePreprocessor
from kinfer_runtime.preprocess.preprocessor import Preprocessor
from kinfer_runtime.preprocess.tensor_records import TensorPreprocessor
from kinfer_runtime.spec import InferencePipelineSpec, RecordFormat
from kinfer_runtime.spec.model_metadata import ModelMetadata


def build_preprocessor(
    spec: InferencePipelineSpec, metadata: ModelMetadata
) -> Preprocessor | TensorPreprocessor | ImagePreprocessor:
    if spec.preprocessing.format is RecordFormat.TENSOR:
        return TensorPreprocessor.from_spec(spec, metadata)
    if spec.preprocessing.format is RecordFormat.IMAGE:
        return ImagePreprocessor.from_spec(spec, metadata)
    if spec.preprocessing.format is RecordFormat.AVRO:
        return AvroPreprocessor.from_spec(spec, metadata)
    return Preprocessor.from_spec(spec, metadata)
