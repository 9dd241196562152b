//! Scale-out (issue 5): two daemons in one consumer group share a 6-partition topic; one is
//! SIGKILLed in the middle of the run and never comes back. The survivor must take over the dead
//! member's partitions (after its session times out), replay from the committed offsets, and leave
//! the real scim2-server with exactly the expected accounts — every person once, latest attributes.

use std::time::{Duration, Instant};

use scimflow_e2e::*;

const TOPIC: &str = "hr-replicas";
const PEOPLE: usize = 600;
const EVENTS: usize = 3_000;

/// The partitions a daemon's log says it was assigned last (0 when none yet).
fn assigned(log: &str) -> Option<u64> {
    log.lines()
        .rfind(|l| l.contains("kafka partitions assigned"))
        .and_then(|l| {
            let i = l.find("partitions=")? + "partitions=".len();
            l[i..]
                .split(|c: char| !c.is_ascii_digit())
                .next()?
                .parse()
                .ok()
        })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_a_topic_and_the_survivor_takes_over_a_killed_one() {
    let started = Instant::now();
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let tansu = Tansu::start().expect("tansu (run scripts/install-test-deps.sh)");
    tansu.create_topic(TOPIC, 6).unwrap();
    let scenario = Scenario::hr_dense(PEOPLE, EVENTS, 5, 7);
    produce_keyed(&tansu.bootstrap, TOPIC, &scenario.events)
        .await
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let config = repo_root().join("tests/fixtures/kafka-soak.yaml");
    let mut env = example_env(&scim, "unused");
    env.push(("KAFKA_BROKERS", tansu.bootstrap.clone()));
    env.push(("KAFKA_TOPIC", TOPIC.to_owned()));
    env.push(("KAFKA_GROUP_ID", "replicas".to_owned()));
    // Slow enough that the kill lands in the middle of the run.
    env.push(("SCIM_RATE", "60".to_owned()));

    let a = Daemon::start(&config, &dir.path().join("a"), &env).unwrap();
    let b = Daemon::start(&config, &dir.path().join("b"), &env).unwrap();
    // Both members hold partitions, and both have delivered something.
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let (la, lb) = (a.log(), b.log());
        let split = matches!((assigned(&la), assigned(&lb)), (Some(x), Some(y)) if x > 0 && y > 0 && x + y == 6);
        if split
            && terminal_count(&a, "demo").await.unwrap() >= 100
            && terminal_count(&b, "demo").await.unwrap() >= 100
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the two replicas did not share the partitions within 120 s\nA:\n{}\nB:\n{}",
            tail(&la, 20),
            tail(&lb, 20)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let queued = a.targets().await.unwrap()["demo"]["queue_depth"]
        .as_u64()
        .unwrap_or(0);
    eprintln!(
        "killing replica A with {queued} operations queued at {:?}",
        started.elapsed()
    );
    a.kill9();

    // The survivor gets all six partitions once A's session expires.
    let deadline = Instant::now() + Duration::from_secs(90);
    while assigned(&b.log()) != Some(6) {
        if Instant::now() >= deadline {
            let _ = std::fs::copy(tansu.log_path(), "/tmp/tansu-replicas.log");
        }
        assert!(
            Instant::now() < deadline,
            "the survivor did not take over the dead replica's partitions within 90 s\n{}",
            tail(&b.log(), 30)
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    eprintln!("survivor owns all partitions at {:?}", started.elapsed());
    let users = wait_for_end_state(&scim, &b, &scenario.expected, Duration::from_secs(600))
        .await
        .unwrap();
    assert_eq!(users.len(), PEOPLE, "one account per person");
    b.stop().unwrap();
    eprintln!("end state exact at {:?}", started.elapsed());
}
