//! Sign-in: `POST /api/login {"user":"u7"}` answers `{"token":..}`, over a few kept-alive
//! HTTP/1.1 connections (a connection per user would leave thousands of ports in TIME_WAIT).

use std::net::SocketAddr;

use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// How many connections sign the users in side by side.
const CONNECTIONS: usize = 8;
/// The largest response read.
const MAX_RESPONSE: usize = 64 * 1024;

#[derive(Deserialize)]
struct Token {
    token: String,
}

/// The tokens of users `u0`..`u{n-1}`, in order.
pub(crate) async fn login_all(server: SocketAddr, n: usize) -> Result<Vec<String>, String> {
    let chunk = n.div_ceil(CONNECTIONS).max(1);
    let mut tasks = Vec::new();
    for start in (0..n).step_by(chunk) {
        let end = (start + chunk).min(n);
        tasks.push(tokio::spawn(async move {
            let mut stream = TcpStream::connect(server)
                .await
                .map_err(|e| format!("login: connect {server}: {e}"))?;
            let mut tokens = Vec::with_capacity(end - start);
            for i in start..end {
                tokens.push(login(&mut stream, server, &format!("u{i}")).await?);
            }
            Ok::<_, String>(tokens)
        }));
    }
    let mut tokens = Vec::with_capacity(n);
    for task in tasks {
        tokens.extend(task.await.map_err(|e| format!("login task: {e}"))??);
    }
    Ok(tokens)
}

async fn login(stream: &mut TcpStream, server: SocketAddr, user: &str) -> Result<String, String> {
    let body = format!(r#"{{"user":"{user}"}}"#);
    let request = format!(
        "POST /api/login HTTP/1.1\r\nHost: {server}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    stream
        .write_all(request.as_bytes())
        .await
        .map_err(|e| format!("login {user}: {e}"))?;
    let body = read_response(stream)
        .await
        .map_err(|e| format!("login {user}: {e}"))?;
    let token: Token =
        serde_json::from_slice(&body).map_err(|e| format!("login {user}: the answer: {e}"))?;
    Ok(token.token)
}

/// One response's body (status 200, `Content-Length` framing).
async fn read_response(stream: &mut TcpStream) -> Result<Vec<u8>, String> {
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break at + 4;
        }
        if buf.len() > MAX_RESPONSE {
            return Err("response head too long".into());
        }
        read_more(stream, &mut buf).await?;
    };
    let head = std::str::from_utf8(&buf[..head_end]).map_err(|_| "response head not UTF-8")?;
    let mut lines = head.split("\r\n");
    let status = lines.next().unwrap_or_default();
    if status.split(' ').nth(1) != Some("200") {
        return Err(format!("status {status:?}"));
    }
    let length = lines
        .filter_map(|l| l.split_once(':'))
        .find(|(name, _)| name.trim().eq_ignore_ascii_case("content-length"))
        .and_then(|(_, v)| v.trim().parse::<usize>().ok())
        .ok_or("no Content-Length in the response")?;
    if length > MAX_RESPONSE {
        return Err(format!("response of {length} bytes"));
    }
    while buf.len() < head_end + length {
        read_more(stream, &mut buf).await?;
    }
    if buf.len() > head_end + length {
        return Err("bytes after the response".into());
    }
    Ok(buf.split_off(head_end))
}

async fn read_more(stream: &mut TcpStream, buf: &mut Vec<u8>) -> Result<(), String> {
    let mut chunk = [0u8; 4096];
    let read = stream.read(&mut chunk).await.map_err(|e| e.to_string())?;
    if read == 0 {
        return Err("connection closed".into());
    }
    buf.extend_from_slice(&chunk[..read]);
    Ok(())
}
