//! The coroutine mode: an M:N stackful-coroutine scheduler.
