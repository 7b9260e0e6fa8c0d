//! zmaster-core: config model, service addresses, the master/server protocol, logging.
