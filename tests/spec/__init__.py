"""Unit tests of the shared InferencePipeline spec model."""
