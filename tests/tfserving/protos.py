"""TF Serving's config protos that the ``tensorflow-serving-api`` wheel does not ship.

The wheel has ``tensorflow_serving.config.model_server_config_pb2`` but neither
``tensorflow_serving/servables/tensorflow/session_bundle_config.proto`` (``BatchingParameters``, what
``--batching_parameters_file`` holds) nor ``tensorflow_serving/config/monitoring_config.proto`` (what
``--monitoring_config_file`` holds). When the installed wheel has them, they are used as they are. Otherwise the
two files are registered here from their serialized ``FileDescriptorProto``: compiled, unchanged, from the
tensorflow/serving sources at tag 2.19.0 (commit c491ba6554e4ea41cd4ae0eba9012b762fb2b455, the version of the
operator's default image) with ``grpc_tools.protoc --descriptor_set_out`` (grpcio-tools 1.85.1, libprotoc 35.1).
They keep their file names and the package ``tensorflow.serving``, so the messages are TF Serving's own
(``session_bundle_config.proto`` refers to TensorFlow's ``ConfigProto``, ``BatchingOptions`` and
``NamedTensorProto``, taken from the TensorFlow wheel's descriptors). To regenerate: take the two files from that
tag, run protoc with TensorFlow's ``tensorflow/core/protobuf`` on the include path, and base64 the two
``FileDescriptorProto`` entries of the set.
"""

from __future__ import annotations

import base64
from typing import Any

from google.protobuf import descriptor_pool, message_factory

SESSION_BUNDLE_CONFIG_FILE = "tensorflow_serving/servables/tensorflow/session_bundle_config.proto"
MONITORING_CONFIG_FILE = "tensorflow_serving/config/monitoring_config.proto"

SESSION_BUNDLE_CONFIG = (
    "CkN0ZW5zb3JmbG93X3NlcnZpbmcvc2VydmFibGVzL3RlbnNvcmZsb3cvc2Vzc2lvbl9idW5kbGVfY29uZmlnLnByb3RvEhJ0ZW5zb3JmbG93LnNl"
    "cnZpbmcaHmdvb2dsZS9wcm90b2J1Zi93cmFwcGVycy5wcm90bxoldGVuc29yZmxvdy9jb3JlL3Byb3RvYnVmL2NvbmZpZy5wcm90bxordGVuc29y"
    "Zmxvdy9jb3JlL3Byb3RvYnVmL25hbWVkX3RlbnNvci5wcm90byLDAgoSTW9kZWxXYXJtdXBPcHRpb25zElEKFm51bV9yZXF1ZXN0X2l0ZXJhdGlv"
    "bnMYASABKAsyGy5nb29nbGUucHJvdG9idWYuSW50MzJWYWx1ZVIUbnVtUmVxdWVzdEl0ZXJhdGlvbnMSVAoYbnVtX21vZGVsX3dhcm11cF90aHJl"
    "YWRzGAIgASgLMhsuZ29vZ2xlLnByb3RvYnVmLkludDMyVmFsdWVSFW51bU1vZGVsV2FybXVwVGhyZWFkcxIdCgptb2RlbF9uYW1lGAMgASgJUglt"
    "b2RlbE5hbWUSIwoNbW9kZWxfdmVyc2lvbhgEIAEoA1IMbW9kZWxWZXJzaW9uEkAKHWVuYWJsZV9hbGxfYmF0Y2hfc2l6ZXNfd2FybXVwGAUgASgI"
    "UhllbmFibGVBbGxCYXRjaFNpemVzV2FybXVwIuwLChNTZXNzaW9uQnVuZGxlQ29uZmlnEiUKDnNlc3Npb25fdGFyZ2V0GAEgASgJUg1zZXNzaW9u"
    "VGFyZ2V0Ej4KDnNlc3Npb25fY29uZmlnGAIgASgLMhcudGVuc29yZmxvdy5Db25maWdQcm90b1INc2Vzc2lvbkNvbmZpZxJXChNiYXRjaGluZ19w"
    "YXJhbWV0ZXJzGAMgASgLMiYudGVuc29yZmxvdy5zZXJ2aW5nLkJhdGNoaW5nUGFyYW1ldGVyc1ISYmF0Y2hpbmdQYXJhbWV0ZXJzElwKHGluX2dy"
    "YXBoX2JhdGNoaW5nX3BhcmFtZXRlcnMYByABKAsyGy50ZW5zb3JmbG93LkJhdGNoaW5nT3B0aW9uc1IZaW5HcmFwaEJhdGNoaW5nUGFyYW1ldGVy"
    "cxJlCiFzZXNzaW9uX3J1bl9sb2FkX3RocmVhZHBvb2xfaW5kZXgYBCABKAsyGy5nb29nbGUucHJvdG9idWYuSW50MzJWYWx1ZVIdc2Vzc2lvblJ1"
    "bkxvYWRUaHJlYWRwb29sSW5kZXgSXQosZXhwZXJpbWVudGFsX3RyYW5zaWVudF9yYW1fYnl0ZXNfZHVyaW5nX2xvYWQYBSABKARSJ2V4cGVyaW1l"
    "bnRhbFRyYW5zaWVudFJhbUJ5dGVzRHVyaW5nTG9hZBIoChBzYXZlZF9tb2RlbF90YWdzGAYgAygJUg5zYXZlZE1vZGVsVGFncxJmCiBleHBlcmlt"
    "ZW50YWxfZml4ZWRfaW5wdXRfdGVuc29ycxiKBiADKAsyHC50ZW5zb3JmbG93Lk5hbWVkVGVuc29yUHJvdG9SHWV4cGVyaW1lbnRhbEZpeGVkSW5w"
    "dXRUZW5zb3JzEi8KE2VuYWJsZV9tb2RlbF93YXJtdXAYiwYgASgIUhFlbmFibGVNb2RlbFdhcm11cBJZChRtb2RlbF93YXJtdXBfb3B0aW9ucxiM"
    "BiABKAsyJi50ZW5zb3JmbG93LnNlcnZpbmcuTW9kZWxXYXJtdXBPcHRpb25zUhJtb2RlbFdhcm11cE9wdGlvbnMSNwoXZW5hYmxlX3Nlc3Npb25f"
    "bWV0YWRhdGEYjQYgASgIUhVlbmFibGVTZXNzaW9uTWV0YWRhdGESWgoqcmVtb3ZlX3VudXNlZF9maWVsZHNfZnJvbV9idW5kbGVfbWV0YWdyYXBo"
    "GI4GIAEoCFIlcmVtb3ZlVW51c2VkRmllbGRzRnJvbUJ1bmRsZU1ldGFncmFwaBIvChNwcmVmZXJfdGZsaXRlX21vZGVsGI8GIAEoCFIRcHJlZmVy"
    "VGZsaXRlTW9kZWwSWwoqcmVzb3VyY2VfZXN0aW1hdGlvbl91c2VzX3ZhbGlkYXRpb25fcmVzdWx0GJAGIAEoCFImcmVzb3VyY2VFc3RpbWF0aW9u"
    "VXNlc1ZhbGlkYXRpb25SZXN1bHQSOwoXbnVtX3RmbGl0ZV9pbnRlcnByZXRlcnMYkQYgASgFQgIYAVIVbnVtVGZsaXRlSW50ZXJwcmV0ZXJzEkcK"
    "IG51bV90ZmxpdGVfaW50ZXJwcmV0ZXJzX3Blcl9wb29sGJIGIAEoBVIcbnVtVGZsaXRlSW50ZXJwcmV0ZXJzUGVyUG9vbBIpChBudW1fdGZsaXRl"
    "X3Bvb2xzGJMGIAEoBVIObnVtVGZsaXRlUG9vbHMSUAold3JhcF9zZXNzaW9uX3dpdGhfbm9fdGhyZWFkaW5nX3BhcmFtcxiUBiABKAhSIHdyYXBT"
    "ZXNzaW9uV2l0aE5vVGhyZWFkaW5nUGFyYW1zEkcKIGVuYWJsZV9wZXJfbW9kZWxfYmF0Y2hpbmdfcGFyYW1zGJUGIAEoCFIcZW5hYmxlUGVyTW9k"
    "ZWxCYXRjaGluZ1BhcmFtcxI6ChllbmFibGVfc2F2ZWRfbW9kZWxfY29uZmlnGJYGIAEoCFIWZW5hYmxlU2F2ZWRNb2RlbENvbmZpZxIoCg9taXhl"
    "ZF9wcmVjaXNpb24YlwYgASgJUg5taXhlZFByZWNpc2lvbiKmBQoSQmF0Y2hpbmdQYXJhbWV0ZXJzEkEKDm1heF9iYXRjaF9zaXplGAEgASgLMhsu"
    "Z29vZ2xlLnByb3RvYnVmLkludDY0VmFsdWVSDG1heEJhdGNoU2l6ZRJNChRiYXRjaF90aW1lb3V0X21pY3JvcxgCIAEoCzIbLmdvb2dsZS5wcm90"
    "b2J1Zi5JbnQ2NFZhbHVlUhJiYXRjaFRpbWVvdXRNaWNyb3MSTQoUbWF4X2VucXVldWVkX2JhdGNoZXMYAyABKAsyGy5nb29nbGUucHJvdG9idWYu"
    "SW50NjRWYWx1ZVISbWF4RW5xdWV1ZWRCYXRjaGVzEkcKEW51bV9iYXRjaF90aHJlYWRzGAQgASgLMhsuZ29vZ2xlLnByb3RvYnVmLkludDY0VmFs"
    "dWVSD251bUJhdGNoVGhyZWFkcxJGChB0aHJlYWRfcG9vbF9uYW1lGAUgASgLMhwuZ29vZ2xlLnByb3RvYnVmLlN0cmluZ1ZhbHVlUg50aHJlYWRQ"
    "b29sTmFtZRJbChxlbmFibGVfbGFyZ2VfYmF0Y2hfc3BsaXR0aW5nGAggASgLMhouZ29vZ2xlLnByb3RvYnVmLkJvb2xWYWx1ZVIZZW5hYmxlTGFy"
    "Z2VCYXRjaFNwbGl0dGluZxJUChhtYXhfZXhlY3V0aW9uX2JhdGNoX3NpemUYCSABKAsyGy5nb29nbGUucHJvdG9idWYuSW50NjRWYWx1ZVIVbWF4"
    "RXhlY3V0aW9uQmF0Y2hTaXplEi4KE2FsbG93ZWRfYmF0Y2hfc2l6ZXMYBiADKANSEWFsbG93ZWRCYXRjaFNpemVzEjsKGnBhZF92YXJpYWJsZV9s"
    "ZW5ndGhfaW5wdXRzGAcgASgIUhdwYWRWYXJpYWJsZUxlbmd0aElucHV0c2IGcHJvdG8z"
)
MONITORING_CONFIG = (
    "CjF0ZW5zb3JmbG93X3NlcnZpbmcvY29uZmlnL21vbml0b3JpbmdfY29uZmlnLnByb3RvEhJ0ZW5zb3JmbG93LnNlcnZpbmciPgoQUHJvbWV0aGV1"
    "c0NvbmZpZxIWCgZlbmFibGUYASABKAhSBmVuYWJsZRISCgRwYXRoGAIgASgJUgRwYXRoImUKEE1vbml0b3JpbmdDb25maWcSUQoRcHJvbWV0aGV1"
    "c19jb25maWcYASABKAsyJC50ZW5zb3JmbG93LnNlcnZpbmcuUHJvbWV0aGV1c0NvbmZpZ1IQcHJvbWV0aGV1c0NvbmZpZ0ID+AEBYgZwcm90bzM="
)


def _register(file_name: str, serialized_base64: str) -> None:
    pool = descriptor_pool.Default()
    try:
        pool.FindFileByName(file_name)
    except KeyError:
        pool.AddSerializedFile(base64.b64decode("".join(serialized_base64)))


def _message(full_name: str) -> Any:
    return message_factory.GetMessageClass(descriptor_pool.Default().FindMessageTypeByName(full_name))


def batching_parameters_class() -> Any:
    """``tensorflow.serving.BatchingParameters``."""
    try:
        from tensorflow_serving.servables.tensorflow import session_bundle_config_pb2

        return session_bundle_config_pb2.BatchingParameters
    except ImportError:
        # Its imports: the wrappers and TensorFlow's own protos, registered by importing their modules.
        from google.protobuf import wrappers_pb2  # noqa: F401
        from tensorflow.core.protobuf import config_pb2, named_tensor_pb2  # noqa: F401

        _register(SESSION_BUNDLE_CONFIG_FILE, SESSION_BUNDLE_CONFIG)
        return _message("tensorflow.serving.BatchingParameters")


def monitoring_config_class() -> Any:
    """``tensorflow.serving.MonitoringConfig``."""
    try:
        from tensorflow_serving.config import monitoring_config_pb2

        return monitoring_config_pb2.MonitoringConfig
    except ImportError:
        _register(MONITORING_CONFIG_FILE, MONITORING_CONFIG)
        return _message("tensorflow.serving.MonitoringConfig")
