//! zmaster-examples: example servers.
