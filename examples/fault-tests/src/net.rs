//! Raw HTTP/1.1 over TCP, for clients that stall or never finish a request.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::TcpStream;

/// `127.0.0.1:PORT` of a server's `http://127.0.0.1:PORT` base.
#[must_use]
pub fn addr(base: &str) -> String {
    base.trim_start_matches("http://").to_owned()
}

/// Opens a connection and writes `bytes` (a request's beginning), leaving
/// the rest unsent.
///
/// # Panics
/// When the server cannot be reached within 5 s.
pub async fn start_request(base: &str, bytes: &[u8]) -> TcpStream {
    let mut tcp = tokio::time::timeout(Duration::from_secs(5), TcpStream::connect(addr(base)))
        .await
        .expect("connect within 5 s")
        .expect("connect");
    tcp.write_all(bytes).await.expect("write the request");
    tcp.flush().await.expect("flush");
    tcp
}

/// The headers of a `POST path` with a JSON body of `len` bytes, asking the
/// server to close the connection after its answer.
#[must_use]
pub fn post_head(path: &str, len: usize) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n\
         Content-Length: {len}\r\nConnection: close\r\n\r\n"
    )
}

/// How a raw connection ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ending {
    /// The server answered this status (the body follows in the text).
    Answered(u16, String),
    /// The server closed (or reset) the connection without an answer.
    Closed,
    /// Nothing happened within the wait.
    Hung,
}

/// Reads until the server closes the connection (at most `within`): its
/// answer, if any, and how long it took.
pub async fn read_to_end(tcp: &mut TcpStream, within: Duration) -> (Ending, Duration) {
    let started = Instant::now();
    let mut buf = Vec::new();
    let mut chunk = [0_u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    loop {
        match tokio::time::timeout_at(deadline, tcp.read(&mut chunk)).await {
            Err(_) => {
                return (
                    if buf.is_empty() {
                        Ending::Hung
                    } else {
                        parse(&buf)
                    },
                    started.elapsed(),
                );
            }
            Ok(Ok(0) | Err(_)) => {
                let ending = if buf.is_empty() {
                    Ending::Closed
                } else {
                    parse(&buf)
                };
                return (ending, started.elapsed());
            }
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}

fn parse(buf: &[u8]) -> Ending {
    let text = String::from_utf8_lossy(buf).into_owned();
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    Ending::Answered(status, body)
}

/// A `GET path` that keeps the connection open after its answer.
#[must_use]
pub fn get_keep_alive(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
}

/// A `GET path` asking the server to close the connection after its answer.
#[must_use]
pub fn get_close(path: &str) -> String {
    format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
}

/// Reads one answer (its head, then a body of its `Content-Length`) from a
/// connection that stays open, at most `within`: the answer, or how the
/// connection ended instead (`Hung`: the answer was not complete in time).
pub async fn read_answer(tcp: &mut TcpStream, within: Duration) -> Ending {
    let mut buf = Vec::new();
    let mut chunk = [0_u8; 4096];
    let deadline = tokio::time::Instant::now() + within;
    let mut want = None;
    loop {
        if want.is_none()
            && let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n")
        {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len = head
                .lines()
                .find_map(|line| line.strip_prefix("content-length:"))
                .and_then(|len| len.trim().parse::<usize>().ok())
                .unwrap_or(0);
            want = Some(end + 4 + len);
        }
        if want.is_some_and(|want| buf.len() >= want) {
            return parse(&buf);
        }
        match tokio::time::timeout_at(deadline, tcp.read(&mut chunk)).await {
            Err(_) => return Ending::Hung,
            Ok(Ok(0) | Err(_)) => return Ending::Closed,
            Ok(Ok(n)) => buf.extend_from_slice(&chunk[..n]),
        }
    }
}
