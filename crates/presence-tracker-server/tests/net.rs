//! `net::GuardedListener` over loopback, in tokio's paused time (it moves on when every task
//! waits): silent and half-sent requests closed at the first-response timeout, a client that
//! stops reading closed at the write timeout, idle keep-alives closed, and connections over the
//! limits closed as they are accepted.
#![cfg(feature = "axum")]

use std::time::Duration;

use axum::routing::get;
use presence_tracker_server::net::{ConnectionCounts, ConnectionLimits, GuardedListener};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::Instant;

const FIRST: Duration = Duration::from_secs(10);
const WRITE: Duration = Duration::from_secs(20);
const IDLE: Duration = Duration::from_secs(120);

async fn server(limits: ConnectionLimits) -> (String, ConnectionCounts) {
    let app = axum::Router::new()
        .route("/", get(|| async { "hello" }))
        // 64 MiB: more than the socket buffers hold, for a client that does not read.
        .route("/big", get(|| async { vec![b'x'; 64 << 20] }))
        .route(
            "/upload",
            axum::routing::post(|body: axum::body::Bytes| async move { body.len().to_string() }),
        );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let address = listener.local_addr().expect("bound").to_string();
    let listener = GuardedListener::new(listener, limits);
    let counts = listener.counts();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (address, counts)
}

fn limits() -> ConnectionLimits {
    ConnectionLimits::default().timeouts(FIRST, WRITE, IDLE)
}

/// Reads until the server closes; what it read, and when it closed.
async fn until_closed(c: &mut TcpStream) -> (Vec<u8>, Instant) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match c.read(&mut buf).await {
            Ok(0) | Err(_) => return (got, Instant::now()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

#[tokio::test(start_paused = true)]
async fn a_silent_connection_and_half_sent_headers_are_closed_at_the_first_response_timeout() {
    let (address, counts) = server(limits()).await;
    let start = Instant::now();
    let mut silent = TcpStream::connect(&address).await.expect("connects");
    let mut slow = TcpStream::connect(&address).await.expect("connects");
    slow.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .await
        .expect("writes");
    let (got, at) = until_closed(&mut silent).await;
    assert!(got.is_empty());
    assert!(
        at - start >= FIRST && at - start < FIRST + Duration::from_secs(1),
        "{:?}",
        at - start
    );
    let (got, at) = until_closed(&mut slow).await;
    // hyper may answer the unfinished request with a 408 before it closes; never with a 200.
    assert!(!String::from_utf8_lossy(&got).contains("200 OK"), "{got:?}");
    assert!(
        at - start < FIRST + Duration::from_secs(1),
        "{:?}",
        at - start
    );
    tokio::task::yield_now().await;
    assert_eq!(counts.open(), 0);
}

#[tokio::test(start_paused = true)]
async fn an_answered_keep_alive_stays_until_the_idle_timeout() {
    let (address, counts) = server(limits()).await;
    let mut c = TcpStream::connect(&address).await.expect("connects");
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("writes");
    let mut buf = [0u8; 1024];
    let n = c.read(&mut buf).await.expect("reads");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("hello"));
    let answered = Instant::now();
    // Past the first-response timeout, the connection is still served.
    tokio::time::sleep(FIRST * 2).await;
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("writes");
    let n = c.read(&mut buf).await.expect("reads");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("hello"));
    let last = Instant::now();
    let (_, at) = until_closed(&mut c).await;
    assert!(
        at - last >= IDLE && at - last < IDLE + Duration::from_secs(1),
        "{:?}",
        at - last
    );
    assert!(at - answered > IDLE);
    tokio::task::yield_now().await;
    assert_eq!(counts.open(), 0);
}

#[tokio::test(start_paused = true)]
async fn a_client_that_stops_reading_is_closed_at_the_write_timeout() {
    let (address, counts) = server(limits()).await;
    let mut c = TcpStream::connect(&address).await.expect("connects");
    c.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("writes");
    while counts.open() == 0 {
        tokio::task::yield_now().await;
    }
    let start = Instant::now();
    // The client reads nothing; the server's write stalls once the socket buffers are full.
    while counts.open() > 0 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        assert!(Instant::now() - start < WRITE * 2, "still open");
    }
    let closed = Instant::now() - start;
    assert!(closed >= WRITE, "{closed:?}");
    // What the kernel buffered was less than the body: the response was cut short.
    let (got, _) = until_closed(&mut c).await;
    assert!(got.len() < 64 << 20, "{}", got.len());
}

#[tokio::test(start_paused = true)]
async fn connections_over_the_limits_are_closed_as_they_are_accepted() {
    let (address, counts) = server(limits().connections(3, 2)).await;
    let mut kept = Vec::new();
    for _ in 0..2 {
        kept.push(TcpStream::connect(&address).await.expect("connects"));
    }
    // A third from the same address: closed before any byte is read.
    let mut third = TcpStream::connect(&address).await.expect("connects");
    let (got, _) = until_closed(&mut third).await;
    assert!(got.is_empty());
    assert_eq!((counts.open(), counts.refused()), (2, 1));
    // From another address (127.0.0.2 is loopback too): one more, then the node is full.
    let other = |port: String| async move {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind("127.0.0.2:0".parse().expect("address"))
            .expect("binds");
        socket
            .connect(format!("127.0.0.1:{port}").parse().expect("address"))
            .await
            .expect("connects")
    };
    let port = address.rsplit(':').next().expect("a port").to_string();
    let fourth = other(port.clone()).await;
    let mut fifth = other(port).await;
    let (got, _) = until_closed(&mut fifth).await;
    assert!(got.is_empty());
    assert_eq!((counts.open(), counts.refused()), (3, 2));
    // A place freed is taken again.
    drop(kept.pop());
    drop(fourth);
    let mut c = TcpStream::connect(&address).await.expect("connects");
    c.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("writes");
    let mut buf = [0u8; 1024];
    let n = c.read(&mut buf).await.expect("reads");
    assert!(String::from_utf8_lossy(&buf[..n]).contains("hello"));
}

#[tokio::test(start_paused = true)]
async fn a_client_is_read_no_faster_than_the_read_rate() {
    let limits = limits().read_rate(64 << 10, 64 << 10);
    let (address, _counts) = server(limits).await;
    let mut c = TcpStream::connect(&address).await.expect("connects");
    let body = vec![b'a'; 1 << 20];
    let start = Instant::now();
    let head = format!(
        "POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    c.write_all(head.as_bytes()).await.expect("writes");
    let (mut reader, mut writer) = c.into_split();
    let sending = tokio::spawn(async move { writer.write_all(&body).await });
    let mut answer = Vec::new();
    let mut buf = [0u8; 1024];
    while !String::from_utf8_lossy(&answer).ends_with("1048576") {
        let n = reader.read(&mut buf).await.expect("reads");
        assert!(n > 0, "closed: {}", String::from_utf8_lossy(&answer));
        answer.extend_from_slice(&buf[..n]);
    }
    sending.await.expect("sent").expect("written");
    // 1 MiB at 64 KiB a second after a burst of 64 KiB: 15 s, give or take a read's size.
    let took = Instant::now() - start;
    assert!(
        took >= Duration::from_secs(15) && took < Duration::from_secs(16),
        "{took:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_peer_tells_whether_the_connection_s_writes_are_blocked() {
    use axum::extract::ConnectInfo;
    use presence_tracker_server::net::Peer;
    use std::sync::{Arc, Mutex};

    let seen: Arc<Mutex<Option<Peer>>> = Arc::default();
    let app = axum::Router::new().route(
        "/big",
        get({
            let seen = Arc::clone(&seen);
            move |ConnectInfo(peer): ConnectInfo<Peer>| async move {
                *seen.lock().expect("not poisoned") = Some(peer);
                vec![b'x'; 16 << 20]
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("binds");
    let address = listener.local_addr().expect("bound");
    let listener = GuardedListener::new(listener, limits());
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<Peer>()).await
    });
    let mut c = TcpStream::connect(address).await.expect("connects");
    c.write_all(b"GET /big HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .await
        .expect("writes");
    let peer = loop {
        if let Some(peer) = seen.lock().expect("not poisoned").clone() {
            break peer;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    };
    assert_eq!(peer.address(), c.local_addr().expect("bound"));
    // The client reads nothing: once the socket buffers are full, the server's write waits.
    let start = Instant::now();
    while !peer.write_blocked() {
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert!(Instant::now() - start < WRITE, "never blocked");
    }
    // It reads: the write goes on, and the connection ends with the response.
    let mut buf = vec![0u8; 1 << 16];
    let mut got = 0usize;
    loop {
        match c.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => got += n,
        }
    }
    assert!(got > 16 << 20, "the whole body: {got}");
    assert!(!peer.write_blocked());
}
