//! The cluster port's door: what a connection may do before it passes the cookie handshake.
//!
//! ractor_cluster reads whatever a connection sends (frames up to the inbound frame size,
//! 32 MiB) and keeps it open as long as the peer likes, and its NodeServer spends an actor
//! (three, in fact) on every accepted socket. So the cluster port is ours: every accepted
//! connection gets a [`Gate`] and, until the session reports it authenticated,
//! - it may send at most [`PRE_AUTH_BYTES`]; beyond, nothing more is read from it;
//! - it is closed at the handshake deadline (from accept);
//! - at most `max_pending` such connections exist: a new one closes the oldest (an attacker's
//!   idle connections are the old ones, a real node or console is the new one, and its
//!   handshake takes milliseconds);
//! - a plain TCP connection reaches the NodeServer only once it has sent something (a dialling
//!   node or console speaks first), so silent connections cost a task and a socket, no actor.
//!
//! The NodeServer itself listens on an unused loopback port and receives the gated streams as
//! external transports labelled with the peer's address, which is how a session's
//! `authenticated` event finds its gate again. A session opened from anywhere else (a local
//! process that dialled that loopback port, past every limit above) is closed as it opens.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::Notify;
use tokio::time::{Instant, Sleep};

/// Bytes a connection may send before it has passed the cookie handshake (a node's or a
/// console's handshake frames are a few hundred bytes).
pub const PRE_AUTH_BYTES: u64 = 64 * 1024;

const PENDING: u8 = 0;
const OPEN: u8 = 1;
const EVICTED: u8 = 2;

/// The pre-authentication state of one accepted connection.
#[derive(Debug)]
pub(super) struct Gate {
    seq: u64,
    state: AtomicU8,
    /// The reader waiting at the byte cap, woken when the gate opens or is evicted.
    waker: Mutex<Option<Waker>>,
    /// For the accept task, which waits for a TLS handshake or the first bytes.
    evicted: Notify,
}

impl Gate {
    fn set(&self, state: u8) {
        if self
            .state
            .compare_exchange(PENDING, state, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return;
        }
        if state == EVICTED {
            self.evicted.notify_one();
        }
        let waker = self.waker.lock().ok().and_then(|mut w| w.take());
        if let Some(w) = waker {
            w.wake();
        }
    }

    fn state(&self) -> u8 {
        self.state.load(Ordering::Acquire)
    }

    /// Resolves once the gate has been evicted to make room for a newer connection.
    pub(super) async fn evicted(&self) {
        loop {
            if self.state() == EVICTED {
                return;
            }
            self.evicted.notified().await;
        }
    }
}

#[derive(Debug, Default)]
struct Pending {
    next_seq: u64,
    /// Oldest first.
    by_seq: BTreeMap<u64, Arc<Gate>>,
    by_label: HashMap<String, u64>,
}

/// Every connection of the cluster port that has not authenticated yet.
#[derive(Debug)]
pub(super) struct Gates {
    max_pending: usize,
    pending: Mutex<Pending>,
}

impl Gates {
    pub(super) fn new(max_pending: usize) -> Arc<Self> {
        Arc::new(Self {
            max_pending: max_pending.max(1),
            pending: Mutex::default(),
        })
    }

    /// A gate for a connection just accepted from `label` (the peer's address), and whether
    /// an older pending connection was closed to make room.
    pub(super) fn admit(&self, label: &str) -> (Arc<Gate>, bool) {
        let Ok(mut p) = self.pending.lock() else {
            // A panic while holding this lock: fail closed.
            let gate = Arc::new(Gate {
                seq: u64::MAX,
                state: AtomicU8::new(EVICTED),
                waker: Mutex::new(None),
                evicted: Notify::new(),
            });
            return (gate, false);
        };
        let mut evicted = false;
        while p.by_seq.len() >= self.max_pending {
            let Some((_, oldest)) = p.by_seq.pop_first() else {
                break;
            };
            p.by_label.retain(|_, s| *s != oldest.seq);
            oldest.set(EVICTED);
            evicted = true;
        }
        let seq = p.next_seq;
        p.next_seq += 1;
        let gate = Arc::new(Gate {
            seq,
            state: AtomicU8::new(PENDING),
            waker: Mutex::new(None),
            evicted: Notify::new(),
        });
        p.by_seq.insert(seq, gate.clone());
        p.by_label.insert(label.to_string(), seq);
        (gate, evicted)
    }

    /// The session of the connection from `label` passed the cookie handshake: no more limits.
    pub(super) fn authenticated(&self, label: &str) {
        let Ok(mut p) = self.pending.lock() else {
            return;
        };
        if let Some(seq) = p.by_label.remove(label)
            && let Some(gate) = p.by_seq.remove(&seq)
        {
            gate.set(OPEN);
        }
    }

    /// Whether a connection from `label` came through the cluster port and is still waiting
    /// for its handshake (a session that did not is from ractor_cluster's own loopback
    /// listener, which nothing should dial).
    pub(super) fn is_pending(&self, label: &str) -> bool {
        self.pending
            .lock()
            .map(|p| p.by_label.contains_key(label))
            .unwrap_or(false)
    }

    /// The connection behind `gate` is gone.
    pub(super) fn forget(&self, gate: &Gate) {
        if let Ok(mut p) = self.pending.lock()
            && p.by_seq.remove(&gate.seq).is_some()
        {
            p.by_label.retain(|_, s| *s != gate.seq);
        }
    }

    /// How many connections are waiting for their handshake.
    #[cfg(test)]
    fn len(&self) -> usize {
        self.pending.lock().map(|p| p.by_seq.len()).unwrap_or(0)
    }
}

/// The read half of a gated connection: until its gate opens, it reads at most
/// [`PRE_AUTH_BYTES`] in all and fails at the deadline or when evicted, which ends the
/// ractor_cluster session reading from it and so closes the connection.
pub(super) struct GatedRead<R> {
    inner: R,
    gate: Arc<Gate>,
    gates: Arc<Gates>,
    read: u64,
    cap: u64,
    deadline: Pin<Box<Sleep>>,
}

impl<R> GatedRead<R> {
    pub(super) fn new(inner: R, gate: Arc<Gate>, gates: Arc<Gates>, deadline: Instant) -> Self {
        Self::with_cap(inner, gate, gates, deadline, PRE_AUTH_BYTES)
    }

    fn with_cap(inner: R, gate: Arc<Gate>, gates: Arc<Gates>, deadline: Instant, cap: u64) -> Self {
        Self {
            inner,
            gate,
            gates,
            read: 0,
            cap,
            deadline: Box::pin(tokio::time::sleep_until(deadline)),
        }
    }
}

impl<R> Drop for GatedRead<R> {
    fn drop(&mut self) {
        self.gates.forget(&self.gate);
    }
}

/// Why a connection was closed before its handshake.
fn refused(kind: io::ErrorKind, why: &str) -> Poll<io::Result<()>> {
    Poll::Ready(Err(io::Error::new(kind, why.to_string())))
}

impl<R: AsyncRead + Unpin> AsyncRead for GatedRead<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if this.gate.state() == PENDING {
            if let Ok(mut w) = this.gate.waker.lock() {
                *w = Some(cx.waker().clone());
            }
            if this.deadline.as_mut().poll(cx).is_ready() {
                return refused(
                    io::ErrorKind::TimedOut,
                    "no cookie handshake before the deadline",
                );
            }
        }
        match this.gate.state() {
            OPEN => Pin::new(&mut this.inner).poll_read(cx, buf),
            EVICTED => refused(
                io::ErrorKind::ConnectionAborted,
                "too many connections in their handshake",
            ),
            _ if this.read >= this.cap => Poll::Pending, // woken by the gate or the deadline
            _ => {
                let room = usize::try_from(this.cap - this.read)
                    .unwrap_or(usize::MAX)
                    .min(buf.remaining());
                let mut chunk = [0u8; 8192];
                let room = room.min(chunk.len());
                let mut limited = ReadBuf::new(&mut chunk[..room]);
                match Pin::new(&mut this.inner).poll_read(cx, &mut limited) {
                    Poll::Ready(Ok(())) => {
                        let got = limited.filled();
                        this.read += got.len() as u64;
                        buf.put_slice(got);
                        Poll::Ready(Ok(()))
                    }
                    other => other,
                }
            }
        }
    }
}

/// A gated connection as ractor_cluster takes an external transport.
pub(super) struct GatedStream<R, W> {
    pub(super) read: GatedRead<R>,
    pub(super) write: W,
    pub(super) peer_addr: SocketAddr,
}

impl<R, W> ractor_cluster::ClusterBidiStream for GatedStream<R, W>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    fn split(self: Box<Self>) -> (ractor_cluster::BoxRead, ractor_cluster::BoxWrite) {
        let GatedStream { read, write, .. } = *self;
        (Box::new(read), Box::new(write))
    }

    fn peer_label(&self) -> Option<String> {
        Some(self.peer_addr.to_string())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    fn gated(
        gates: &Arc<Gates>,
        label: &str,
        inner: tokio::io::DuplexStream,
        deadline: Duration,
        cap: u64,
    ) -> GatedRead<tokio::io::DuplexStream> {
        let (gate, _) = gates.admit(label);
        GatedRead::with_cap(inner, gate, gates.clone(), Instant::now() + deadline, cap)
    }

    #[tokio::test]
    async fn before_authentication_at_most_the_cap_is_read_then_nothing_until_the_deadline() {
        let gates = Gates::new(8);
        let (mut peer, ours) = tokio::io::duplex(1 << 20);
        let mut r = gated(
            &gates,
            "10.0.0.9:4000",
            ours,
            Duration::from_millis(300),
            100,
        );
        peer.write_all(&[7u8; 1000]).await.expect("write");
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        let err = loop {
            match r.read(&mut buf).await {
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break e,
            }
        };
        assert_eq!(got.len(), 100, "read past the cap");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
    }

    #[tokio::test]
    async fn an_authenticated_connection_reads_without_limits_past_the_deadline() {
        let gates = Gates::new(8);
        let (mut peer, ours) = tokio::io::duplex(1 << 20);
        let mut r = gated(
            &gates,
            "10.0.0.9:4001",
            ours,
            Duration::from_millis(300),
            100,
        );
        peer.write_all(&[1u8; 300]).await.expect("write");
        let mut buf = [0u8; 300];
        let n = r.read(&mut buf).await.expect("read");
        assert_eq!(n, 100);
        // At the cap, a reader waits; the session's authenticated event wakes it.
        let waiting = tokio::spawn(async move {
            let mut rest = vec![0u8; 200];
            r.read_exact(&mut rest).await.map(|_| r)
        });
        tokio::task::yield_now().await;
        assert!(!waiting.is_finished());
        gates.authenticated("10.0.0.9:4001");
        let mut r = waiting.await.expect("join").expect("read after auth");
        assert_eq!(gates.len(), 0);
        tokio::time::sleep(Duration::from_millis(500)).await;
        peer.write_all(b"later").await.expect("write");
        let mut later = [0u8; 5];
        r.read_exact(&mut later)
            .await
            .expect("no deadline once open");
        assert_eq!(&later, b"later");
    }

    #[tokio::test]
    async fn over_the_cap_of_pending_connections_the_oldest_is_evicted() {
        let gates = Gates::new(2);
        let (_p1, s1) = tokio::io::duplex(64);
        let (_p2, s2) = tokio::io::duplex(64);
        let (_p3, s3) = tokio::io::duplex(64);
        let mut first = gated(&gates, "a:1", s1, Duration::from_secs(5), 100);
        let second = gated(&gates, "a:2", s2, Duration::from_secs(5), 100);
        assert_eq!(gates.len(), 2);
        let (gate, evicted) = gates.admit("a:3");
        assert!(evicted);
        let _third = GatedRead::new(s3, gate, gates.clone(), Instant::now());
        let err = first.read(&mut [0u8; 8]).await.expect_err("evicted");
        assert_eq!(err.kind(), io::ErrorKind::ConnectionAborted);
        // Dropping a connection frees its place.
        drop(second);
        assert_eq!(gates.len(), 1);
    }
}
