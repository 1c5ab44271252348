//! The listening side of the gRPC port, hardened against hostile or unlucky environments:
//! a bounded number of connections, connections closed when they stay silent (before their
//! first bytes: the handshake timeout; later: the idle timeout), HTTP/2 limits per
//! connection, the descriptor limit raised at start, and an accept loop that never spins.
//!
//! - **Connection limit**: at most [`ListenOptions::max_connections`] accepted connections
//!   are open at once (further ones are accepted and closed at once, counted and logged at
//!   most every [`LOG_EVERY`]). The limit is also kept [`FD_RESERVE`] descriptors below the
//!   process's `RLIMIT_NOFILE`, so clients alone cannot exhaust the descriptors storage
//!   and peer streams need.
//! - **Accept errors** are logged at most every [`LOG_EVERY`] (with how many were not).
//!   After one the loop waits before the next accept, doubling from
//!   [`ACCEPT_BACKOFF_MIN`] to [`ACCEPT_BACKOFF_MAX`]: with the descriptor limit reached
//!   (EMFILE, ENFILE) the pending connection stays queued and an immediate retry would spin.
//! - **A leader that cannot serve steps down**: while accepting has failed for lack of
//!   descriptors or memory for [`STARVED_STEP_DOWN_AFTER`], the process's node threads are
//!   asked (every such period) to hand their leadership to another member
//!   ([`StepDownSignal`]); the peer streams they already hold would otherwise keep a
//!   leader in place that no new client can reach.
//! - **Silence**: a connection whose peer sends nothing for [`HANDSHAKE_TIMEOUT`] after it
//!   was accepted, or for [`ListenOptions::idle_timeout`] after its last bytes, is closed.
//!   Only bytes *from* the peer count (a peer stream in use always has some: Raft
//!   heartbeats), so a connection left open by a departed client is reclaimed.
//! - **HTTP/2 limits** ([`limit_http2`]): concurrent streams per connection, requests
//!   served at once per connection (the others wait before their bodies are read), and
//!   flow-control windows. A client that opens many streams each declaring a big message
//!   holds at most [`REQUESTS_PER_CONNECTION_MAX`] partial messages (each bounded by the
//!   service's frame limit) plus one connection window, instead of one per stream.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Sleep;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::{Connected, TcpConnectInfo};

/// Default bound on open client and peer connections.
pub const MAX_CONNECTIONS_DEFAULT: usize = 4096;
/// Default time a connection may stay silent after its last bytes.
pub const IDLE_TIMEOUT_DEFAULT: Duration = Duration::from_secs(300);
/// How long a new connection may stay silent before its first bytes.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Descriptors kept free of client connections, plus [`FD_RESERVE_PER_GROUP`] per hosted
/// group (WAL segments, snapshot files, peer and outbox connections).
pub const FD_RESERVE: u64 = 128;
pub const FD_RESERVE_PER_GROUP: u64 = 16;
/// The fewest connections the limit allows, whatever the descriptor limit.
pub const MAX_CONNECTIONS_FLOOR: usize = 8;
/// Logs about refused connections and accept errors: at most one per this.
pub const LOG_EVERY: Duration = Duration::from_secs(10);
/// The pause after an accept error, first and at most.
pub const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(10);
pub const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// How long accepting may fail for lack of descriptors before leaders step down.
pub const STARVED_STEP_DOWN_AFTER: Duration = Duration::from_secs(5);
/// Streams one HTTP/2 connection may have open at once (more are refused by HTTP/2).
pub const STREAMS_PER_CONNECTION_MAX: u32 = 256;
/// Requests of one connection served at once; the others wait before their bodies are read.
pub const REQUESTS_PER_CONNECTION_MAX: usize = 64;
/// HTTP/2 flow-control windows: what a peer may send ahead per stream and per connection.
pub const STREAM_WINDOW_BYTES: u32 = 1 << 20;
pub const CONNECTION_WINDOW_BYTES: u32 = 2 << 20;

/// What the listener enforces.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ListenOptions {
    pub max_connections: usize,
    pub idle_timeout: Duration,
}

impl Default for ListenOptions {
    fn default() -> Self {
        ListenOptions {
            max_connections: MAX_CONNECTIONS_DEFAULT,
            idle_timeout: IDLE_TIMEOUT_DEFAULT,
        }
    }
}

/// Raises the soft `RLIMIT_NOFILE` to the hard limit and logs both; returns the soft limit
/// in force afterwards (`None` if it cannot be read).
pub fn raise_nofile_limit() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let before = getrlimit(Resource::Nofile);
    let (Some(soft), hard) = (before.current, before.maximum) else {
        tracing::info!("descriptor limit (RLIMIT_NOFILE) is unlimited");
        return None;
    };
    let Some(hard) = hard else {
        return Some(soft);
    };
    if soft >= hard {
        tracing::info!(soft, hard, "descriptor limit (RLIMIT_NOFILE)");
        return Some(soft);
    }
    let raised = Rlimit {
        current: Some(hard),
        maximum: Some(hard),
    };
    match setrlimit(Resource::Nofile, raised) {
        Ok(()) => {
            tracing::info!(
                was = soft,
                now = hard,
                hard,
                "descriptor limit (RLIMIT_NOFILE) raised to the hard limit"
            );
            Some(hard)
        }
        Err(e) => {
            tracing::warn!(soft, hard, error = %e, "cannot raise the descriptor limit (RLIMIT_NOFILE)");
            Some(soft)
        }
    }
}

/// The connection limit in force: the configured one, kept below the descriptor limit
/// minus the reserve for `groups` hosted groups.
pub fn effective_max_connections(configured: usize, nofile: Option<u64>, groups: usize) -> usize {
    let Some(nofile) = nofile else {
        return configured;
    };
    let reserve = FD_RESERVE + FD_RESERVE_PER_GROUP * groups as u64;
    let room = usize::try_from(nofile.saturating_sub(reserve)).unwrap_or(usize::MAX);
    configured.min(room).max(MAX_CONNECTIONS_FLOOR)
}

/// The limits of the gRPC port and of a second (RESP) port sharing one connection budget:
/// with a second port, half each (at least [`MAX_CONNECTIONS_FLOOR`] each); without, all
/// of it for gRPC (the second is unused).
pub fn split_connections(all: ListenOptions, second: bool) -> (ListenOptions, ListenOptions) {
    if !second {
        return (all, all);
    }
    let half = |n: usize| ListenOptions {
        max_connections: n.max(MAX_CONNECTIONS_FLOOR),
        ..all
    };
    let grpc = all.max_connections.div_ceil(2);
    (half(grpc), half(all.max_connections - grpc))
}

/// Sets the per-connection HTTP/2 limits on a server builder.
pub fn limit_http2(builder: tonic::transport::Server) -> tonic::transport::Server {
    builder
        .max_concurrent_streams(STREAMS_PER_CONNECTION_MAX)
        .concurrency_limit_per_connection(REQUESTS_PER_CONNECTION_MAX)
        .initial_stream_window_size(STREAM_WINDOW_BYTES)
        .initial_connection_window_size(CONNECTION_WINDOW_BYTES)
}

/// How the accept loop asks the node threads to give up leadership: a counter each driver
/// compares with the value it last saw.
#[derive(Debug, Default)]
pub struct StepDownSignal {
    requests: AtomicU64,
}

impl StepDownSignal {
    /// Asks every node thread once more.
    pub fn request(&self) {
        self.requests.fetch_add(1, Ordering::Relaxed);
    }

    /// The number of requests so far; a driver acts when it changes.
    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }
}

/// A log line at most every [`LOG_EVERY`], saying how many were suppressed before it.
struct RateLimited {
    last: Option<Instant>,
    suppressed: u64,
}

impl RateLimited {
    fn new() -> RateLimited {
        RateLimited {
            last: None,
            suppressed: 0,
        }
    }

    /// `Some(suppressed since the last line)` when a line may be logged now.
    fn allow(&mut self, now: Instant) -> Option<u64> {
        if self.last.is_some_and(|t| now < t + LOG_EVERY) {
            self.suppressed += 1;
            return None;
        }
        self.last = Some(now);
        Some(std::mem::take(&mut self.suppressed))
    }
}

/// Accepts on `listener` in a task of its own and yields the connections under the limits
/// of `opts`; the task ends (and closes the listener) when the stream is dropped.
pub fn incoming(
    listener: TcpListener,
    opts: ListenOptions,
    step_down: Arc<StepDownSignal>,
) -> ReceiverStream<io::Result<Conn>> {
    let (tx, rx) = mpsc::channel(1);
    tokio::spawn(accept_loop(listener, opts, tx, step_down));
    ReceiverStream::new(rx)
}

/// True for accept errors that mean this process is out of descriptors or memory.
fn is_starvation(e: &io::Error) -> bool {
    const ENOMEM: i32 = 12;
    const ENFILE: i32 = 23;
    const EMFILE: i32 = 24;
    const ENOBUFS: i32 = 105;
    matches!(e.raw_os_error(), Some(ENOMEM | ENFILE | EMFILE | ENOBUFS))
}

async fn accept_loop(
    listener: TcpListener,
    opts: ListenOptions,
    tx: mpsc::Sender<io::Result<Conn>>,
    step_down: Arc<StepDownSignal>,
) {
    let slots = Arc::new(Semaphore::new(opts.max_connections));
    let mut refused_log = RateLimited::new();
    let mut error_log = RateLimited::new();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    // Since when accepting fails for lack of descriptors, and when leaders were last asked
    // to step down because of it.
    let mut starved_since: Option<Instant> = None;
    let mut asked_at: Option<Instant> = None;
    loop {
        let accepted = tokio::select! {
            () = tx.closed() => return,
            a = listener.accept() => a,
        };
        let now = Instant::now();
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                let starved = is_starvation(&e);
                if let Some(suppressed) = error_log.allow(now) {
                    tracing::warn!(error = %e, suppressed, retry_in = ?backoff,
                        out_of_descriptors = starved, "cannot accept a connection");
                }
                if starved {
                    let since = *starved_since.get_or_insert(now);
                    let due = asked_at.is_none_or(|t| now >= t + STARVED_STEP_DOWN_AFTER);
                    if now >= since + STARVED_STEP_DOWN_AFTER && due {
                        tracing::warn!(for_s = (now - since).as_secs(), error = %e,
                            "cannot accept client connections (out of descriptors or memory): \
                             asking this process's leaders to hand leadership to another member");
                        step_down.request();
                        asked_at = Some(now);
                    }
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        backoff = ACCEPT_BACKOFF_MIN;
        if starved_since.take().is_some() {
            tracing::info!("accepting connections again");
        }
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            if let Some(suppressed) = refused_log.allow(now) {
                tracing::warn!(%peer, limit = opts.max_connections, suppressed,
                    "connection limit reached: closing a new connection");
            }
            drop(stream);
            continue;
        };
        // Without TCP_NODELAY a reply written in more than one segment waits on the
        // client's delayed ACK (Nagle): milliseconds per request.
        let _ = stream.set_nodelay(true);
        let conn = Conn::new(stream, permit, opts.idle_timeout);
        if tx.send(Ok(conn)).await.is_err() {
            return;
        }
    }
}

/// An accepted connection: holds a slot of the connection limit until it is closed, and
/// fails its reads once the peer stayed silent too long (the server then closes it).
pub struct Conn {
    io: TcpStream,
    _slot: OwnedSemaphorePermit,
    idle_timeout: Duration,
    /// When the peer last sent bytes; `None` before its first.
    last_read: Option<Instant>,
    /// Fires at the silence deadline as of when it was last set (moved on lazily).
    deadline: Pin<Box<Sleep>>,
}

impl Conn {
    fn new(io: TcpStream, slot: OwnedSemaphorePermit, idle_timeout: Duration) -> Conn {
        Conn {
            io,
            _slot: slot,
            idle_timeout,
            last_read: None,
            deadline: Box::pin(tokio::time::sleep(HANDSHAKE_TIMEOUT)),
        }
    }

    /// When silence ends this connection.
    fn silence_deadline(&self) -> tokio::time::Instant {
        match self.last_read {
            Some(t) => tokio::time::Instant::from_std(t + self.idle_timeout),
            None => self.deadline.deadline(),
        }
    }

    /// `Ready` once the peer has been silent past its deadline.
    fn poll_silence(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        loop {
            let due = self.silence_deadline();
            if self.deadline.deadline() != due {
                self.deadline.as_mut().reset(due);
            }
            match self.deadline.as_mut().poll(cx) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(()) if self.silence_deadline() <= tokio::time::Instant::now() => {
                    return Poll::Ready(());
                }
                Poll::Ready(()) => continue,
            }
        }
    }
}

impl AsyncRead for Conn {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.io).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.last_read = Some(Instant::now());
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => match this.poll_silence(cx) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(()) => {
                    let what = if this.last_read.is_some() {
                        "idle timeout"
                    } else {
                        "handshake timeout"
                    };
                    tracing::debug!(peer = ?this.io.peer_addr().ok(), what, "closing a silent connection");
                    Poll::Ready(Err(io::Error::new(io::ErrorKind::TimedOut, what)))
                }
            },
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write(cx, buf)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.get_mut().io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}

impl Connected for Conn {
    type ConnectInfo = TcpConnectInfo;

    fn connect_info(&self) -> TcpConnectInfo {
        self.io.connect_info()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_connection_limit_stays_below_the_descriptor_limit() {
        // Goal: clients alone cannot take the descriptors storage and peers need.
        assert_eq!(effective_max_connections(4096, None, 1), 4096);
        assert_eq!(effective_max_connections(4096, Some(1 << 20), 1), 4096);
        assert_eq!(
            effective_max_connections(4096, Some(1024), 2),
            1024 - 128 - 32
        );
        assert_eq!(
            effective_max_connections(4096, Some(64), 1),
            MAX_CONNECTIONS_FLOOR
        );
    }

    #[test]
    fn rate_limited_logs_count_what_they_suppress() {
        // Goal: one line per period, and the next says how many were not logged.
        let mut r = RateLimited::new();
        let t = Instant::now();
        assert_eq!(r.allow(t), Some(0));
        assert_eq!(r.allow(t + Duration::from_secs(1)), None);
        assert_eq!(r.allow(t + Duration::from_secs(2)), None);
        assert_eq!(r.allow(t + LOG_EVERY), Some(2));
    }

    #[test]
    fn a_second_port_takes_half_of_the_connection_budget() {
        let all = ListenOptions {
            max_connections: 101,
            idle_timeout: Duration::from_secs(9),
        };
        assert_eq!(split_connections(all, false).0, all);
        let (grpc, resp) = split_connections(all, true);
        assert_eq!((grpc.max_connections, resp.max_connections), (51, 50));
        assert_eq!(grpc.idle_timeout, all.idle_timeout);
        let tiny = ListenOptions {
            max_connections: MAX_CONNECTIONS_FLOOR,
            ..all
        };
        let (grpc, resp) = split_connections(tiny, true);
        assert_eq!(
            (grpc.max_connections, resp.max_connections),
            (MAX_CONNECTIONS_FLOOR, MAX_CONNECTIONS_FLOOR)
        );
    }
}
