//! The aio mode: callbacks dispatched on the worker pool.
