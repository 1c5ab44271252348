//! Serving one connection: read, answer every complete request in order (pipelining), write
//! the replies in batches, read again. The complete requests are taken [`PIPELINE_OPS_MAX`]
//! at a time and answered by [`Session::step`], which runs each run of data commands that
//! can share one operation as one (`pipeline.rs`).
//!
//! Memory is bounded per connection: the read buffer holds at most one incomplete request
//! (whose declared lengths [`take_request`] has already checked against [`Limits`]) plus one
//! read, at most [`PIPELINE_OPS_MAX`] requests wait to be answered, one step's replies are
//! bounded as one operation's answer is, and the reply buffer is written out whenever it
//! passes [`REPLY_FLUSH_BYTES`], so 10,000 pipelined commands cost no more than a few.
//!
//! Every write of replies is bounded by [`Limits::write_timeout`]: a client that sends
//! requests and never reads the replies is disconnected (`TimedOut`), not served forever.
//!
//! After a protocol error the error is written, the sending side shut down, and what the
//! client still sends is read and dropped (at most [`LINGER_BYTES_MAX`] for at most
//! [`LINGER`]) before the socket closes: closing with unread input would reset the
//! connection, and a reset can destroy the error reply before the client reads it.

use crate::backend::Backend;
use crate::reply::Reply;
use crate::request::{Limits, take_request};
use crate::session::{After, Session};
use bytes::BytesMut;
use shardkv_kv::PIPELINE_OPS_MAX;
use std::collections::VecDeque;
use std::io;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

/// Replies are written once this many bytes of them are waiting, or when no complete
/// request is left to answer.
pub const REPLY_FLUSH_BYTES: usize = 64 << 10;

/// Bytes asked of the socket per read.
const READ_BYTES: usize = 16 << 10;

/// How long, and how many bytes, a connection that broke the protocol is read (and the
/// bytes dropped) before it is closed.
pub const LINGER: Duration = Duration::from_secs(1);
pub const LINGER_BYTES_MAX: usize = 1 << 20;

/// How a connection ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// The client closed it.
    Closed,
    /// `QUIT`.
    Quit,
    /// A request could not be framed; the client was told why.
    ProtocolError(String),
}

/// Serves `stream` until the client closes it, quits or breaks the protocol. `Err` is an
/// I/O error of the socket.
pub async fn serve<S, B>(
    stream: S,
    session: &mut Session,
    backend: &mut B,
    limits: &Limits,
) -> io::Result<Ended>
where
    S: AsyncRead + AsyncWrite + Unpin,
    B: Backend,
{
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut input = BytesMut::with_capacity(READ_BYTES);
    let mut output = BytesMut::new();
    let mut pending = VecDeque::with_capacity(PIPELINE_OPS_MAX);
    let mut replies = Vec::with_capacity(PIPELINE_OPS_MAX);
    let before_auth = limits.unauthenticated();
    loop {
        loop {
            // The requests already complete, at most PIPELINE_OPS_MAX at a time; a
            // protocol error is answered once the requests before it are. Before the
            // password (when one is required) one at a time, under the small limits: an
            // AUTH is answered before the next request is framed.
            let mut broken = None;
            while pending.len() < PIPELINE_OPS_MAX {
                let limits = match session.authenticated() {
                    true => limits,
                    false if pending.is_empty() => &before_auth,
                    false => break,
                };
                match take_request(&mut input, limits) {
                    Ok(Some(args)) => pending.push_back(args),
                    Ok(None) => break,
                    Err(e) => {
                        broken = Some(e);
                        break;
                    }
                }
            }
            if pending.is_empty() && broken.is_none() {
                break;
            }
            while !pending.is_empty() {
                let after = session.step(&mut pending, backend, &mut replies).await;
                for reply in replies.drain(..) {
                    reply.encode(session.protocol(), &mut output);
                }
                if after == After::Close {
                    write(&mut wr, &output, limits).await?;
                    wr.shutdown().await?;
                    return Ok(Ended::Quit);
                }
                if output.len() >= REPLY_FLUSH_BYTES {
                    write(&mut wr, &output, limits).await?;
                    output.clear();
                }
            }
            if let Some(e) = broken {
                Reply::err(e.to_string()).encode(session.protocol(), &mut output);
                write(&mut wr, &output, limits).await?;
                wr.shutdown().await?;
                linger(&mut rd).await;
                return Ok(Ended::ProtocolError(e.to_string()));
            }
        }
        if !output.is_empty() {
            write(&mut wr, &output, limits).await?;
            output.clear();
        }
        input.reserve(READ_BYTES);
        if rd.read_buf(&mut input).await? == 0 {
            return Ok(Ended::Closed);
        }
    }
}

/// Writes `bytes` within the write timeout; `TimedOut` when the client does not read.
async fn write<W: AsyncWrite + Unpin>(wr: &mut W, bytes: &[u8], limits: &Limits) -> io::Result<()> {
    match tokio::time::timeout(limits.write_timeout, wr.write_all(bytes)).await {
        Ok(written) => written,
        Err(_) => Err(io::Error::new(
            io::ErrorKind::TimedOut,
            format!(
                "the client read no reply for {:?}: closing the connection",
                limits.write_timeout
            ),
        )),
    }
}

/// Reads and drops what the client still sends, until it closes or the linger bounds pass.
async fn linger<R: AsyncRead + Unpin>(rd: &mut R) {
    let mut buf = vec![0u8; READ_BYTES];
    let mut left = LINGER_BYTES_MAX;
    let drain = async {
        while left > 0 {
            match rd.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => left = left.saturating_sub(n),
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::tests::Memory;
    use tokio::io::duplex;

    fn rt() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap()
    }

    /// Sends `input`, closes the sending side, and returns what came back and how the
    /// server side ended.
    async fn exchange(input: Vec<u8>) -> (Vec<u8>, io::Result<Ended>) {
        exchange_with(Session::new(1), input).await
    }

    /// [`exchange`] on a connection whose state starts as `session`.
    async fn exchange_with(mut session: Session, input: Vec<u8>) -> (Vec<u8>, io::Result<Ended>) {
        let (client, server) = duplex(64 << 10);
        let serving = tokio::spawn(async move {
            let mut b = Memory::mastering_all();
            serve(server, &mut session, &mut b, &Limits::default()).await
        });
        let (mut rd, mut wr) = tokio::io::split(client);
        let writing = tokio::spawn(async move {
            // The server may close first (a protocol error): a failed write is expected then.
            let _ = wr.write_all(&input).await;
            let _ = wr.shutdown().await;
        });
        let mut got = Vec::new();
        rd.read_to_end(&mut got).await.unwrap();
        writing.await.unwrap();
        (got, serving.await.unwrap())
    }

    #[test]
    fn ten_thousand_pipelined_commands_are_answered_in_order() {
        rt().block_on(async {
            let mut input = Vec::new();
            for i in 0..10_000 {
                if i % 2 == 0 {
                    input.extend_from_slice(
                        format!(
                            "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n${}\r\n{i}\r\n",
                            i.to_string().len()
                        )
                        .as_bytes(),
                    );
                } else {
                    input.extend_from_slice(b"GET k\r\n");
                }
            }
            let (got, ended) = exchange(input).await;
            assert_eq!(ended.unwrap(), Ended::Closed);
            let mut want = Vec::new();
            for i in 0..10_000 {
                if i % 2 == 0 {
                    want.extend_from_slice(b"+OK\r\n");
                } else {
                    let v = (i - 1).to_string();
                    want.extend_from_slice(format!("${}\r\n{v}\r\n", v.len()).as_bytes());
                }
            }
            assert_eq!(got, want);
        });
    }

    /// Goal: a client that pipelines and never reads its replies is disconnected once the
    /// write timeout passes, instead of holding the connection forever. Method: a 1 KiB
    /// pipe, 20,000 PINGs written and nothing read, a 200 ms write timeout, on the
    /// runtime's paused clock (virtual time: no wall-clock wait).
    #[test]
    fn a_client_that_never_reads_is_disconnected_after_the_write_timeout() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .start_paused(true)
            .build()
            .unwrap();
        rt.block_on(async {
            let (client, server) = duplex(1 << 10);
            let limits = Limits {
                write_timeout: Duration::from_millis(200),
                ..Limits::default()
            };
            let serving = tokio::spawn(async move {
                let mut b = Memory::mastering_all();
                serve(server, &mut Session::new(1), &mut b, &limits).await
            });
            let (_rd, mut wr) = tokio::io::split(client);
            let pings = b"PING\r\n".repeat(20_000);
            // The server stops reading once its replies back up: the write may not finish.
            let _ = tokio::time::timeout(Duration::from_secs(1), wr.write_all(&pings)).await;
            let ended = serving.await.unwrap();
            assert_eq!(ended.unwrap_err().kind(), io::ErrorKind::TimedOut);
        });
    }

    #[test]
    fn a_protocol_error_is_answered_then_the_connection_closes() {
        rt().block_on(async {
            let (got, ended) = exchange(b"PING\r\n*1\r\n$2147483648\r\nSET k v\r\n".to_vec()).await;
            let text = String::from_utf8(got).unwrap();
            assert!(
                text.starts_with("+PONG\r\n-ERR Protocol error: invalid bulk length"),
                "{text}"
            );
            assert!(matches!(ended.unwrap(), Ended::ProtocolError(_)));
        });
    }

    #[test]
    fn an_endless_inline_line_is_refused_once_it_passes_the_limit() {
        rt().block_on(async {
            let (got, ended) = exchange(vec![b'x'; 200 << 10]).await;
            assert_eq!(got, b"-ERR Protocol error: too big inline request\r\n");
            assert!(matches!(ended.unwrap(), Ended::ProtocolError(_)));
        });
    }

    #[test]
    fn garbage_in_an_array_is_a_protocol_error() {
        rt().block_on(async {
            let (got, _) = exchange(b"*2\r\n$3\r\nGET\r\n+k\r\n".to_vec()).await;
            assert_eq!(got, b"-ERR Protocol error: expected '$', got '+'\r\n");
        });
    }

    #[test]
    fn unknown_commands_keep_the_connection_open() {
        rt().block_on(async {
            let (got, ended) = exchange(b"FLUSHALL\r\nPING\r\nQUIT\r\nPING\r\n".to_vec()).await;
            let text = String::from_utf8(got).unwrap();
            assert_eq!(
                text,
                "-ERR unknown command 'FLUSHALL', with args beginning with: \r\n+PONG\r\n+OK\r\n"
            );
            assert_eq!(ended.unwrap(), Ended::Quit);
        });
    }

    fn protected() -> Session {
        let password = crate::auth::Password::new("pw").expect("not empty");
        let access = crate::auth::Access::new(Some(std::sync::Arc::new(password)));
        Session::with_access(1, access)
    }

    /// Goal: an AUTH pipelined with the commands after it (one read) lets them run, in
    /// order, and the ones before it are refused. Method: one write of all of it.
    #[test]
    fn a_pipelined_auth_lets_the_commands_after_it_run() {
        rt().block_on(async {
            let input = b"SET k v\r\nAUTH pw\r\nSET k v\r\nGET k\r\nQUIT\r\n".to_vec();
            let (got, ended) = exchange_with(protected(), input).await;
            let text = String::from_utf8(got).unwrap();
            assert_eq!(
                text,
                "-NOAUTH Authentication required.\r\n+OK\r\n+OK\r\n$1\r\nv\r\n+OK\r\n"
            );
            assert_eq!(ended.unwrap(), Ended::Quit);
        });
    }

    /// Goal: before the password a request may hold at most 10 arguments of at most 16 KiB
    /// (Redis's limits for unauthenticated clients); after it the usual limits apply.
    /// Method: the same large SET before and after AUTH.
    #[test]
    fn before_the_password_requests_are_small() {
        rt().block_on(async {
            let big = format!(
                "*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$20000\r\n{}\r\n",
                "x".repeat(20_000)
            );
            let (got, ended) = exchange_with(protected(), big.clone().into_bytes()).await;
            let text = String::from_utf8(got).unwrap();
            assert!(text.starts_with("-ERR Protocol error: "), "{text}");
            assert!(matches!(ended.unwrap(), Ended::ProtocolError(_)));
            let many = b"*11\r\n".to_vec();
            let (got, _) = exchange_with(protected(), many).await;
            assert!(
                String::from_utf8(got)
                    .unwrap()
                    .starts_with("-ERR Protocol error: ")
            );
            let after = format!("AUTH pw\r\n{big}GET k\r\n");
            let (got, ended) = exchange_with(protected(), after.into_bytes()).await;
            let text = String::from_utf8(got).unwrap();
            assert!(
                text.starts_with("+OK\r\n+OK\r\n$20000\r\n"),
                "{}",
                &text[..40.min(text.len())]
            );
            assert_eq!(ended.unwrap(), Ended::Closed);
        });
    }
}
