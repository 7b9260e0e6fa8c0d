//! zmaster-pool: the epoll acceptor thread and the crossbeam worker pool.
