//! A blocking line client over TCP or a unix socket, every read bounded by a timeout.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use crate::PATIENCE;

/// A stream a [`LineClient`] can use: TCP or unix.
pub trait Stream: Read + Write + Sized {
    /// A second handle to the same socket.
    fn try_clone(&self) -> io::Result<Self>;
    /// Bounds each blocking read.
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// Switches non-blocking mode.
    fn set_nonblocking(&self, on: bool) -> io::Result<()>;
}

/// `Stream` for a std socket type, by its inherent methods of the same names.
macro_rules! impl_stream {
    ($($t:ty),*) => {$(
        impl Stream for $t {
            fn try_clone(&self) -> io::Result<Self> {
                <$t>::try_clone(self)
            }
            fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
                <$t>::set_read_timeout(self, timeout)
            }
            fn set_nonblocking(&self, on: bool) -> io::Result<()> {
                <$t>::set_nonblocking(self, on)
            }
        }
    )*};
}

impl_stream!(TcpStream, UnixStream);

/// A line-oriented client; a read waits at most [`PATIENCE`], so a hung server fails the
/// test instead of hanging it.
pub struct LineClient<S: Stream = TcpStream> {
    /// The buffered read side.
    pub reader: BufReader<S>,
    /// The write side (a clone of the same socket).
    pub writer: S,
}

impl LineClient<TcpStream> {
    /// Connects over TCP.
    pub fn connect(addr: SocketAddr) -> LineClient<TcpStream> {
        let stream = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connect {addr}: {e}"));
        LineClient::over(stream)
    }

    /// Connects over TCP with `TCP_NODELAY` (no line held back for coalescing).
    pub fn tcp(addr: SocketAddr) -> LineClient<TcpStream> {
        let client = LineClient::connect(addr);
        client.writer.set_nodelay(true).expect("nodelay");
        client
    }
}

impl LineClient<UnixStream> {
    /// Connects to the unix socket at `path`.
    pub fn unix(path: &Path) -> LineClient<UnixStream> {
        let stream =
            UnixStream::connect(path).unwrap_or_else(|e| panic!("connect {}: {e}", path.display()));
        LineClient::over(stream)
    }
}

impl<S: Stream> LineClient<S> {
    /// A client over an already connected stream.
    pub fn over(stream: S) -> LineClient<S> {
        stream
            .set_read_timeout(Some(PATIENCE))
            .expect("read timeout");
        let writer = stream.try_clone().expect("clone the stream");
        LineClient {
            reader: BufReader::new(stream),
            writer,
        }
    }

    /// Writes `bytes` as they are.
    pub fn send(&mut self, bytes: &[u8]) {
        self.writer.write_all(bytes).expect("send");
    }

    /// Writes `line` and a `\n`.
    pub fn send_line(&mut self, line: &str) {
        self.send(format!("{line}\n").as_bytes());
    }

    /// The next line without its `\n` (a last line may lack one); `None` at end of stream or
    /// on a reset.
    pub fn read_line(&mut self) -> Option<String> {
        let mut line = self.raw_line()?;
        if line.last() == Some(&b'\n') {
            line.pop();
        }
        Some(String::from_utf8_lossy(&line).into_owned())
    }

    /// The next line as bytes, without its `\n`; `None` at end of stream or on a reset.
    /// Panics on a line the server did not terminate.
    pub fn recv_line(&mut self) -> Option<Vec<u8>> {
        let mut line = self.raw_line()?;
        assert_eq!(line.pop(), Some(b'\n'), "reply line not terminated");
        Some(line)
    }

    fn raw_line(&mut self) -> Option<Vec<u8>> {
        let mut line = Vec::new();
        match self.reader.read_until(b'\n', &mut line) {
            Ok(0) => None,
            Ok(_) => Some(line),
            Err(e) if e.kind() == io::ErrorKind::ConnectionReset => None,
            Err(e) => panic!("read a line: {e}"),
        }
    }

    /// Sends `line` + `\n` and returns the reply line; panics at end of stream.
    pub fn roundtrip(&mut self, line: &[u8]) -> Vec<u8> {
        let mut msg = line.to_vec();
        msg.push(b'\n');
        self.send(&msg);
        self.recv_line().expect("reply before end of stream")
    }

    /// Sends `line` and returns the answer line; `None` when the server closed (the send
    /// failing counts as closed). A missing answer within the timeout panics.
    pub fn ask(&mut self, line: &str) -> Option<String> {
        let sent = self
            .writer
            .write_all(format!("{line}\n").as_bytes())
            .is_ok();
        let answer = self.read_line();
        answer.filter(|_| sent)
    }

    /// Sends `line` and asserts the same line comes back.
    pub fn expect_echo(&mut self, line: &str) {
        self.send_line(line);
        assert_eq!(self.read_line().as_deref(), Some(line));
    }

    /// Asserts the server closes the connection (EOF or reset) without sending anything.
    pub fn expect_closed(&mut self) {
        assert_eq!(self.read_line(), None, "expected the server to close");
    }

    /// Whether a line (or EOF) is already waiting, without blocking.
    pub fn has_reply_now(&mut self) -> bool {
        if !self.reader.buffer().is_empty() {
            return true;
        }
        self.reader
            .get_ref()
            .set_nonblocking(true)
            .expect("nonblocking");
        let got = self.reader.fill_buf().map(|b| b.len());
        self.reader
            .get_ref()
            .set_nonblocking(false)
            .expect("blocking");
        !matches!(got, Err(e) if e.kind() == io::ErrorKind::WouldBlock)
    }

    /// The socket, to write to or shut down directly.
    pub fn stream(&mut self) -> &mut S {
        &mut self.writer
    }
}

/// Sends `line` over a new TCP connection to 127.0.0.1:`port` and returns the answer line
/// (trimmed), waiting at most 5 s for it.
pub fn ask_tcp(port: u16, line: &str) -> io::Result<String> {
    let stream = TcpStream::connect(("127.0.0.1", port))?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    ask(stream, line)
}

/// [`ask_tcp`] over the unix socket at `path`.
pub fn ask_unix(path: &Path, line: &str) -> io::Result<String> {
    let stream = UnixStream::connect(path)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    ask(stream, line)
}

fn ask<S: Read + Write>(mut stream: S, line: &str) -> io::Result<String> {
    stream.write_all(format!("{line}\n").as_bytes())?;
    let mut reply = String::new();
    BufReader::new(stream).read_line(&mut reply)?;
    Ok(reply.trim_end().to_owned())
}
