//! Protocol robustness of a real server process's Redis port (`shardkv up`): malformed
//! RESP, a bulk length of 2^31, an inline line longer than the inline limit that never
//! ends, and 10,000 pipelined commands on one connection. Each gets an error or its
//! answers (the pipelined ones all, in order); after each, another connection is still
//! served; and the process's resident memory (VmRSS) grows by less than
//! [`RSS_GROWTH_MAX_KIB`] over the whole test — a 2 GiB bulk is refused from its header,
//! not allocated.
//!
//! Outcomes only: every read is bounded by a timeout; no timing is asserted.

mod common;

use common::redis::{master_port, redis_ports, rss_kib, server_pid, settled_masters};
use common::up::Up;
use shardkv_types::key_slot;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

/// The bound on the server's RSS growth over the test: the requests below could make a
/// careless server hold gigabytes; this one holds at most a request and 64 KiB of replies
/// per connection (plus what 5,000 writes add to its Raft log).
const RSS_GROWTH_MAX_KIB: u64 = 64 << 10;
/// How long one read may wait.
const READ_WAIT: Duration = Duration::from_secs(60);
/// Commands pipelined on one connection.
const PIPELINED: usize = 10_000;

fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(READ_WAIT)).expect("timeout");
    s
}

/// Sends `input` (ignoring a write the server cut short by closing) and reads to the end:
/// what the server answered before it closed the connection.
fn send_and_read_to_close(port: u16, input: &[u8]) -> String {
    let mut s = connect(port);
    let _ = s.write_all(input);
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    String::from_utf8_lossy(&got).into_owned()
}

/// A new connection is served: PING answers PONG.
fn still_serves(port: u16) {
    let mut s = connect(port);
    s.write_all(b"PING\r\n").expect("write");
    let mut buf = [0u8; 7];
    s.read_exact(&mut buf).expect("PONG");
    assert_eq!(&buf, b"+PONG\r\n");
}

/// Exchanges (the pipelined SET/GET pairs) tried before a redirect in the middle fails.
const PIPELINE_ATTEMPTS: usize = 5;

/// A process that masters some slots once the masters settled, and a key in its slots.
fn mastered_key(ports: &[u16]) -> (u16, String) {
    settled_masters(ports)
        .into_iter()
        .find_map(|p| {
            let k = (0..10_000)
                .map(|i| format!("pipe{i}"))
                .find(|k| master_port(p, key_slot(k.as_bytes())) == Some(p))?;
            Some((p, k))
        })
        .expect("a process mastering some slots")
}

/// Where pipelined answers first differed from the expected ones.
struct Diff {
    text: String,
    /// The answer there is a redirect (its slot's master moved meanwhile).
    moved: bool,
}

/// Writes [`PIPELINED`] commands at once to `port` (SET `key` i, then GET `key`, in turns)
/// and reads every answer: `Err` names the first byte where they differ from SET/GET in
/// order.
fn pipeline_in_order(port: u16, key: &str) -> Result<(), Diff> {
    let mut input = Vec::new();
    let mut want = Vec::new();
    for i in 0..PIPELINED / 2 {
        let v = i.to_string();
        input.extend_from_slice(
            format!(
                "*3\r\n$3\r\nSET\r\n${}\r\n{key}\r\n${}\r\n{v}\r\n",
                key.len(),
                v.len()
            )
            .as_bytes(),
        );
        input.extend_from_slice(format!("GET {key}\r\n").as_bytes());
        want.extend_from_slice(format!("+OK\r\n${}\r\n{v}\r\n", v.len()).as_bytes());
    }
    let mut s = connect(port);
    let mut writer = s.try_clone().expect("clone");
    let sending = std::thread::spawn(move || writer.write_all(&input));
    let mut got = Vec::with_capacity(want.len());
    let mut buf = vec![0u8; 64 << 10];
    let mut ended = false;
    loop {
        let diff = got.iter().zip(&want).position(|(g, w)| g != w);
        match diff {
            // The differing answer is complete (or nothing more comes): report it. A
            // redirect starts where the answer it replaces would (`-MOVED` for `+OK`).
            Some(at) if ended || got[at..].windows(2).any(|w| w == b"\r\n") => {
                // Ends the writer too (it shares the socket), then reports.
                let _ = s.shutdown(std::net::Shutdown::Both);
                let _ = sending.join();
                let show = |b: &[u8]| {
                    String::from_utf8_lossy(&b[at..(at + 120).min(b.len())]).into_owned()
                };
                return Err(Diff {
                    moved: got[at..].starts_with(b"-MOVED"),
                    text: format!(
                        "the pipelined answers differ from SET/GET in order at byte {at}: \
                         got {:?}, want {:?}",
                        show(&got),
                        show(&want)
                    ),
                });
            }
            None if got.len() >= want.len() => break,
            None if ended => {
                return Err(Diff {
                    moved: false,
                    text: format!(
                        "the server closed after {} of {} answer bytes",
                        got.len(),
                        want.len()
                    ),
                });
            }
            _ => {}
        }
        let n = s.read(&mut buf).expect("answers within the read timeout");
        ended = n == 0;
        got.extend_from_slice(&buf[..n]);
    }
    sending.join().expect("writer").expect("all sent");
    Ok(())
}

#[test]
fn bad_requests_get_errors_pipelines_get_every_answer_and_memory_stays_bounded() {
    let dir = tempfile::tempdir().expect("temp dir");
    let up = Up::start(dir.path(), &[]);
    let ports = redis_ports(&up);
    // A key a process masters, so the pipelined commands reach the groups.
    let (port, key) = mastered_key(&ports);
    let pid = server_pid(port);
    let rss_before = rss_kib(pid);

    let malformed = send_and_read_to_close(port, b"PING\r\n*2\r\n$3\r\nGET\r\n+k\r\n");
    assert_eq!(
        malformed,
        "+PONG\r\n-ERR Protocol error: expected '$', got '+'\r\n"
    );
    still_serves(port);

    let huge = send_and_read_to_close(port, b"*2\r\n$3\r\nSET\r\n$2147483648\r\nabc");
    assert!(
        huge.starts_with("-ERR Protocol error: invalid bulk length"),
        "{huge}"
    );
    still_serves(port);

    let endless = send_and_read_to_close(port, &vec![b'x'; 200 << 10]);
    assert_eq!(endless, "-ERR Protocol error: too big inline request\r\n");
    still_serves(port);

    // 10,000 commands written at once: SET key i, then GET key, alternating; the answers
    // must come back complete and in order (each GET sees the SET just before it). A
    // leadership change in the middle (an election on a loaded machine) answers the rest
    // MOVED: then the exchange is tried again at the key's new master, a bounded number of
    // times; any other difference fails at once.
    let mut at = (port, key);
    let mut attempts = 0;
    loop {
        attempts += 1;
        match pipeline_in_order(at.0, &at.1) {
            Ok(()) => break,
            Err(diff) if diff.moved && attempts < PIPELINE_ATTEMPTS => {
                eprintln!("attempt {attempts}: {}; trying again", diff.text);
                at = mastered_key(&ports);
            }
            Err(diff) => panic!("{}", diff.text),
        }
    }
    still_serves(port);

    let rss_after = rss_kib(pid);
    eprintln!("server VmRSS: {rss_before} KiB before, {rss_after} KiB after");
    assert!(
        rss_after < rss_before + RSS_GROWTH_MAX_KIB,
        "VmRSS grew from {rss_before} KiB to {rss_after} KiB"
    );
}
