//! zmaster: the master process (supervisor library).
