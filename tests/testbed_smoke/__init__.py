"""Smoke tests proving that every part of the test bed is a real, working component."""
