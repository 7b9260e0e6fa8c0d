//! zmaster-stress: load, chaos and benchmark harness.
