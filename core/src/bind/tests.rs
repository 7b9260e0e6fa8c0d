//! Tests of the bind module: real sockets and FIFOs in a temp dir, real ports on 127.0.0.1.

use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};

use super::*;

fn unix(path: &Path) -> Address {
    Address::Unix(path.to_path_buf())
}

fn fifo(path: &Path) -> Address {
    Address::Fifo(path.to_path_buf())
}

#[test]
fn inet_unix_and_fifo() {
    let dir = tempfile::tempdir().unwrap();
    let tcp = bind(&Address::Inet("127.0.0.1:0".parse().unwrap()), 16, None).unwrap();
    assert!(tcp.created.is_none());
    let tcp = std::net::TcpListener::from(tcp.fd);
    std::net::TcpStream::connect(tcp.local_addr().unwrap()).unwrap();
    let sock = dir.path().join("s.sock");
    let listener = bind(&unix(&sock), 16, Some(0o600)).unwrap();
    assert_eq!(
        fs::metadata(&sock).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        listener.created,
        Some((sock.clone(), file_id(&sock).unwrap()))
    );
    UnixStream::connect(&sock).unwrap();
    // A live socket is never taken over...
    let err = bind(&unix(&sock), 16, None).unwrap_err().to_string();
    assert!(
        err.starts_with(&format!("bind unix socket {}: ", sock.display())),
        "{err}"
    );
    assert!(err.contains("live socket"), "{err}");
    // ...a stale one is replaced.
    drop(listener);
    let again = bind(&unix(&sock), 16, None).unwrap();
    again.close();
    assert!(!sock.exists());
    let path = dir.path().join("f.fifo");
    let f = bind(&fifo(&path), 16, None).unwrap();
    assert!(f.created.is_none());
    assert!(fs::symlink_metadata(&path).unwrap().file_type().is_fifo());
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        FIFO_MODE
    );
    f.close();
    assert!(path.exists(), "a FIFO stays at close");
}

#[test]
fn listeners_are_nonblocking_and_cloexec_with_the_backlog() {
    use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let tcp = bind(&Address::Inet("127.0.0.1:0".parse().unwrap()), 3, None).unwrap();
    let uds = bind(&unix(&sock), 3, None).unwrap();
    for l in [&tcp, &uds] {
        let fl = OFlag::from_bits_truncate(fcntl(l.fd.as_fd(), FcntlArg::F_GETFL).unwrap());
        assert!(fl.contains(OFlag::O_NONBLOCK), "{fl:?}");
        let fd = FdFlag::from_bits_truncate(fcntl(l.fd.as_fd(), FcntlArg::F_GETFD).unwrap());
        assert!(fd.contains(FdFlag::FD_CLOEXEC));
    }
    let tcp = Socket::from(tcp.fd);
    assert!(tcp.reuse_address().unwrap(), "SO_REUSEADDR on inet");
    assert!(tcp.is_listener().unwrap());
    // The backlog reaches listen(2): with 3, a fourth..few queued connects fill it (Linux
    // queues backlog + 1) and a non-blocking connect then gets EAGAIN.
    let mut queued = Vec::new();
    let full = (0..64).any(|_| {
        let c = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        c.set_nonblocking(true).unwrap();
        match c.connect(&SockAddr::unix(&sock).unwrap()) {
            Ok(()) => {
                queued.push(c);
                false
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => true,
            Err(e) => panic!("{e}"),
        }
    });
    assert!(full, "the backlog was not applied");
    assert!(queued.len() <= 8, "backlog 3 queued {}", queued.len());
}

#[test]
fn ipv6_listeners_are_v6_only_so_v4_can_share_the_port() {
    let Ok(probe) = std::net::TcpListener::bind("[::]:0") else {
        return; // no IPv6 on this host: nothing to check
    };
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    // Without IPV6_V6ONLY (and net.ipv6.bindv6only = 0, the default) `[::]` takes the
    // IPv4 port too and the second bind fails.
    let v6 = bind(
        &Address::Inet(format!("[::]:{port}").parse().unwrap()),
        16,
        None,
    )
    .unwrap();
    let v4 = bind(
        &Address::Inet(format!("0.0.0.0:{port}").parse().unwrap()),
        16,
        None,
    );
    assert!(v4.is_ok(), "{:?}", v4.err());
    assert!(Socket::from(v6.fd).only_v6().unwrap());
    let v4 = Socket::from(v4.unwrap().fd);
    assert!(v4.only_v6().is_err() || !v4.only_v6().unwrap());
}

#[test]
fn datagram_sockets_are_replaced_only_when_stale() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("log.sock");
    remove_stale_socket(&path, SocketKind::Datagram).unwrap(); // nothing there: fine
    let live = UnixDatagram::bind(&path).unwrap();
    let id = file_id(&path).unwrap();
    let err = remove_stale_socket(&path, SocketKind::Datagram).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    assert_eq!(file_id(&path).unwrap(), id);
    // A live socket of the other type is someone's too.
    let err = remove_stale_socket(&path, SocketKind::Stream).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    drop(live);
    remove_stale_socket(&path, SocketKind::Datagram).unwrap();
    assert!(!path.exists());
}

#[test]
fn a_live_stream_listener_is_kept_a_stale_one_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let live = UnixListener::bind(&path).unwrap();
    let err = remove_stale_socket(&path, SocketKind::Stream).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    // A live stream socket is someone's for a datagram bind too.
    let err = remove_stale_socket(&path, SocketKind::Datagram).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::AddrInUse, "{err}");
    drop(live);
    remove_stale_socket(&path, SocketKind::Stream).unwrap();
    assert!(!path.exists());
}

#[test]
fn a_socket_that_cannot_be_probed_is_an_error_not_live_nor_free() {
    let dir = tempfile::tempdir().unwrap();
    let short = dir.path().join("s.sock");
    let _socket = UnixDatagram::bind(&short).unwrap();
    // Renamed to a path too long for a sockaddr_un: stat sees a socket, the probe cannot
    // connect at all. That is neither "someone answers" nor "stale".
    let long = dir.path().join("x".repeat(120));
    fs::rename(&short, &long).unwrap();
    for kind in [SocketKind::Datagram, SocketKind::Stream] {
        let err = remove_stale_socket(&long, kind).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput, "{kind:?}: {err}");
        assert!(long.exists());
    }
}

#[test]
fn a_live_listener_with_a_full_backlog_is_live_not_a_hang() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("busy.sock");
    let busy = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
    busy.bind(&SockAddr::unix(&path).unwrap()).unwrap();
    busy.listen(0).unwrap();
    let mut queued = Vec::new();
    for _ in 0..64 {
        let c = Socket::new(Domain::UNIX, Type::STREAM, None).unwrap();
        c.set_nonblocking(true).unwrap();
        match c.connect(&SockAddr::unix(&path).unwrap()) {
            Ok(()) => queued.push(c),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) => panic!("{e}"),
        }
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let probe = path.clone();
    std::thread::spawn(move || {
        let _ = tx.send(remove_stale_socket(&probe, SocketKind::Stream));
    });
    let answer = rx
        .recv_timeout(std::time::Duration::from_secs(10))
        .expect("the live check hung on a full backlog");
    assert_eq!(answer.unwrap_err().kind(), io::ErrorKind::AddrInUse);
    assert!(path.exists());
}

#[test]
fn a_path_that_cannot_be_checked_is_an_error_not_free() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("file");
    fs::write(&file, "").unwrap();
    // ENOTDIR: the parent is a regular file; a bind there would fail, say so now.
    let err = remove_stale_socket(&file.join("s.sock"), SocketKind::Stream).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR), "{err}");
    let err = bind(&fifo(&file.join("f.fifo")), 16, None)
        .unwrap_err()
        .to_string();
    assert!(err.starts_with("open fifo "), "{err}");
    assert!(err.ends_with(&io::Error::from_raw_os_error(libc::ENOTDIR).to_string()));
}

#[test]
fn only_the_socket_we_bound_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("s.sock");
    let ours = UnixDatagram::bind(&path).unwrap();
    let our_id = file_id(&path).unwrap();
    fs::remove_file(&path).unwrap();
    let _theirs = UnixDatagram::bind(&path).unwrap();
    remove_if_ours(&path, our_id);
    assert!(path.exists(), "a socket bound by someone else was removed");
    remove_if_ours(&path, file_id(&path).unwrap());
    assert!(!path.exists());
    drop(ours);
    // A regular file with the id of what was once our socket is never removed.
    fs::write(&path, "data").unwrap();
    remove_if_ours(&path, file_id(&path).unwrap());
    assert!(path.exists());
}

#[test]
fn a_closed_unix_listener_whose_file_was_replaced_leaves_it() {
    let dir = tempfile::tempdir().unwrap();
    let sock = dir.path().join("s.sock");
    let ours = bind(&unix(&sock), 16, None).unwrap();
    fs::remove_file(&sock).unwrap();
    let _theirs = UnixListener::bind(&sock).unwrap();
    ours.close();
    assert!(sock.exists(), "close removed a socket someone else bound");
}

#[test]
fn fifos_are_reused_never_made_of_other_files_and_nonblocking_cloexec() {
    use nix::fcntl::{FcntlArg, FdFlag, OFlag, fcntl};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.fifo");
    let first = bind(&fifo(&path), 16, None).unwrap();
    let inode = file_id(&path).unwrap();
    // A FIFO already there (a restart) is opened as it is, its mode kept.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
    let again = bind(&fifo(&path), 16, None).unwrap();
    assert_eq!(file_id(&path).unwrap(), inode);
    assert_eq!(
        fs::metadata(&path).unwrap().permissions().mode() & 0o777,
        0o600
    );
    for l in [&first, &again] {
        let fl = OFlag::from_bits_truncate(fcntl(l.fd.as_fd(), FcntlArg::F_GETFL).unwrap());
        assert!(
            fl.contains(OFlag::O_NONBLOCK) && fl.contains(OFlag::O_RDWR),
            "{fl:?}"
        );
        let fd = FdFlag::from_bits_truncate(fcntl(l.fd.as_fd(), FcntlArg::F_GETFD).unwrap());
        assert!(fd.contains(FdFlag::FD_CLOEXEC));
    }
    let file = dir.path().join("data");
    fs::write(&file, "keep me").unwrap();
    let err = bind(&fifo(&file), 16, None).unwrap_err().to_string();
    assert!(err.contains("not a FIFO"), "{err}");
    assert_eq!(fs::read_to_string(&file).unwrap(), "keep me");
}

#[test]
fn fifo_is_created_0666_whatever_the_umask() {
    // 022 is the usual umask; set it so that mkfifo alone could not give 0666.
    let old = nix::sys::stat::umask(Mode::from_bits_truncate(0o022));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.fifo");
    let got = bind(&fifo(&path), 16, None);
    nix::sys::stat::umask(old);
    drop(got.unwrap());
    let meta = fs::symlink_metadata(&path).unwrap();
    assert!(meta.file_type().is_fifo());
    assert_eq!(meta.permissions().mode() & 0o777, 0o666);
}

#[test]
fn a_regular_file_is_never_replaced() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data");
    fs::write(&path, "keep me").unwrap();
    let err = bind(&unix(&path), 16, None).unwrap_err().to_string();
    assert!(err.contains("not a socket"), "{err}");
    assert_eq!(fs::read_to_string(&path).unwrap(), "keep me");
}

#[test]
fn address_in_use_says_what() {
    let first = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = first.local_addr().unwrap();
    // SO_REUSEADDR does not allow two listeners on one port.
    let err = bind(&Address::Inet(addr), 16, None)
        .unwrap_err()
        .to_string();
    let want = format!(
        "bind {addr}: {}",
        io::Error::from_raw_os_error(libc::EADDRINUSE)
    );
    assert_eq!(err, want);
}
