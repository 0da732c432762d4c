"""Tests of kinfer on real pods: the chart, pipelines, autoscaling and chaos on the test bed's real node."""
