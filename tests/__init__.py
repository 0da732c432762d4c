"""kinfer's tests: unit tests of pure code, and integration tests against the local test bed."""
