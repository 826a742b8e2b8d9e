//! Answers from running totals agree with the naive per-second model over long
//! random histories (up to 100,000 events for one address): the real store, the
//! real `Answers`, windows anywhere.

use livenessd::answers::{Answers, IntervalCursor};
use livenessd::config::{EpochConfig, MonitoringNode, Target};
use livenessd::crypto::bls::SecretKey;
use livenessd::events::{Event, NodeState};
use livenessd::network::{Genesis, NetworkHandle};
use livenessd::store::node::{Applied, CursorUpdate, ReplicaStore, TargetState};
use rand::{Rng, SeedableRng};

const A: &str = "0xLong";

/// The one monitoring node of the network the answers belong to.
fn node() -> MonitoringNode {
    let sk = SecretKey::key_gen(&[3; 32]).unwrap();
    MonitoringNode {
        id: "N1".into(),
        url: "http://127.0.0.1:9".into(),
        pubkey: sk.public_key().to_hex(),
        pop: Some(sk.prove_possession().to_hex()),
        stake: 1.0,
    }
}

/// A random alternating history (ties allowed, as the apply rules allow them),
/// written through the store.
async fn fill(store: &ReplicaStore, rng: &mut impl Rng, n: usize) -> Vec<(NodeState, i64)> {
    store.init_targets(&[A.to_owned()]).await.unwrap();
    if n == 0 {
        store
            .apply(
                &[],
                None,
                &CursorUpdate {
                    index: 0,
                    chaining_hash: String::new(),
                    partial_items: 0,
                    log_time: 0,
                    monitoring_starts: vec![(A.to_owned(), 0)],
                },
            )
            .await
            .unwrap();
    }
    let mut hist = Vec::with_capacity(n);
    let mut cur = TargetState::INITIAL;
    let mut ts = 0i64;
    let mut batch = Vec::new();
    for k in 0..n {
        ts += rng.gen_range(0..20);
        let state = match cur.state {
            NodeState::Up => NodeState::Down,
            NodeState::Down => NodeState::Up,
        };
        cur = cur.after(state, ts);
        hist.push((state, ts));
        batch.push(Applied {
            zellular_index: k as u64 + 1,
            position: 0,
            event: Event {
                address: A.into(),
                state,
                timestamp: ts,
                aggregated_signature: "00".into(),
                non_signing_nodes: vec![],
            },
            log_time: ts,
            after: cur,
            network_version: 1,
        });
        if batch.len() == 10_000 || k + 1 == n {
            store
                .apply(
                    &batch,
                    None,
                    &CursorUpdate {
                        index: k as u64 + 1,
                        chaining_hash: "c".into(),
                        partial_items: 0,
                        log_time: ts,
                        // Monitored from the start of time, as the naive model assumes.
                        monitoring_starts: vec![(A.to_owned(), 0)],
                    },
                )
                .await
                .unwrap();
            batch.clear();
        }
    }
    hist
}

/// Per second s of [0, end): is the address down (the last transition at or
/// before s)? And the prefix sums of that.
fn naive(hist: &[(NodeState, i64)], end: i64) -> (Vec<bool>, Vec<i64>) {
    let mut down = vec![false; end as usize];
    let mut k = 0;
    let mut state = NodeState::Up;
    for (s, d) in down.iter_mut().enumerate() {
        while k < hist.len() && hist[k].1 <= s as i64 {
            state = hist[k].0;
            k += 1;
        }
        *d = state == NodeState::Down;
    }
    let mut prefix = vec![0i64; end as usize + 1];
    for s in 0..end as usize {
        prefix[s + 1] = prefix[s] + i64::from(down[s]);
    }
    (down, prefix)
}

async fn check(n: usize, seed: u64) {
    let dir = tempfile::tempdir().unwrap();
    let store = ReplicaStore::open(&dir.path().join("r.sqlite"))
        .await
        .unwrap();
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let hist = fill(&store, &mut rng, n).await;
    let last = hist.last().map_or(0, |h| h.1);
    let end = last + 500;
    let (_, prefix) = naive(&hist, end + 1);
    let epoch = EpochConfig {
        genesis: 0,
        length_secs: 3_600,
        min_uptime_ppm: 0,
    };
    let network = NetworkHandle::of_genesis(&Genesis::new(
        "test",
        vec![node()],
        vec![Target {
            address: A.into(),
            http: None,
            tcp: Some("127.0.0.1:9".into()),
        }],
        "2/3",
    ));
    let answers = Answers::new(store.clone(), network, epoch);
    random_windows(&answers, &mut rng, &prefix, end, i64::MAX, 2_000).await;
    // Epoch figures: downtime, and outages = down intervals overlapping the epoch.
    for _ in 0..300 {
        let e = rng.gen_range(0..=end / 3_600);
        let s = answers.epoch_summary(A, e, end).await.unwrap();
        assert_eq!(
            s.downtime_seconds,
            prefix[s.end as usize] - prefix[s.start as usize],
            "epoch {e}"
        );
        let before = hist
            .iter()
            .rev()
            .find(|h| h.1 < s.start)
            .is_some_and(|h| h.0 == NodeState::Down);
        let downs = hist
            .iter()
            .filter(|h| h.0 == NodeState::Down && h.1 >= s.start && h.1 < s.end)
            .count() as u64;
        assert_eq!(s.outages, u64::from(before) + downs, "epoch {e}");
    }
    // The interval table, page by page, is the history itself.
    let (mut rows, mut cursor) = (Vec::new(), IntervalCursor::Start);
    loop {
        let (page, more) = answers
            .intervals(A, 0, end, end, cursor, 997)
            .await
            .unwrap();
        cursor = page.last().unwrap().1;
        rows.extend(page.into_iter().map(|(r, _)| (r.state, r.start)));
        if !more {
            break;
        }
    }
    // The initial `up since 0`, unless a transition at 0 leaves it no width.
    let mut expected = if hist.first().is_some_and(|h| h.1 == 0) {
        vec![]
    } else {
        vec![(NodeState::Up, 0)]
    };
    expected.extend(hist.iter().copied());
    assert_eq!(rows, expected);
    // Removed half-way: downtime stops counting at the removal, whatever the window.
    let cut = last / 2;
    let db = sqlx::SqlitePool::connect(&format!(
        "sqlite://{}",
        dir.path().join("r.sqlite").display()
    ))
    .await
    .unwrap();
    sqlx::query(
        "UPDATE states SET monitored_since = coalesce(monitored_since, 0), monitored_until = ?
         WHERE address = ?",
    )
    .bind(cut)
    .bind(A)
    .execute(&db)
    .await
    .unwrap();
    db.close().await;
    random_windows(&answers, &mut rng, &prefix, end, cut, 500).await;
}

/// `count` random windows in `[0, end]`: downtime equals the naive prefix sums,
/// counted up to `cut` (the target's removal; `i64::MAX`: never removed).
async fn random_windows(
    answers: &Answers,
    rng: &mut impl Rng,
    prefix: &[i64],
    end: i64,
    cut: i64,
    count: usize,
) {
    for _ in 0..count {
        let from = rng.gen_range(0..end);
        let to = rng.gen_range(from..=end);
        let d = answers.downtime(A, from, to).await.unwrap();
        assert_eq!(
            d.seconds(),
            prefix[to.min(cut) as usize] - prefix[from.min(cut) as usize],
            "removed at {cut}, [{from}, {to}]"
        );
    }
}

#[tokio::test]
async fn running_totals_match_the_naive_model_over_100000_events() {
    check(100_000, 11).await;
}

#[tokio::test]
async fn running_totals_match_the_naive_model_over_many_short_histories() {
    for seed in 0..40 {
        check(seed as usize * 7, seed).await;
    }
}
