//! One HTTP connection's limits: the header-read and keep-alive timeouts (hyper's own
//! header-read timer) and its place among `MAX_CONNECTIONS` (a semaphore permit that lives as
//! long as the socket, WebSocket included).
//!
//! - Request headers must arrive within [`HEADER_READ_TIMEOUT`] of the connection, else hyper
//!   closes it (slow-loris).
//! - Between requests hyper runs the same timer for the next request's headers: a connection
//!   idle for [`KEEP_ALIVE_IDLE`] is closed. [`HeadTimer`] gives the first head the short
//!   deadline and every later head (idle time included) the long one.
//! - A connection beyond `MAX_CONNECTIONS` gets [`refusal`] (503, with the reason) and is closed
//!   without being read.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use hyper::rt::{Sleep, Timer};
use hyper_util::rt::TokioTimer;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;

/// The first request's headers must be complete this long after the connection opens.
pub const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A keep-alive connection with no request for this long is closed.
pub const KEEP_ALIVE_IDLE: Duration = Duration::from_secs(60);

/// hyper's timer for one connection: hyper arms it whenever it waits for a request head
/// (with [`HEADER_READ_TIMEOUT`]); the first time that deadline stands, every later time it is
/// pushed back to [`KEEP_ALIVE_IDLE`], since waiting for the next request is keep-alive idling.
#[derive(Debug, Clone, Default)]
pub struct HeadTimer {
    first_head_armed: Arc<AtomicBool>,
}

impl HeadTimer {
    /// The deadline hyper asked for, or the keep-alive one after the first request.
    fn deadline(&self, asked: Instant) -> Instant {
        if self.first_head_armed.swap(true, Ordering::Relaxed) {
            asked + KEEP_ALIVE_IDLE.saturating_sub(HEADER_READ_TIMEOUT)
        } else {
            asked
        }
    }
}

impl Timer for HeadTimer {
    fn sleep(&self, duration: Duration) -> Pin<Box<dyn Sleep>> {
        TokioTimer::new().sleep(duration)
    }

    fn sleep_until(&self, deadline: Instant) -> Pin<Box<dyn Sleep>> {
        TokioTimer::new().sleep_until(self.deadline(deadline))
    }

    fn reset(&self, sleep: &mut Pin<Box<dyn Sleep>>, new_deadline: Instant) {
        TokioTimer::new().reset(sleep, self.deadline(new_deadline));
    }
}

/// The HTTP/1.1 connection settings: keep-alive, the header timer, upgrades for WebSockets.
pub fn builder() -> hyper::server::conn::http1::Builder {
    let mut b = hyper::server::conn::http1::Builder::new();
    b.timer(HeadTimer::default())
        .header_read_timeout(HEADER_READ_TIMEOUT)
        .keep_alive(true);
    b
}

/// What a connection beyond the limit receives before it is closed: a whole HTTP response,
/// written at once without reading the request.
pub fn refusal(max_connections: usize) -> Vec<u8> {
    let body = serde_json::json!({
        "error": format!(
            "too many connections: this node serves at most {max_connections} at once (MAX_CONNECTIONS); retry later or on another node"
        )
    })
    .to_string();
    format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nretry-after: 1\r\nconnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// An accepted socket holding its place among `MAX_CONNECTIONS`. hyper hands this same value
/// to an upgraded connection, so a WebSocket keeps the place until it closes.
#[derive(Debug)]
pub struct Counted {
    tcp: TcpStream,
    _place: OwnedSemaphorePermit,
}

impl Counted {
    /// `tcp` holding `place`.
    pub fn new(tcp: TcpStream, place: OwnedSemaphorePermit) -> Self {
        Self { tcp, _place: place }
    }
}

impl AsyncRead for Counted {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_read(cx, buf)
    }
}

impl AsyncWrite for Counted {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.get_mut().tcp).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.tcp.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.get_mut().tcp).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_head_has_the_header_timeout_later_ones_the_idle_timeout() {
        let t = HeadTimer::default();
        let now = Instant::now();
        assert_eq!(
            t.deadline(now + HEADER_READ_TIMEOUT),
            now + HEADER_READ_TIMEOUT
        );
        assert_eq!(t.deadline(now + HEADER_READ_TIMEOUT), now + KEEP_ALIVE_IDLE);
        assert_eq!(t.deadline(now + HEADER_READ_TIMEOUT), now + KEEP_ALIVE_IDLE);
        // Each connection has its own.
        let other = HeadTimer::default();
        assert_eq!(
            other.deadline(now + HEADER_READ_TIMEOUT),
            now + HEADER_READ_TIMEOUT
        );
    }

    #[test]
    fn the_refusal_is_a_whole_503_naming_the_limit() {
        let r = String::from_utf8(refusal(20)).unwrap_or_default();
        let (head, body) = r.split_once("\r\n\r\n").unwrap_or_default();
        assert!(
            head.starts_with("HTTP/1.1 503 Service Unavailable\r\n"),
            "{head}"
        );
        assert!(head.contains(&format!("content-length: {}\r\n", body.len())));
        assert_eq!(
            body,
            r#"{"error":"too many connections: this node serves at most 20 at once (MAX_CONNECTIONS); retry later or on another node"}"#
        );
    }
}
