//! The standing abuse suite: what an attacker or a careless client can do
//! to the webhook port, and what an unwell API server does to Harbor's
//! deliveries. Loopback only, bounded in count and time, a few seconds
//! each. "Answered within 3 s" is Harbor's delivery timeout, asserted as
//! the contract it is (the server's own deadline is 2.5 s).
//!
//! Each test prints its figures (`abuse: …`) for the issue's report; run
//! `cargo nextest run -p e2e --test abuse --no-capture` to see them.

use std::time::{Duration, Instant};

use bytes::Bytes;
use e2e::abuse::*;
use e2e::*;
use futures::StreamExt;
use http::{Method, Request};
use http_body_util::{Full, StreamBody};
use hyper::body::Frame;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const TOKEN_A: &str = "abuse-token-a-5d41402abc4b2a76";
const TOKEN_B: &str = "abuse-token-b-7d793037a0760186";

fn assert_in_time(what: &str, took: Duration) {
    assert!(
        took < HARBOR_TIMEOUT,
        "{what}: answered after {took:?}, beyond Harbor's 3 s"
    );
}

#[tokio::test]
async fn silent_connections_beyond_the_cap_neither_delay_a_push_nor_stay_open() {
    let (_env, path, app) = one_tenant(TOKEN_A, 1, &["--header-read-timeout", "3s"]).await;
    // More than --max-connections (1024), all from 127.0.0.1 as the push
    // below, and more than the metrics port's 64.
    let opened = Instant::now();
    let webhook = silent_connections(app.listen_addr, 1100).await;
    let metrics = silent_connections(app.metrics_addr, 70).await;
    let client = http_client();
    let url = format!("http://{}{path}", app.listen_addr);
    let (answer, took) = timed_post(&client, &url, TOKEN_A, &push_body("1.0.0")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_in_time("push", took);
    let healthz = format!("http://{}/healthz", app.listen_addr);
    assert!(answers_200(&client, &healthz, HARBOR_TIMEOUT).await);
    let scrape = format!("http://{}/metrics", app.metrics_addr);
    assert!(answers_200(&http_client(), &scrape, HARBOR_TIMEOUT).await);
    // Every silent connection is closed by the header timeout (3 s) plus
    // a few seconds: given way to newer ones, or timed out.
    let mut streams = webhook;
    streams.extend(metrics);
    let closed = all_closed(streams, Duration::from_secs(3 + 5)).await;
    println!(
        "abuse: 1,170 silent connections: push answered in {took:?}; all closed {:?} after the first opened",
        opened.elapsed().max(closed)
    );
    let text = app.metrics_text();
    for needle in [
        r#"connections_closed_total{listener="webhook",end="evicted_per_client"}"#,
        r#"connections_closed_total{listener="webhook",end="header_timeout"}"#,
        r#"connections_closed_total{listener="metrics",end="evicted_per_client"}"#,
    ] {
        assert!(text.contains(needle), "{needle} not in\n{text}");
    }
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn idle_h2_connections_are_closed_whether_they_ping_or_not() {
    let env = Env::start().await;
    let app = env
        .start_app(&["--idle-timeout", "1s", "--header-read-timeout", "2s"])
        .await;
    // A well-formed h2 client that answers and sends pings, idle after one
    // request.
    let tcp = TcpStream::connect(app.listen_addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(Duration::from_millis(200))
        .keep_alive_while_idle(true)
        .handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let request = Request::get("http://x/healthz")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    let idle = Instant::now();
    tokio::time::timeout(Duration::from_secs(1 + 5), conn)
        .await
        .expect("the idle h2 connection was closed")
        .unwrap()
        .ok();
    println!(
        "abuse: idle h2 connection closed after {:?}",
        idle.elapsed()
    );
    // The preface and SETTINGS, then nothing: no request head ever comes.
    let mut raw = TcpStream::connect(app.listen_addr).await.unwrap();
    raw.write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let took = all_closed(vec![raw], Duration::from_secs(2 + 5)).await;
    println!("abuse: h2 connection with no stream closed after {took:?}");
    assert!(app.metrics_text().contains(r#"end="idle"} 1"#));
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn idle_http1_keep_alive_connections_are_closed() {
    let env = Env::start().await;
    // The header deadline is far beyond the idle one plus the margin: a
    // close within the margin is the idle timeout's.
    let app = env
        .start_app(&["--idle-timeout", "1s", "--header-read-timeout", "10s"])
        .await;
    let tcp = TcpStream::connect(app.listen_addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    // Two requests on the one connection: it is kept alive, then idle.
    for _ in 0..2 {
        let request = Request::get("http://x/healthz")
            .body(Full::new(Bytes::new()))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        http_body_util::BodyExt::collect(response.into_body())
            .await
            .unwrap();
    }
    let idle = Instant::now();
    // The sender stays alive: the client never closes the connection
    // itself, so only the server can end it.
    tokio::time::timeout(Duration::from_secs(1 + 5), conn)
        .await
        .expect("the idle keep-alive connection was closed")
        .unwrap()
        .ok();
    println!(
        "abuse: idle HTTP/1 keep-alive connection closed after {:?}",
        idle.elapsed()
    );
    assert!(sender.is_closed());
    let text = app.metrics_text();
    assert!(
        text.contains(r#"connections_closed_total{listener="webhook",end="idle"} 1"#),
        "{text}"
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_tls_connection_that_never_finishes_its_handshake_is_closed() {
    let env = Env::start().await;
    let dir = tempfile::tempdir().unwrap();
    let (cert, key) = self_signed(dir.path(), "server");
    let (cert, key) = (cert.to_string_lossy(), key.to_string_lossy());
    let app = env
        .start_app(&[
            "--tls-cert",
            &cert,
            "--tls-key",
            &key,
            "--header-read-timeout",
            "2s",
        ])
        .await;
    // Nothing at all, and the first bytes of a ClientHello then nothing.
    let silent = TcpStream::connect(app.listen_addr).await.unwrap();
    let mut partial = TcpStream::connect(app.listen_addr).await.unwrap();
    partial
        .write_all(&[0x16, 0x03, 0x01, 0x02, 0x00, 0x01])
        .await
        .unwrap();
    let took = all_closed(vec![silent, partial], Duration::from_secs(2 + 5)).await;
    println!("abuse: TLS connections with no complete handshake closed after {took:?}");
    assert!(app
        .metrics_text()
        .contains(r#"connections_closed_total{listener="webhook",end="header_timeout"} 2"#));
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn slow_headers_and_slow_bodies_are_cut_off_at_their_deadlines() {
    let (_env, path, app) = one_tenant(TOKEN_A, 0, &["--header-read-timeout", "2s"]).await;
    // A head sent a byte every 100 ms never completes: closed at 2 s.
    let mut drip = TcpStream::connect(app.listen_addr).await.unwrap();
    let started = Instant::now();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nX-Padding: {}\r\n\r\n",
        "a".repeat(200)
    );
    let mut cut = false;
    for byte in head.as_bytes() {
        if drip.write_all(&[*byte]).await.is_err() {
            cut = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        if started.elapsed() > Duration::from_secs(2 + 5) {
            break;
        }
    }
    if !cut {
        all_closed(vec![drip], Duration::from_secs(5)).await;
    }
    let took = started.elapsed();
    assert!(took < Duration::from_secs(2 + 5), "{took:?}");
    println!("abuse: a dripping head was cut off after {took:?}");
    // A body that stops arriving: 408 within the answer deadline.
    let mut slow = TcpStream::connect(app.listen_addr).await.unwrap();
    let started = Instant::now();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {TOKEN_A}\r\nContent-Length: 1000\r\n\r\n{{\"type\""
    );
    slow.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 4096];
    let n = tokio::time::timeout(PATIENCE, slow.read(&mut answer))
        .await
        .expect("an answer")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer[..n]);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(
        answer.ends_with("{\"error\":\"request timeout\"}\n"),
        "{answer}"
    );
    assert_in_time("slow body", started.elapsed());
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn one_tenant_s_slow_uploads_do_not_delay_another_tenant_s_push() {
    let env = Env::start().await;
    let path_a = env.tenant("p1", TOKEN_A).await;
    let path_b = env.tenant("p2", TOKEN_B).await;
    env.many_warehouses("p2", 1);
    let app = env.start_app(&[]).await;
    wait_serving(&app, 2, 1).await;
    // Tenant A: 70 uploads on ONE h2 connection, each sending a byte of
    // its body and then nothing.
    let tcp = TcpStream::connect(app.listen_addr).await.unwrap();
    let (sender, conn) = hyper::client::conn::http2::Builder::new(TokioExecutor::new())
        .handshake(TokioIo::new(tcp))
        .await
        .unwrap();
    let conn = tokio::spawn(conn);
    let mut uploads = Vec::new();
    let mut held = Vec::new();
    for _ in 0..70 {
        let (tx, rx) = futures::channel::mpsc::channel::<Result<Frame<Bytes>, std::io::Error>>(1);
        let mut tx = tx;
        tx.try_send(Ok(Frame::data(Bytes::from_static(b"{"))))
            .unwrap();
        held.push(tx);
        let request = Request::post(format!("http://x{path_a}"))
            .header("authorization", TOKEN_A)
            .body(StreamBody::new(rx))
            .unwrap();
        let mut sender = sender.clone();
        uploads.push(tokio::spawn(async move {
            sender.ready().await.ok()?;
            let response = sender.send_request(request).await.ok()?;
            Some(response.status().as_u16())
        }));
    }
    // Tenant B's push is answered in time.
    let client = http_client();
    let url = format!("http://{}{path_b}", app.listen_addr);
    let (answer, took) = timed_post(&client, &url, TOKEN_B, &push_body("1.0.0")).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    assert_in_time("tenant B's push", took);
    println!("abuse: tenant B's push behind 70 slow uploads of tenant A: {took:?}");
    // A's uploads end at their deadline, with 408 (or, queued behind the
    // stream limit, never started before the connection went away).
    for upload in uploads {
        let status = tokio::time::timeout(PATIENCE, upload)
            .await
            .unwrap()
            .unwrap();
        assert!(matches!(status, Some(408) | None), "{status:?}");
    }
    drop(held);
    conn.abort();
    app.shutdown().await.unwrap();
}

/// A fan-out to `n` Warehouses: the push, then retries as Harbor would
/// (same body) until 200; every answer within 3 s. Returns the answers.
async fn deliver_until_ok(
    app_addr: std::net::SocketAddr,
    path: &str,
    body: &str,
) -> Vec<(u16, Duration)> {
    let client = http_client();
    let url = format!("http://{app_addr}{path}");
    let mut answers = Vec::new();
    let started = Instant::now();
    loop {
        let (answer, took) = timed_post(&client, &url, TOKEN_A, body).await;
        assert_in_time("delivery", took);
        answers.push((answer.status.as_u16(), took));
        if answer.status == 200 {
            return answers;
        }
        assert!(matches!(answer.status.as_u16(), 500 | 503), "{answer:?}");
        assert!(started.elapsed() < PATIENCE, "no 200 after {answers:?}");
        // Harbor waits 16 s or more; the tests need not.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

#[tokio::test]
async fn a_push_fanning_out_behind_a_slow_api_server_is_answered_in_time() {
    let (env, path, app) = one_tenant(TOKEN_A, 150, &[]).await;
    env.emulator.inject(
        Fault::latency(Duration::from_millis(400))
            .method(Method::PATCH)
            .path_contains("/warehouses/")
            .always(),
    );
    let answers = deliver_until_ok(app.listen_addr, &path, &push_body("1.0.0")).await;
    println!("abuse: 150 Warehouses at 0.4 s per PATCH: answers {answers:?}");
    env.emulator.clear_faults();
    assert_eq!(env.refreshed_warehouses("p1").await, 150);
    assert_eq!(env.warehouse_patches(), 150, "the fan-out ran once");
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_redelivery_joins_the_running_fan_out_instead_of_repeating_it() {
    let env = Env::start().await;
    let path = env.tenant("p1", TOKEN_A).await;
    env.many_warehouses("p1", 150);
    // 150 / 8 × 0.4 s = 7.5 s of work: well past the answer deadline.
    let app = env.start_app(&["--refresh-concurrency", "8"]).await;
    wait_serving(&app, 1, 150).await;
    env.emulator.inject(
        Fault::latency(Duration::from_millis(400))
            .method(Method::PATCH)
            .path_contains("/warehouses/")
            .always(),
    );
    let body = push_body("2.0.0");
    let answers = deliver_until_ok(app.listen_addr, &path, &body).await;
    assert_eq!(answers[0].0, 503, "the first attempt outlasts the deadline");
    assert!(answers.len() >= 2);
    println!("abuse: redelivery behind 7.5 s of work: answers {answers:?}");
    assert!(app.metrics_text().contains("refresh_deliveries_running 0"));
    assert_eq!(env.refreshed_warehouses("p1").await, 150);
    assert_eq!(
        env.warehouse_patches(),
        150,
        "one PATCH per Warehouse in all"
    );
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_push_behind_a_failing_api_server_is_answered_in_time_and_a_retry_succeeds() {
    for code in [500u16, 503] {
        let (env, path, app) = one_tenant(TOKEN_A, 150, &["--api-timeout", "2s"]).await;
        env.emulator.inject(
            Fault::new(code)
                .method(Method::PATCH)
                .path_contains("/warehouses/")
                .always(),
        );
        let client = http_client();
        let url = format!("http://{}{path}", app.listen_addr);
        let body = push_body("3.0.0");
        let (answer, took) = timed_post(&client, &url, TOKEN_A, &body).await;
        assert_in_time("failing API server", took);
        // 500: kube does not retry, every PATCH fails at once. 503: kube
        // retries, the answer deadline comes first.
        let want = match code {
            500 => (
                500,
                "{\"error\":\"failed to refresh 150 of 150 warehouses\"}\n",
            ),
            _ => (503, "{\"error\":\"request timeout\"}\n"),
        };
        assert_eq!((answer.status.as_u16(), answer.body.as_str()), want);
        println!(
            "abuse: PATCHes answered {code}: first answer {} after {took:?}",
            answer.status
        );
        env.emulator.clear_faults();
        let answers = deliver_until_ok(app.listen_addr, &path, &body).await;
        println!("abuse: after recovery from {code}: answers {answers:?}");
        assert_eq!(env.refreshed_warehouses("p1").await, 150);
        app.shutdown().await.unwrap();
    }
}

#[tokio::test]
async fn sigterm_ends_the_binary_with_exit_0_even_without_an_api_server() {
    // An API server that accepts and never answers, and one that is not there.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            held.push(socket);
        }
    });
    let absent_url = format!("http://127.0.0.1:{}", free_port());
    for (server, signal) in [
        (&silent_url, "TERM"),
        (&absent_url, "TERM"),
        (&silent_url, "INT"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        let kubeconfig = kubeconfig_for(dir.path(), server);
        let mut bin = Binary::start(
            &kubeconfig,
            "info",
            &["--drain-delay", "1s", "--shutdown-timeout", "3s"],
        );
        let client = http_client();
        wait_until(PATIENCE, "the binary listening", || async {
            answers_200(&client, &bin.url("/healthz"), Duration::from_secs(1)).await
        })
        .await;
        let started = Instant::now();
        bin.signal(signal);
        // Drain delay + shutdown timeout + a margin.
        let status = bin.wait_exit(Duration::from_secs(1 + 3 + 5)).await;
        assert_eq!(status.code(), Some(0), "{}", bin.output());
        println!(
            "abuse: SIG{signal} with API server {server}: exit 0 after {:?}",
            started.elapsed()
        );
    }
    holder.abort();
}

#[tokio::test]
async fn a_wrong_token_flood_logs_a_bounded_number_of_lines() {
    let (_env, path, app) = one_tenant(TOKEN_A, 0, &[]).await;
    let url = format!("http://{}{path}", app.listen_addr);
    let before = captured_logs().len();
    let client = http_client();
    let body = push_body("1.0.0");
    let started = Instant::now();
    let answered = futures::stream::iter(0..10_000)
        .map(|i| {
            let (client, url, body) = (client.clone(), url.clone(), body.clone());
            async move {
                let token = format!("wrong-{i}");
                let (a, _) = timed_post(&client, &url, &token, &body).await;
                assert_eq!(a.status, 401);
            }
        })
        .buffer_unordered(32)
        .count()
        .await;
    assert_eq!(answered, 10_000);
    // A 50 KB method on a known path: 405, logged as a bounded value.
    let mut raw = TcpStream::connect(app.listen_addr).await.unwrap();
    let head = format!(
        "{} {path} HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
        "X".repeat(50_000)
    );
    raw.write_all(head.as_bytes()).await.unwrap();
    let mut answer = vec![0u8; 1024];
    let n = tokio::time::timeout(PATIENCE, raw.read(&mut answer))
        .await
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&answer[..n]).starts_with("HTTP/1.1 405"));
    let logs = captured_logs();
    let flood = &logs[before..];
    let lines = flood
        .lines()
        .filter(|l| l.contains("webhook request"))
        .count();
    println!(
        "abuse: 10,000 wrong-token requests in {:?}: {} bytes of log, {lines} request lines",
        started.elapsed(),
        flood.len()
    );
    assert!(lines <= 10, "{lines} lines for 10,000 rejections:\n{flood}");
    assert!(
        flood.lines().all(|l| l.len() < 1024),
        "a log line longer than 1 KB"
    );
    assert!(app
        .metrics_text()
        .contains(r#"outcome="unauthorized"} 10000"#));
    app.shutdown().await.unwrap();
}

#[tokio::test]
async fn a_client_that_hangs_up_mid_body_is_counted() {
    let (_env, path, app) = one_tenant(TOKEN_A, 0, &[]).await;
    let mut conn = TcpStream::connect(app.listen_addr).await.unwrap();
    let head = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {TOKEN_A}\r\nContent-Length: 1000\r\n\r\n{{"
    );
    conn.write_all(head.as_bytes()).await.unwrap();
    wait_until(PATIENCE, "the request in flight", || async {
        app.metrics_text().contains("webhook_requests_in_flight 1")
    })
    .await;
    drop(conn);
    wait_until(PATIENCE, "the hang-up counted", || async {
        app.metrics_text().contains(r#"outcome="client_gone"} 1"#)
    })
    .await;
    app.shutdown().await.unwrap();
}
