//! The kill -9 soak (issue 5), once per store engine: 10,000 HR events for 2,000 people on a
//! 6-partition topic keyed by person; the daemon is SIGKILLed at five moments chosen from a fixed
//! seed and restarted on the same data directory each time. The SCIM server (the real scim2-server)
//! must end with exactly the expected users and no duplicates, and the audit log must hold exactly
//! one terminal record per operation.

use std::time::{Duration, Instant};

use scimflow_e2e::*;

const TOPIC: &str = "hr-soak";
const PEOPLE: usize = 2_000;
const EVENTS: usize = 10_000;
const KILLS: usize = 5;

/// The soak tests are heavy (2 cores): run them one at a time even when the harness runs tests in
/// parallel, so each one's wall time means something.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A small deterministic generator for the kill moments.
struct Rng(u64);
impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next() % (hi - lo + 1)
    }
}

async fn soak(engine: &str, seed: u64) {
    let _serial = SERIAL.lock().await;
    let started = Instant::now();
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let tansu = Tansu::start().expect("tansu (run scripts/install-test-deps.sh)");
    tansu.create_topic(TOPIC, 6).unwrap();
    let scenario = Scenario::hr_dense(PEOPLE, EVENTS, 5, seed);
    produce_keyed(&tansu.bootstrap, TOPIC, &scenario.events)
        .await
        .unwrap();
    eprintln!(
        "[{engine}] produced {EVENTS} events in {:?}",
        started.elapsed()
    );

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = repo_root().join("tests/fixtures/kafka-soak.yaml");
    let mut env = example_env(&scim, "unused");
    env.push(("KAFKA_BROKERS", tansu.bootstrap.clone()));
    env.push(("KAFKA_TOPIC", TOPIC.to_owned()));
    env.push(("KAFKA_GROUP_ID", format!("soak-{engine}")));
    env.push(("STORE_ENGINE", engine.to_owned()));

    let mut rng = Rng(seed | 1);
    for kill in 1..=KILLS {
        let daemon = Daemon::start(&config, &data, &env).unwrap();
        // Kill after a random number of terminal outcomes in this process's life.
        let at = rng.between(300, 1_100);
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            let done = terminal_count(&daemon, "demo").await.unwrap();
            if done >= at {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "[{engine}] kill {kill}: only {done} of {at} outcomes within 180 s\n{}",
                tail(&daemon.log(), 30)
            );
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let pending = daemon.targets().await.unwrap()["demo"]["queue_depth"]
            .as_u64()
            .unwrap_or(0);
        daemon.kill9();
        eprintln!(
            "[{engine}] kill -9 #{kill} after {at} outcomes, {pending} operations queued, at {:?}",
            started.elapsed()
        );
        assert!(
            pending > 0,
            "[{engine}] kill {kill} came after the work was done: nothing was queued"
        );
    }

    let daemon = Daemon::start(&config, &data, &env).unwrap();
    // Listing 2,000 users from scim2-server is slow and competes with delivery: wait for the queue
    // to stay empty for a second before checking the end state.
    let deadline = Instant::now() + Duration::from_secs(600);
    let mut empty_since: Option<Instant> = None;
    loop {
        let depth = daemon.targets().await.unwrap()["demo"]["queue_depth"].as_u64();
        match (depth, empty_since) {
            (Some(0), Some(t)) if t.elapsed() >= Duration::from_secs(1) => break,
            (Some(0), None) => empty_since = Some(Instant::now()),
            (Some(0), Some(_)) => {}
            _ => empty_since = None,
        }
        assert!(
            Instant::now() < deadline,
            "[{engine}] queue not drained within 600 s\n{}",
            tail(&daemon.log(), 30)
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let users = wait_for_end_state(&scim, &daemon, &scenario.expected, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(users.len(), PEOPLE);
    daemon.stop().unwrap();
    eprintln!("[{engine}] end state reached at {:?}", started.elapsed());

    let per_op = audit_records_per_op(&data).unwrap();
    let ids: std::collections::BTreeSet<String> = scenario
        .events
        .iter()
        .map(|e| format!("{}@demo", e["id"].as_str().unwrap()))
        .collect();
    let missing: Vec<_> = ids
        .iter()
        .filter(|id| !per_op.contains_key(*id))
        .take(5)
        .collect();
    assert!(
        missing.is_empty(),
        "[{engine}] operations without a terminal record: {missing:?}"
    );
    let extra: Vec<_> = per_op
        .keys()
        .filter(|id| !ids.contains(*id))
        .take(5)
        .collect();
    assert!(
        extra.is_empty(),
        "[{engine}] unexpected operation ids: {extra:?}"
    );
    let repeated: Vec<_> = per_op.iter().filter(|(_, &n)| n != 1).take(5).collect();
    assert!(
        repeated.is_empty(),
        "[{engine}] operations with more than one terminal record: {repeated:?}"
    );
    let verify = scimflow_offline(&["audit", "verify"], &data).unwrap();
    assert!(verify.contains("audit chain intact"), "{verify}");
    eprintln!("[{engine}] done in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_five_times_during_10k_events_sled() {
    soak("sled", 5_005).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill9_five_times_during_10k_events_redb() {
    soak("redb", 5_006).await;
}
