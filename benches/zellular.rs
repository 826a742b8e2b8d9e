//! Zellular-side benchmarks; prints one JSON object per figure.
//!
//!   cargo bench --bench zellular [-- stream|bn254]
//!
//! - `zellular_stream`: the verified finalized stream, client + dev sequencer on
//!   loopback, reading 1 KiB batches from genesis (chain recomputed, every finality
//!   signature verified): batches/s and MB/s.
//! - `bn254_verify`: one finality-signature verification (hash-to-G1 + 2 pairings).

use std::time::{Duration, Instant};

use livenessd::crypto::bn254::SecretKey;
use livenessd::devseq::{DevSeqConfig, DevSequencer};
use livenessd::zellular::finality::FinalityMessage;
use livenessd::zellular::{Client, ClientConfig, Cursor, OperatorSource};
use serde_json::json;
use tokio_util::sync::CancellationToken;

fn main() {
    let which: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let want = |name: &str| which.is_empty() || which.iter().any(|w| w == name);
    let rt = tokio::runtime::Runtime::new().unwrap();
    if want("bn254") {
        bn254();
    }
    if want("stream") {
        rt.block_on(stream(20_000, 1024));
    }
}

fn bn254() {
    let keys: Vec<SecretKey> = (0..4).map(|_| SecretKey::random()).collect();
    let ops: Vec<_> = keys
        .iter()
        .enumerate()
        .map(|(i, k)| livenessd::zellular::Operator {
            id: format!("op{i}"),
            socket: String::new(),
            stake: 10.0,
            public_key: k.public_key_g2(),
        })
        .collect();
    let set = livenessd::zellular::OperatorSet::new(ops, 67.0).unwrap();
    let signer = SecretKey::sum(&keys[..3]);
    let n = 300;
    let msgs: Vec<(String, String)> = (0..n)
        .map(|i| {
            let m = FinalityMessage {
                app_name: "bench",
                chaining_hash: "0123456789abcdef0123456789abcdef",
                index: i,
                parent_index: i.saturating_sub(1),
                state: "locked",
                timestamp: 1_700_000_000 + i as i64,
            };
            (
                m.to_json(),
                signer.sign(m.signed_bytes().as_bytes()).to_string(),
            )
        })
        .collect();
    let ns = vec!["op3".to_owned()];
    let t = Instant::now();
    for (m, s) in &msgs {
        set.verify(m, s, &ns).unwrap();
    }
    let per = t.elapsed() / n as u32;
    let t = Instant::now();
    for (m, _) in &msgs {
        std::hint::black_box(signer.sign(m.as_bytes()));
    }
    let sign = t.elapsed() / n as u32;
    println!(
        "{}",
        json!({"bench": "bn254_verify", "ops": n, "us_per_verify": per.as_secs_f64() * 1e6,
               "verifies_per_s": 1.0 / per.as_secs_f64(), "us_per_sign": sign.as_secs_f64() * 1e6})
    );
}

async fn stream(n: usize, size: usize) {
    let dir = tempfile::tempdir().unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let mut cfg = DevSeqConfig::new(dir.path(), &url);
    cfg.finalize_interval = Duration::from_millis(50);
    let seq = DevSequencer::open(cfg).await.unwrap();
    let ops = OperatorSource::Static(seq.operator_set());
    let stop = CancellationToken::new();
    let server = tokio::spawn(seq.serve(listener, stop.clone()));

    let client = Client::new(ClientConfig::new("bench", vec![url.clone()]));
    let t = Instant::now();
    let mut writers = Vec::new();
    for w in 0..8 {
        let c = client.clone();
        writers.push(tokio::spawn(async move {
            let pad = "x".repeat(size - 16);
            for i in (w..n).step_by(8) {
                c.submit(&format!("{i:015}-{pad}")).await.unwrap();
            }
        }));
    }
    for w in writers {
        w.await.unwrap();
    }
    let submit = t.elapsed();
    // Let the last sync point land.
    tokio::time::sleep(Duration::from_millis(200)).await;

    let t = Instant::now();
    let mut s = client.finalized_stream(Cursor::genesis(), ops);
    let (mut got, mut bytes) = (0usize, 0usize);
    while got < n {
        for b in s.next_chunk().await.unwrap() {
            got += 1;
            bytes += b.body.len();
        }
    }
    let read = t.elapsed();
    println!(
        "{}",
        json!({"bench": "zellular_stream", "batches": n, "batch_bytes": size,
               "batches_per_s": n as f64 / read.as_secs_f64(),
               "mb_per_s": bytes as f64 / 1e6 / read.as_secs_f64(),
               "submit_batches_per_s": n as f64 / submit.as_secs_f64()})
    );
    stop.cancel();
    let _ = server.await;
}
