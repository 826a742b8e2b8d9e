//! Every bound a hostile client or a broken disk meets: the connection cap and
//! its health-only overflow, idle timeouts, pagination, rate limits, shared
//! `/state` probes, and a full or read-only disk. Loopback only; outcomes are
//! asserted, never durations.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::cluster::{Cluster, T0};
use common::*;
use livenessd::config::{NodeConfig, RateQuota};
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A client with no pooled connection: each request opens a new one.
fn fresh() -> reqwest::Client {
    livenessd::http_client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap()
}

/// Waits until a new connection gets full service (`/v1/position` answers 200).
async fn full_service(url: &str, secs: u64, what: &str) {
    eventually(secs, what, || async {
        fresh()
            .get(format!("{url}/v1/position"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
}

async fn idle_connections(addr: std::net::SocketAddr, n: usize) -> Vec<tokio::net::TcpStream> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(tokio::net::TcpStream::connect(addr).await.unwrap());
    }
    out
}

/// With the cap reached by idle connections, `/health` and `/ready` still answer
/// (the overflow pool) and everything else is refused with 503 until room frees.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_and_ready_answer_with_the_connection_cap_reached() {
    let c = Cluster::start_manual(
        1,
        1,
        Box::new(|_, cfg| {
            cfg.http.max_connections = 8;
            cfg.http.header_read_timeout_ms = 60_000;
        }),
    )
    .await;
    c.advance(0).await;
    let addr = c.addrs[0];
    // Let the cluster's own keep-alive connections go, then fill every slot and
    // the overflow pool with idle sockets, and more.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let full = idle_connections(addr, 8).await;
    let spare = idle_connections(addr, 60).await;
    // Idle overflow connections are closed within half a second.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let url = format!("http://{addr}");
    let http = fresh();
    let r = http.get(format!("{url}/health")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = http.get(format!("{url}/ready")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let r = http.get(format!("{url}/v1/position")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 503);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("connection limit"),
        "{body}"
    );
    let refused = livenessd::metrics::sample(
        "livenessd_http_connections_rejected_total",
        &[("reason", "full")],
    );
    assert!(
        refused.unwrap_or(0.0) >= 1.0,
        "connections beyond both pools are closed"
    );
    // Room again: full service.
    drop(full);
    drop(spare);
    full_service(&url, 10, "full service again").await;
}

/// A connection that sends nothing — or nothing more after an answer — is closed
/// after the header timeout.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_connections_are_closed_after_the_header_timeout() {
    let c = Cluster::start_manual(
        1,
        1,
        Box::new(|_, cfg| cfg.http.header_read_timeout_ms = 300),
    )
    .await;
    let mut s = tokio::net::TcpStream::connect(c.addrs[0]).await.unwrap();
    let mut buf = [0u8; 64];
    let n = tokio::time::timeout(Duration::from_secs(10), s.read(&mut buf))
        .await
        .expect("the server closes the idle connection")
        .unwrap_or(0);
    assert_eq!(n, 0, "closed without an answer");
}

/// A connection from `ip` (a loopback address other than the nodes' own, so no
/// peer exemption), receiving into a small buffer.
async fn connect_from(ip: &str, addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let s = tokio::net::TcpSocket::new_v4().unwrap();
    s.set_recv_buffer_size(4096).unwrap();
    s.bind(format!("{ip}:0").parse().unwrap()).unwrap();
    s.connect(addr).await.unwrap()
}

/// A client that sends requests but never reads the answers is disconnected once
/// nothing can be written for `write_timeout_ms`, so it cannot pin the slots; and
/// one client holds at most `max_connections_per_client` of them (the monitoring
/// nodes' addresses exempt).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_never_reads_or_hoards_connections_cannot_pin_the_slots() {
    let c = Cluster::start_manual(
        1,
        1,
        Box::new(|_, cfg| {
            cfg.http.max_connections = 4;
            cfg.http.max_connections_per_client = 2;
            cfg.http.write_timeout_ms = 300;
            cfg.http.header_read_timeout_ms = 60_000;
        }),
    )
    .await;
    c.advance(0).await;
    let addr = c.addrs[0];
    let url = format!("http://{addr}");
    tokio::time::sleep(Duration::from_millis(200)).await;

    // One client from 127.0.0.2: its third connection is served like the overflow.
    let hoard = vec![
        connect_from("127.0.0.2", addr).await,
        connect_from("127.0.0.2", addr).await,
    ];
    let mut third = connect_from("127.0.0.2", addr).await;
    third
        .write_all(b"GET /v1/position HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), third.read_to_end(&mut answer))
        .await
        .expect("answered and closed")
        .unwrap();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.starts_with("HTTP/1.1 503") && answer.contains("connection limit"),
        "{answer}"
    );
    // The monitoring node's own address (loopback here) is not held to it.
    let r = fresh()
        .get(format!("{url}/v1/position"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert!(
        livenessd::metrics::sample(
            "livenessd_http_connections_rejected_total",
            &[("reason", "per_client")]
        )
        .unwrap_or(0.0)
            >= 1.0
    );
    drop(hoard);

    // Clients that pipeline requests and never read fill every slot...
    let mut stalled = Vec::new();
    for ip in ["127.0.0.3", "127.0.0.4", "127.0.0.5", "127.0.0.6"] {
        let mut s = connect_from(ip, addr).await;
        let requests = b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n".repeat(2_000);
        stalled.push(tokio::spawn(async move {
            let _ = s.write_all(&requests).await;
            // Hold the socket, unread, until the test ends.
            tokio::time::sleep(Duration::from_secs(3600)).await;
            drop(s);
        }));
    }
    // ...yet their connections are closed once their answers stall, and others are
    // served again.
    full_service(&url, 20, "full service despite the stalled readers").await;
    for t in stalled {
        t.abort();
    }
}

/// Every error answer is `{"detail": ...}` JSON, also those made outside the
/// handlers; a 503 says when to come back.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_error_is_json_with_a_detail() {
    let c = Cluster::start_manual(1, 1, Box::new(|_, _| {})).await;
    let url = &c.nodes[0].as_ref().unwrap().url;
    let a = Cluster::address(0);
    // Before the first sync point the replica is not fresh: 503, Retry-After.
    let r = c
        .http
        .get(format!(
            "{url}/downtime?address={a}&from_timestamp=0&to_timestamp=1"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 503);
    assert!(r.headers().contains_key("retry-after"));
    let body: Value = r.json().await.unwrap();
    assert!(body["detail"].as_str().unwrap().contains("stale"), "{body}");
    let cases = [
        (
            c.http.get(format!("{url}/nope")),
            404,
            "no such endpoint: /nope",
        ),
        (
            c.http.post(format!("{url}/health")),
            405,
            "method not allowed",
        ),
        (
            c.http
                .post(format!("{url}/v1/network/sign"))
                .body(vec![b'x'; 70_000]),
            413,
            "length limit exceeded",
        ),
    ];
    let cases = cases.into_iter().chain([
        (
            c.http.get(format!("{url}/v1/events?address=0xNope")),
            404,
            "Address not found",
        ),
        (
            c.http.get(format!("{url}/badge/0xNope.svg")),
            404,
            "Address not found",
        ),
    ]);
    for (req, status, detail) in cases {
        let r = req.send().await.unwrap();
        assert_eq!(r.status().as_u16(), status);
        assert_eq!(r.headers()["content-type"], "application/json");
        let body: Value = r.json().await.unwrap();
        assert!(
            body["detail"].as_str().unwrap().contains(detail),
            "{status}: {body}"
        );
    }
    // Unknown routes are counted (one label for all), known ones by their route.
    for (route, status) in [("unmatched", "404"), ("/health", "405")] {
        assert!(
            livenessd::metrics::sample(
                "livenessd_http_requests_total",
                &[("route", route), ("status", status)]
            )
            .is_some(),
            "{route} {status}"
        );
    }
}

/// Every list is paginated; following `next` yields every row exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lists_are_paginated_and_cursors_cover_every_row_once() {
    let c = Cluster::start_manual(3, 2, Box::new(|_, _| {})).await;
    let a = Cluster::address(0);
    let batch = {
        let ids: Vec<&Identity> = c.ids.iter().collect();
        let ev: Vec<Value> = (0..300)
            .map(|k| {
                signed_event(
                    &ids,
                    &[],
                    &a,
                    ["down", "up"][k % 2],
                    T0 - 100 + k as i64 / 3,
                )
            })
            .collect();
        json!(ev).to_string()
    };
    c.submit(&batch).await;
    c.settle().await;
    let c = &c;
    let all_pages = |path: String| async move {
        let mut rows = Vec::new();
        let mut next: Option<String> = None;
        let mut pages = 0;
        loop {
            let sep = if path.contains('?') { '&' } else { '?' };
            let url = match &next {
                Some(n) => format!("{path}{sep}cursor={n}"),
                None => path.clone(),
            };
            let (status, v) = c.get(0, &url).await;
            assert_eq!(status, 200, "{url}: {v}");
            rows.extend(v["items"].as_array().unwrap().iter().cloned());
            pages += 1;
            match v["next"].as_str() {
                Some(n) => next = Some(n.to_owned()),
                None => return (rows, pages),
            }
        }
    };
    let (events, pages) = all_pages(format!("/v1/events?address={a}&limit=7")).await;
    assert_eq!(pages, 300usize.div_ceil(7));
    let seqs: Vec<i64> = events.iter().map(|e| e["seq"].as_i64().unwrap()).collect();
    assert_eq!(seqs, (1..=300).collect::<Vec<_>>());
    // (Monitoring began with the first event: no row before it.)
    let (one_page, _) = all_pages(format!("/v1/intervals?address={a}&limit=1000")).await;
    assert_eq!(one_page.len(), 300);
    for limit in [1, 2, 13, 300] {
        let (rows, _) = all_pages(format!("/v1/intervals?address={a}&limit={limit}")).await;
        assert_eq!(rows, one_page, "limit {limit}");
    }
    // All addresses: the second target's single row follows the first's table.
    let (rows, _) = all_pages("/v1/intervals?limit=50".to_owned()).await;
    assert_eq!(rows.len(), 301);
    let (targets, pages) = all_pages("/v1/targets?limit=1".to_owned()).await;
    assert_eq!((targets.len(), pages), (2, 2));
    // Above the maximum, a page holds at most 1,000 rows.
    let (status, v) = c.get(0, "/v1/events?limit=100000").await;
    assert_eq!(status, 200);
    assert!(v["items"].as_array().unwrap().len() <= 1_000);
    assert_eq!(c.get(0, "/v1/events?limit=0").await.0, 400);
    assert_eq!(c.get(0, "/v1/intervals?cursor=garbage").await.0, 400);
}

/// A client over its quota for a class gets 429 with Retry-After; the request is
/// counted; other classes are unaffected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_over_its_quota_gets_429_with_retry_after() {
    let c = Cluster::start_manual(
        1,
        1,
        Box::new(|_, cfg: &mut NodeConfig| {
            cfg.rate_limit.enabled = true;
            // On loopback this client is also a monitoring node's address.
            cfg.rate_limit.peer_factor = 1;
            cfg.rate_limit.query = RateQuota {
                per_second: 1,
                burst: 2,
            };
        }),
    )
    .await;
    let url = format!("{}/v1/position", c.nodes[0].as_ref().unwrap().url);
    let before =
        livenessd::metrics::sample("livenessd_http_rate_limited_total", &[("class", "query")])
            .unwrap_or(0.0);
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for _ in 0..4 {
        let r = c.http.get(&url).send().await.unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            retry_after = r
                .headers()
                .get("retry-after")
                .map(|v| v.to_str().unwrap().to_owned());
        }
    }
    assert_eq!(&statuses[..2], &[200, 200]);
    assert!(statuses[2..].contains(&429), "{statuses:?}");
    assert!(retry_after.unwrap().parse::<u64>().unwrap() >= 1);
    let after =
        livenessd::metrics::sample("livenessd_http_rate_limited_total", &[("class", "query")])
            .unwrap();
    assert!(after > before);
    // /health is another class.
    assert_eq!(c.get(0, "/health").await.0, 200);
}

/// A target whose health endpoint hangs, counting its hits.
fn hanging_target(hang: Duration) -> (Running, Arc<AtomicUsize>) {
    let hits = Arc::new(AtomicUsize::new(0));
    let h = hits.clone();
    let srv = serve_router(axum::Router::new().route(
        "/health",
        axum::routing::get(move || {
            let h = h.clone();
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(hang).await;
                "late"
            }
        }),
    ));
    (srv, hits)
}

/// Concurrent `/state` asks for one target share one probe; a flood of asks for a
/// hung target neither multiplies probes nor delays another target's answer; past
/// the waiter bound, asks are refused with 503.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn state_asks_share_one_probe_per_target_and_a_hung_target_starves_no_other() {
    let (hung, hits) = hanging_target(Duration::from_secs(2));
    let hung_url = format!("{}/health", hung.url);
    let c = Cluster::start_manual(
        1,
        2,
        Box::new(move |_, cfg: &mut NodeConfig| {
            cfg.targets[0].http = Some(hung_url.clone());
            cfg.probe.timeout_ms = 5_000;
            // Scheduled rounds would hit the target too: one at start, then none.
            cfg.probe.interval_ms = 3_600_000;
        }),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(2_500)).await;
    let (hung_addr, other) = (Cluster::address(0), Cluster::address(1));
    let base = c.nodes[0].as_ref().unwrap().url.clone();
    let now = c.clock.now();
    let before = hits.load(Ordering::SeqCst);
    let mut asks = tokio::task::JoinSet::new();
    for _ in 0..300 {
        let (http, u) = (
            c.http.clone(),
            format!("{base}/state?address={hung_addr}&timestamp={now}"),
        );
        asks.spawn(async move {
            let r = http.get(u).send().await.unwrap();
            (r.status().as_u16(), tokio::time::Instant::now())
        });
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Another target is answered at once, while the hung one's probe runs.
    let r = c
        .http
        .get(format!("{base}/state?address={other}&timestamp={now}"))
        .send()
        .await
        .unwrap();
    let other_done = tokio::time::Instant::now();
    assert_eq!(r.status().as_u16(), 200);
    let mut ok = 0;
    let mut busy = 0;
    while let Some(r) = asks.join_next().await {
        let (status, done) = r.unwrap();
        match status {
            200 => {
                ok += 1;
                assert!(done > other_done, "the other target was not kept waiting");
            }
            503 => busy += 1,
            s => panic!("unexpected {s}"),
        }
    }
    let probes = hits.load(Ordering::SeqCst) - before;
    assert!(probes <= 2, "{probes} probes for {ok} answers");
    assert!(ok >= 200, "{ok} answered, {busy} refused");
    assert!(
        busy >= 1,
        "past {} waiters, asks are refused",
        livenessd::prober::MAX_WAITERS_PER_TARGET
    );
}

/// Mounts a tmpfs of `mb` MiB at `dir`; false where this machine does not allow it.
fn mount_tmpfs(dir: &std::path::Path, mb: u32) -> bool {
    std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", &format!("size={mb}m"), "tmpfs"])
        .arg(dir)
        .status()
        .is_ok_and(|s| s.success())
}

fn remount(dir: &std::path::Path, mode: &str) {
    let ok = std::process::Command::new("mount")
        .args(["-o", &format!("remount,{mode}")])
        .arg(dir)
        .status()
        .unwrap();
    assert!(ok.success());
}

struct Unmount(std::path::PathBuf);

impl Drop for Unmount {
    fn drop(&mut self) {
        let _ = std::process::Command::new("umount").arg(&self.0).status();
    }
}

/// A full disk: the node turns unready with the reason, retries at a bounded rate,
/// and resumes by itself — losing nothing — when it can write again. A read-only
/// file system: the node says so at start. On a real (small tmpfs) file system.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_makes_the_node_unready_until_it_can_write_again() {
    let disk = tempfile::tempdir().unwrap();
    if !mount_tmpfs(disk.path(), 4) {
        println!("skipped: this machine does not allow mounting a small file system (needs root)");
        return;
    }
    let _unmount = Unmount(disk.path().to_owned());
    let db = disk.path().join("replica.sqlite");
    let mut c = Cluster::start_manual(
        3,
        1,
        Box::new(move |i, cfg| {
            if i == 0 {
                cfg.database = db.clone();
            }
        }),
    )
    .await;
    c.advance(0).await;
    let a = Cluster::address(0);
    let ids: Vec<Identity> = (1..=3).map(Identity::new).collect();
    let ids: Vec<&Identity> = ids.iter().collect();
    let batches: Vec<String> = (0..20)
        .map(|k| {
            let ev: Vec<Value> = (0..100)
                .map(|j| {
                    let n = k * 100 + j;
                    signed_event(
                        &ids,
                        &[],
                        &a,
                        ["down", "up"][n % 2],
                        T0 - 100 + n as i64 / 40,
                    )
                })
                .collect();
            json!(ev).to_string()
        })
        .collect();

    // Fill the disk.
    let filler = disk.path().join("filler");
    {
        use std::io::Write;
        let mut f = std::fs::File::create(&filler).unwrap();
        let block = vec![0u8; 64 << 10];
        while f.write_all(&block).is_ok() {}
        let _ = f.sync_all();
    }
    for b in &batches[..10] {
        c.submit(b).await;
    }
    c.settle_only(&[1, 2]).await;
    eventually(20, "node 1 reports the full disk", || async {
        let (status, r) = c.get(0, "/ready").await;
        status == 503
            && r["detail"]
                .as_str()
                .unwrap_or("")
                .contains("cannot be written")
    })
    .await;
    let (_, r) = c.get(0, "/ready").await;
    assert!(r["detail"].as_str().unwrap().contains("full"), "{r}");
    // Retries back off: a handful of attempts over three seconds, not a busy loop.
    let errors = || {
        livenessd::metrics::sample("livenessd_replicator_errors_total", &[("kind", "store")])
            .unwrap_or(0.0)
    };
    let e0 = errors();
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(errors() - e0 <= 6.0, "{} attempts in 3 s", errors() - e0);
    // Room again: it resumes by itself and holds what the others hold.
    std::fs::remove_file(&filler).unwrap();
    c.settle().await;
    eventually(90, "node 1 fresh again", || async {
        c.get(0, "/ready").await.0 == 200
    })
    .await;
    assert_eq!(
        c.position(0).await["events_digest"],
        c.position(1).await["events_digest"]
    );

    // A read-only file system (remounting under a running node is refused while
    // files are open, so at start): one message, with the reason in words.
    c.stop_node(0).await;
    remount(disk.path(), "ro");
    let err = livenessd::node::Node::open_with_clock(c.config(0), c.clock.clone())
        .await
        .err()
        .expect("a read-only replica is refused");
    let msg = format!("{err:#}");
    assert!(msg.contains("read-only file system"), "{msg}");
    remount(disk.path(), "rw");
    c.restart_node(0).await;
    for b in &batches[10..] {
        c.submit(b).await;
    }
    c.settle().await;
    assert_eq!(
        c.position(0).await["events_digest"],
        c.position(1).await["events_digest"]
    );
    assert_eq!(c.position(0).await["events_count"], 2_000);
}
