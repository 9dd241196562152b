//! Issue-5 fault proofs with the real binary, a real Kafka-protocol broker (Tansu) and scim2-server:
//! a broker restart mid-run (durable Tansu), a throttled target that must not stall a healthy one,
//! and an out-of-order update (newer `time`) that arrives before the hire.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use scimflow_e2e::*;
use scimflow_testkit::{FaultRule, RetryAfter, ServerOptions, TestServer};

fn kafka_env(
    scim: &Scim2Server,
    tansu: &Tansu,
    topic: &str,
    group: &str,
) -> Vec<(&'static str, String)> {
    let mut env = example_env(scim, "unused");
    env.push(("KAFKA_BROKERS", tansu.bootstrap.clone()));
    env.push(("KAFKA_TOPIC", topic.to_owned()));
    env.push(("KAFKA_GROUP_ID", group.to_owned()));
    env
}

async fn wait_idle(
    daemon: &Daemon,
    target: &str,
    ops: u64,
    deadline: Duration,
) -> serde_json::Value {
    let until = Instant::now() + deadline;
    loop {
        let t = daemon.targets().await.unwrap()[target].clone();
        if terminal_count(daemon, target).await.unwrap() >= ops && t["queue_depth"] == 0 {
            return t;
        }
        assert!(
            Instant::now() < until,
            "{target} did not finish {ops} operations within {deadline:?}: {t}\n{}",
            tail(&daemon.log(), 30)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_daemon_rides_out_a_broker_restart_mid_run() {
    let started = Instant::now();
    const TOPIC: &str = "hr-restart";
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let broker_dir = tempfile::tempdir().unwrap();
    let mut tansu = Tansu::start_durable(broker_dir.path())
        .expect("durable tansu (TANSU_KIND=durable; run scripts/install-test-deps.sh)");
    tansu.create_topic(TOPIC, 3).unwrap();
    let scenario = Scenario::hr(200, 600, 3003);
    let (first, rest) = scenario.events.split_at(300);
    produce_keyed(&tansu.bootstrap, TOPIC, first).await.unwrap();

    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = repo_root().join("tests/fixtures/kafka-soak.yaml");
    let mut env = kafka_env(&scim, &tansu, TOPIC, "g-restart");
    env.push(("SCIM_RATE", "60".to_owned()));
    let daemon = Daemon::start(&config, &data, &env).unwrap();
    let deadline = Instant::now() + Duration::from_secs(60);
    while terminal_count(&daemon, "demo").await.unwrap() < 60 {
        assert!(
            Instant::now() < deadline,
            "no progress\n{}",
            tail(&daemon.log(), 30)
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // While the broker is down, readiness says so (librdkafka reports every broker down).
    tansu.kill();
    let ready = |daemon: &Daemon| {
        let url = format!("{}/readyz", daemon.url);
        async move {
            let r = reqwest::get(url).await.unwrap();
            (r.status().as_u16(), r.text().await.unwrap_or_default())
        }
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = ready(&daemon).await;
        if status == 503 {
            assert!(body.contains("Kafka broker"), "{body}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "readiness did not notice the broker down: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let restart_began = Instant::now();
    tansu.restart().unwrap();
    eprintln!("broker restarted in {:?}", restart_began.elapsed());
    assert!(tansu.list_topics().unwrap().contains(&TOPIC.to_owned()));
    // The second half only exists after the restart: the daemon must reconnect to consume it.
    produce_keyed(&tansu.bootstrap, TOPIC, rest).await.unwrap();

    wait_for_end_state(&scim, &daemon, &scenario.expected, Duration::from_secs(180))
        .await
        .unwrap();
    // Reconnected: ready again.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let (status, body) = ready(&daemon).await;
        if status == 200 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "not ready again after the broker came back: {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    daemon.stop().unwrap();
    let per_op = audit_records_per_op(&data).unwrap();
    assert_eq!(
        per_op.len(),
        600,
        "every event's operation has a terminal record"
    );
    let repeated: Vec<_> = per_op.iter().filter(|(_, &n)| n != 1).collect();
    assert!(
        repeated.is_empty(),
        "more than one terminal record: {repeated:?}"
    );
    eprintln!("done in {:?}", started.elapsed());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttled_target_does_not_stall_the_other_and_gets_everything_afterwards() {
    let started = Instant::now();
    const TOPIC: &str = "hr-throttle";
    const THROTTLE: Duration = Duration::from_secs(60);
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let tansu = Tansu::start().expect("tansu (run scripts/install-test-deps.sh)");
    tansu.create_topic(TOPIC, 3).unwrap();
    let throttled = TestServer::start(ServerOptions::default()).await;
    throttled.script(FaultRule::status_retry_after(429, RetryAfter::Seconds(2)).forever());
    let throttle_began = Instant::now();

    let scenario = Scenario::hr(100, 300, 4004);
    let (first, rest) = scenario.events.split_at(150);
    produce_keyed(&tansu.bootstrap, TOPIC, first).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = repo_root().join("tests/fixtures/kafka-two-targets.yaml");
    let mut env = kafka_env(&scim, &tansu, TOPIC, "g-throttle");
    env.push(("THROTTLED_BASE_URL", throttled.base_url().to_owned()));
    env.push(("THROTTLED_TOKEN", throttled.token().to_owned()));
    let daemon = Daemon::start(&config, &data, &env).unwrap();

    // The healthy target finishes the first wave while the other is answered 429...
    wait_idle(&daemon, "healthy", 150, Duration::from_secs(40)).await;
    // ...and the daemon keeps consuming: a second wave, produced now, reaches the healthy target too.
    produce_keyed(&tansu.bootstrap, TOPIC, rest).await.unwrap();
    wait_for_end_state_of(&scim, &daemon, &scenario.expected).await;
    let healthy_done = throttle_began.elapsed();
    let t = daemon.targets().await.unwrap();
    eprintln!(
        "healthy target done after {healthy_done:?}; throttled: {}",
        t["throttled"]
    );
    assert!(
        healthy_done < THROTTLE - Duration::from_secs(15),
        "the healthy target took {healthy_done:?}, not long before the throttle's end"
    );
    assert_eq!(t["healthy"]["failed"], 0);
    assert!(
        t["throttled"]["queue_depth"].as_u64().unwrap() > 0,
        "{}",
        t["throttled"]
    );
    assert!(
        throttled.users().is_empty(),
        "the throttled target was not throttled"
    );
    let refused = throttled
        .requests()
        .iter()
        .filter(|r| r.status == 429)
        .count();
    assert!(refused > 0, "no request reached the throttled target");

    // Hold the throttle for its full window (measured from when it was scripted), still failing.
    while throttle_began.elapsed() < THROTTLE {
        assert_eq!(
            daemon.targets().await.unwrap()["throttled"]["failed"],
            0,
            "something dead-lettered during the throttle"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    throttled.clear_faults();
    let cleared = Instant::now();
    let refused = throttled
        .requests()
        .iter()
        .filter(|r| r.status == 429)
        .count();
    eprintln!(
        "throttle cleared after {:?} ({refused} requests answered 429)",
        throttle_began.elapsed()
    );

    let t = wait_idle(&daemon, "throttled", 300, Duration::from_secs(120)).await;
    let problems = diff_users(&throttled.users(), &scenario.expected);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(t["failed"], 0, "{t}");
    eprintln!(
        "throttled target caught up {:?} after the throttle ended",
        cleared.elapsed()
    );

    // No consumer-group rebalance happened (no max.poll.interval.ms violation) while a target was
    // blocked for a minute.
    let log = daemon.log().to_lowercase();
    for word in [
        "rebalanc",
        "revok",
        "max.poll",
        "leave group",
        "leaving group",
    ] {
        assert!(
            !log.contains(word),
            "the daemon log mentions {word:?}:\n{}",
            tail(&daemon.log(), 40)
        );
    }
    daemon.stop().unwrap();
    let per_op = audit_records_per_op(&data).unwrap();
    assert_eq!(per_op.len(), 600, "300 events × 2 targets");
    assert!(per_op.values().all(|&n| n == 1));
    eprintln!("done in {:?}", started.elapsed());
}

/// The healthy target's end state (scim2-server) and its queue drained.
async fn wait_for_end_state_of(
    scim: &Scim2Server,
    daemon: &Daemon,
    expected: &BTreeMap<String, Person>,
) {
    let log = || tail(&daemon.log(), 40);
    wait_for_users(scim, expected, Duration::from_secs(40), log)
        .await
        .unwrap();
    wait_idle(daemon, "healthy", 300, Duration::from_secs(20)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_update_that_arrives_before_the_hire_wins() {
    const TOPIC: &str = "hr-ooo";
    let started = Instant::now();
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let tansu = Tansu::start().expect("tansu (run scripts/install-test-deps.sh)");
    tansu.create_topic(TOPIC, 1).unwrap();
    // Ten people; for each, the update (09:xx) is produced before the hire (08:xx).
    let mut events = Vec::new();
    let mut expected = BTreeMap::new();
    let mut n = 0;
    for i in 0..10 {
        let mut p = Person {
            id: format!("E{:05}", 20_000 + i),
            first: format!("Early{i}"),
            last: format!("Bird{i}"),
            email: format!("early{i}.bird{i}@example.com"),
            department: "Engineering".into(),
            title: "Engineer".into(),
            active: true,
        };
        let hire = hr_event(&mut n, "hr.worker.hired", &p, 0, i);
        p.title = "Director".into();
        p.department = "Sales".into();
        p.last = format!("Bird-Renamed{i}");
        let update = hr_event(&mut n, "hr.worker.updated", &p, 1, i);
        events.push(update);
        events.push(hire);
        expected.insert(p.id.clone(), p);
    }
    // A sentinel hire after all of them (one partition, so consumed last): once its account exists
    // and the queue is empty, every stale hire has been planned and either skipped or delivered.
    let sentinel = Person {
        id: "E29999".into(),
        first: "Sentinel".into(),
        last: "Last".into(),
        email: "sentinel.last@example.com".into(),
        department: "Support".into(),
        title: "Analyst".into(),
        active: true,
    };
    events.push(hr_event(&mut n, "hr.worker.hired", &sentinel, 0, 59));
    expected.insert(sentinel.id.clone(), sentinel);
    produce_keyed(&tansu.bootstrap, TOPIC, &events)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let daemon = Daemon::start(
        &repo_root().join("examples/kafka.yaml"),
        &data,
        &kafka_env(&scim, &tansu, TOPIC, "g-ooo"),
    )
    .unwrap();
    wait_for_end_state(&scim, &daemon, &expected, Duration::from_secs(60))
        .await
        .unwrap();
    let users = scim.list_users().await.unwrap();
    let problems = diff_users(&users, &expected);
    assert!(problems.is_empty(), "{problems:?}");
    assert_eq!(users.len(), 11, "duplicate accounts");
    daemon.stop().unwrap();
    eprintln!("done in {:?}", started.elapsed());
}

/// Trace context (issue 5): the W3C `traceparent` of a Kafka message — as a header, or as the
/// CloudEvents `traceparent` extension — continues into every SCIM request the event causes: same
/// trace id, a new span id per request. Observed on the in-process test server (it records request
/// headers); the same events go to scim2-server too, which provisions them as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_context_from_kafka_reaches_every_scim_request() {
    const TOPIC: &str = "hr-traced";
    const HEADER_TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const EXT_TRACE: &str = "0af7651916cd43dd8448eb211c80319c";
    let scim =
        Scim2Server::start("scim-token").expect("scim2-server (run scripts/install-test-deps.sh)");
    let tansu = Tansu::start().expect("tansu (run scripts/install-test-deps.sh)");
    tansu.create_topic(TOPIC, 1).unwrap();
    let observer = TestServer::start(ServerOptions::default()).await;

    let scenario = Scenario::hr(2, 4, 77);
    let ids: Vec<&String> = scenario.expected.keys().collect();
    let producer = scimflow_kafka::Producer::new(&tansu.bootstrap).unwrap();
    for e in &scenario.events {
        let subject = e["subject"].as_str().unwrap();
        let mut e = e.clone();
        let header_tp = format!("00-{HEADER_TRACE}-00f067aa0ba902b7-01");
        let headers: Vec<(&str, &str)> = if subject == ids[0].as_str() {
            vec![("traceparent", header_tp.as_str())]
        } else {
            e["traceparent"] = serde_json::json!(format!("00-{EXT_TRACE}-b7ad6b7169203331-01"));
            vec![]
        };
        producer
            .send(TOPIC, subject, e.to_string().as_bytes(), &headers)
            .await
            .unwrap();
    }
    let dir = tempfile::tempdir().unwrap();
    let config = repo_root().join("tests/fixtures/kafka-two-targets.yaml");
    let mut env = kafka_env(&scim, &tansu, TOPIC, "g-trace");
    env.push(("THROTTLED_BASE_URL", observer.base_url().to_owned()));
    env.push(("THROTTLED_TOKEN", observer.token().to_owned()));
    let daemon = Daemon::start(&config, &dir.path().join("data"), &env).unwrap();
    wait_for_end_state(&scim, &daemon, &scenario.expected, Duration::from_secs(60))
        .await
        .unwrap();
    wait_idle(&daemon, "throttled", 4, Duration::from_secs(60)).await;
    daemon.stop().unwrap();

    let requests: Vec<_> = observer
        .requests()
        .into_iter()
        .filter(|r| r.path.contains("/Users"))
        .collect();
    assert!(requests.len() >= 4, "{requests:?}");
    let mut spans = std::collections::HashSet::new();
    let mut traces = std::collections::HashSet::new();
    for r in &requests {
        let tp = r
            .traceparent
            .as_deref()
            .unwrap_or_else(|| panic!("no traceparent on {} {}", r.method, r.path));
        let parts: Vec<&str> = tp.split('-').collect();
        assert_eq!(parts.len(), 4, "{tp}");
        assert_eq!(parts[0], "00", "{tp}");
        assert!(
            parts[2] != "00f067aa0ba902b7" && parts[2] != "b7ad6b7169203331",
            "a child span, not the producer's: {tp}"
        );
        assert!(spans.insert(parts[2].to_owned()), "span id reused: {tp}");
        traces.insert(parts[1].to_owned());
    }
    assert_eq!(
        traces,
        [HEADER_TRACE.to_owned(), EXT_TRACE.to_owned()].into(),
        "both the header and the CloudEvents extension carry the trace"
    );
}
