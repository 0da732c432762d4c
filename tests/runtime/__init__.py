"""Unit and integration tests of kinfer_runtime."""
