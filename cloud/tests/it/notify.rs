//! Customer notifications end to end, against the real RabbitMQ on this machine
//! (`amqp://guest:guest@127.0.0.1:5672/%2f` unless `SENTRA_TEST_AMQP_URL` says otherwise), a
//! fresh PostgreSQL database, and the sandbox gateway as its own process
//! (`sentra-cloud notify sandbox`). Each test has queues of its own, deleted at its end.
//!
//! Time is the test's: `notify publish-due --now` decides what is due, so a 90-day reminder is
//! published by naming a day 90 days on, not by waiting.

use std::net::SocketAddr;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt as _;
use lapin::options::{BasicConsumeOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties};
use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt as _, BufReader};
use tokio::process::Child;

use crate::booking_support::{BookingCloud, RedisProcess};
use crate::cloud::Cloud;
use crate::support::{Stderr, TestDb, WAIT, collect, command, migrate, run};

const DEFAULT_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";
/// The sandbox's bearer token in these tests.
const TOKEN: &str = "sandbox-token-for-tests";
/// Backoff base in these tests: short, so retries do not slow the suite.
const RETRY_BASE_MS: u64 = 50;
const MAX_ATTEMPTS: u32 = 3;
/// Anything that happens in the background (a worker's send, a retry) is waited for this long
/// at most; the tests never assert on how long it took.
const SETTLE: Duration = Duration::from_secs(30);

fn amqp_url() -> String {
    std::env::var("SENTRA_TEST_AMQP_URL").unwrap_or_else(|_| DEFAULT_AMQP_URL.to_owned())
}

async fn amqp() -> (Connection, Channel) {
    let url = amqp_url();
    let connection = Connection::connect(&url, ConnectionProperties::default())
        .await
        .unwrap_or_else(|error| {
            panic!("RabbitMQ for tests at {url}: {error}; is it running? (bash scripts/test.sh starts it)")
        });
    let channel = connection.create_channel().await.expect("a channel");
    (connection, channel)
}

/// This test's queue names (the worker declares them); deleted on drop.
struct Queues {
    work: String,
}

impl Queues {
    fn new() -> Queues {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|elapsed| elapsed.subsec_nanos())
            .unwrap_or(0);
        Queues {
            work: format!(
                "sentra_test.{}.{}.{nanos}",
                std::process::id(),
                NEXT.fetch_add(1, Ordering::Relaxed)
            ),
        }
    }

    fn dead(&self) -> String {
        format!("{}.dead", self.work)
    }

    /// Every queue the cloud declares for this work queue with the tests' settings.
    fn all(&self) -> Vec<String> {
        let mut names = vec![self.work.clone(), self.dead()];
        for step in 0..MAX_ATTEMPTS.saturating_sub(1).max(1) {
            names.push(format!("{}.retry.{}ms", self.work, RETRY_BASE_MS << step));
        }
        names
    }

    /// Messages ready in `queue` (unacked ones not counted).
    async fn ready(&self, queue: &str) -> u32 {
        let (connection, channel) = amqp().await;
        let declared = channel
            .queue_declare(
                queue.into(),
                QueueDeclareOptions::default().passive(),
                FieldTable::default(),
            )
            .await
            .unwrap_or_else(|error| panic!("queue {queue}: {error}"));
        let _ = connection.close(200, "done".into()).await;
        declared.message_count()
    }
}

impl Drop for Queues {
    fn drop(&mut self) {
        let names = self.all();
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a runtime for deleting the test queues");
            runtime.block_on(async {
                let Ok(connection) =
                    Connection::connect(&amqp_url(), ConnectionProperties::default()).await
                else {
                    return;
                };
                if let Ok(channel) = connection.create_channel().await {
                    for name in names {
                        let _ = channel
                            .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                            .await;
                    }
                }
                let _ = connection.close(200, "done".into()).await;
            });
        })
        .join();
    }
}

/// `sentra-cloud notify sandbox` on a port of its own.
struct Sandbox {
    _child: Child,
    addr: SocketAddr,
    http: reqwest::Client,
}

impl Sandbox {
    async fn start() -> Sandbox {
        let mut child = command(
            &["notify", "sandbox", "--listen", "127.0.0.1:0"],
            &[("SENTRA_CLOUD__NOTIFY__GATEWAY_TOKEN", TOKEN)],
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn notify sandbox");
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut line = String::new();
        let _ = tokio::time::timeout(WAIT, BufReader::new(stdout).read_line(&mut line)).await;
        let addr = line
            .trim_end()
            .strip_prefix("listening on ")
            .and_then(|addr| addr.parse().ok())
            .unwrap_or_else(|| panic!("the sandbox did not announce its address: {line:?}"));
        Sandbox {
            _child: child,
            addr,
            http: crate::support::http_client(),
        }
    }

    fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    async fn call(&self, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.url()))
            .bearer_auth(TOKEN);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = tokio::time::timeout(WAIT, request.send())
            .await
            .expect("the sandbox answers in time")
            .expect("the sandbox answers");
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// What the sandbox accepted, for one idempotency key or all.
    async fn messages(&self, key: Option<&str>) -> Vec<Value> {
        let path = match key {
            Some(key) => format!("/_sandbox/messages?key={key}"),
            None => "/_sandbox/messages".to_owned(),
        };
        let (status, body) = self.call(Method::GET, &path, None).await;
        assert_eq!(status, 200, "{body}");
        body["messages"].as_array().cloned().unwrap_or_default()
    }

    async fn fail_next(&self, count: u32, status: u16) {
        let (got, body) = self
            .call(
                Method::POST,
                "/_sandbox/fail",
                Some(json!({"count": count, "status": status})),
            )
            .await;
        assert_eq!(got, 200, "{body}");
    }

    async fn hold_next(&self, count: u32) {
        let (got, body) = self
            .call(
                Method::POST,
                "/_sandbox/hold",
                Some(json!({"count": count})),
            )
            .await;
        assert_eq!(got, 200, "{body}");
    }

    /// Waits until the sandbox accepted `count` messages in all.
    async fn wait_for(&self, count: usize) -> Vec<Value> {
        let deadline = Instant::now() + SETTLE;
        loop {
            let messages = self.messages(None).await;
            if messages.len() >= count {
                return messages;
            }
            assert!(
                Instant::now() < deadline,
                "the sandbox has {} messages, not {count}, after {SETTLE:?}",
                messages.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// The notification settings a test's commands and workers run with.
fn notify_env(db_url: &str, queues: &Queues, sandbox: &Sandbox) -> Vec<(String, String)> {
    vec![
        ("DATABASE_URL".into(), db_url.to_owned()),
        ("SENTRA_CLOUD__NOTIFY__AMQP_URL".into(), amqp_url()),
        ("SENTRA_CLOUD__NOTIFY__QUEUE".into(), queues.work.clone()),
        ("SENTRA_CLOUD__NOTIFY__GATEWAY_URL".into(), sandbox.url()),
        ("SENTRA_CLOUD__NOTIFY__GATEWAY_TOKEN".into(), TOKEN.into()),
        (
            "SENTRA_CLOUD__NOTIFY__GATEWAY_LOOKUP_URL".into(),
            format!("{}/_sandbox/messages", sandbox.url()),
        ),
        (
            "SENTRA_CLOUD__NOTIFY__RETRY_BASE_MS".into(),
            RETRY_BASE_MS.to_string(),
        ),
        (
            "SENTRA_CLOUD__NOTIFY__MAX_ATTEMPTS".into(),
            MAX_ATTEMPTS.to_string(),
        ),
        // A send left unfinished is taken over after twice this.
        (
            "SENTRA_CLOUD__NOTIFY__GATEWAY_TIMEOUT_MS".into(),
            "500".into(),
        ),
    ]
}

fn pairs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter()
        .map(|(name, value)| (name.as_str(), value.as_str()))
        .collect()
}

/// `notify publish-due [--now TIME]`; how many it published.
async fn publish_due(env: &[(String, String)], now: Option<&str>) -> u64 {
    let mut args = vec!["notify", "publish-due"];
    if let Some(now) = now {
        args.extend(["--now", now]);
    }
    let output = run(&args, &pairs(env)).await;
    assert!(output.status.success(), "publish-due: {}", output.stderr);
    output
        .stdout
        .trim()
        .strip_prefix("published ")
        .and_then(|count| count.parse().ok())
        .unwrap_or_else(|| panic!("publish-due printed {:?}", output.stdout))
}

/// A `notify worker` process.
struct Worker {
    child: Child,
    stderr: Option<Stderr>,
}

impl Worker {
    fn start(env: &[(String, String)]) -> Worker {
        let mut child = command(&["notify", "worker"], &pairs(env))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn notify worker");
        let stderr = collect(child.stderr.take().expect("stderr is piped"));
        Worker {
            child,
            stderr: Some(stderr),
        }
    }

    fn log(&self) -> String {
        self.stderr
            .as_ref()
            .map(Stderr::snapshot)
            .unwrap_or_default()
    }

    /// SIGKILL: a crash, nothing acked or recorded after this instant.
    async fn kill(mut self) {
        self.child.start_kill().expect("kill the worker");
        let _ = self.child.wait().await;
    }

    /// SIGTERM; the exit status and the log.
    async fn terminate(mut self) -> (ExitStatus, String) {
        let pid = self.child.id().expect("the worker runs");
        let kill = std::process::Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .expect("run kill");
        assert!(kill.success());
        let status = tokio::time::timeout(WAIT, self.child.wait())
            .await
            .expect("the worker stops within WAIT of SIGTERM")
            .expect("wait for the worker");
        let log = match self.stderr.take() {
            Some(stderr) => stderr.finish().await,
            None => String::new(),
        };
        (status, log)
    }
}

/// One row of `notifications` as text columns.
async fn row(db: &TestDb, id: &str) -> Value {
    let mut connection = db.connect().await;
    let text = sqlx::query_scalar::<_, String>(
        "SELECT to_jsonb(n)::text FROM notifications n WHERE id = $1::uuid",
    )
    .bind(id)
    .fetch_one(&mut connection)
    .await
    .unwrap_or_else(|error| panic!("notification {id}: {error}"));
    serde_json::from_str(&text).expect("PostgreSQL writes JSON")
}

async fn scalar(db: &TestDb, sql: &str) -> Value {
    let mut connection = db.connect().await;
    let text = sqlx::query_scalar::<_, String>(sqlx::AssertSqlSafe(format!(
        "SELECT to_jsonb(x)::text FROM ({sql}) AS t(x)"
    )))
    .fetch_one(&mut connection)
    .await
    .unwrap_or_else(|error| panic!("{sql}: {error}"));
    serde_json::from_str(&text).expect("PostgreSQL writes JSON")
}

/// Waits until notification `id` is in `state`; the row.
async fn wait_for_state(db: &TestDb, id: &str, state: &str, worker: Option<&Worker>) -> Value {
    let deadline = Instant::now() + SETTLE;
    loop {
        let current = row(db, id).await;
        if current["state"] == state {
            return current;
        }
        assert!(
            Instant::now() < deadline,
            "notification {id} is {current}, not {state}, after {SETTLE:?}; worker log:\n{}",
            worker.map(Worker::log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A notification scheduled as a booking would schedule it, due now; its id.
async fn schedule(db: &TestDb, cause: &str) -> String {
    let mut connection = db.connect().await;
    sqlx::query(
        "SELECT schedule_notification($1, 'booking_confirmed', 'JKT01', '628123456789',
                '{\"asset_id\": \"car-1\", \"first_day\": \"2027-01-02\", \"last_day\": \"2027-01-03\"}', now())",
    )
    .bind(cause)
    .execute(&mut connection)
    .await
    .expect("schedule a notification");
    sqlx::query_scalar::<_, String>("SELECT id::text FROM notifications WHERE cause = $1")
        .bind(cause)
        .fetch_one(&mut connection)
        .await
        .expect("the scheduled notification")
}

/// A database migrated for notification tests, with the branch the rows name.
async fn notify_db() -> TestDb {
    let db = TestDb::create().await;
    migrate(&db).await;
    db
}

#[tokio::test]
async fn an_invoice_schedules_a_reminder_90_days_on_published_only_when_due() {
    let cloud = Cloud::start().await;
    let queues = Queues::new();
    let sandbox = Sandbox::start().await;
    let env = notify_env(cloud.db.url(), &queues, &sandbox);
    let mut device = cloud.enroll("JKT01").await;
    let events = device.outbox.workshop_cycle("OF-1");
    let invoice = events[6].entity_id.clone();
    let number = events[6].payload["number"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    // A second customer who left no phone number.
    let mut without_phone = device.outbox.workshop_cycle("OF-1");
    without_phone[0].payload["customer_phone"] = Value::Null;
    let invoice_without_phone = without_phone[6].entity_id.clone();

    let answer = cloud.push(&device, &events).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let answer = cloud.push(&device, &without_phone).await;
    assert_eq!(answer.status, 200, "{answer:?}");
    // The first batch again (a lost acknowledgement): nothing scheduled twice.
    let answer = cloud.push(&device, &events).await;
    assert_eq!(answer.status, 200, "{answer:?}");

    let reminders = scalar(
        &cloud.db,
        "SELECT jsonb_agg(jsonb_build_object('cause', cause, 'state', state, 'phone', phone,
                'reason', reason, 'due_in_days', extract(epoch FROM due_at - i.issued_at) / 86400)
                ORDER BY cause)
         FROM notifications n
         JOIN invoices i ON n.cause = 'invoice:' || i.branch_id || '/' || i.id
         WHERE n.kind = 'service_reminder'",
    )
    .await;
    let reminders = reminders.as_array().cloned().unwrap_or_default();
    assert_eq!(reminders.len(), 2, "{reminders:?}");
    let of = |invoice: &str| {
        reminders
            .iter()
            .find(|reminder| reminder["cause"] == format!("invoice:JKT01/{invoice}"))
            .cloned()
            .unwrap_or_else(|| panic!("no reminder for {invoice}: {reminders:?}"))
    };
    let reminder = of(&invoice);
    assert_eq!(reminder["state"], "SCHEDULED");
    assert_eq!(reminder["phone"], "628123456789");
    assert_eq!(reminder["due_in_days"].as_f64(), Some(90.0), "{reminder}");
    let skipped = of(&invoice_without_phone);
    assert_eq!(skipped["state"], "SKIPPED");
    assert!(
        skipped["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("phone"),
        "{skipped}"
    );

    // fixtures::AT is 2026-11-02T09:15:00Z: 89 days on nothing is due, 90 days on it is.
    assert_eq!(publish_due(&env, Some("2027-01-30T09:15:00Z")).await, 0);
    assert_eq!(publish_due(&env, Some("2027-01-31T09:15:00Z")).await, 1);
    assert_eq!(publish_due(&env, Some("2027-06-01T00:00:00Z")).await, 0);
    let id = scalar(
        &cloud.db,
        &format!("SELECT id::text FROM notifications WHERE cause = 'invoice:JKT01/{invoice}'"),
    )
    .await;
    let id = id.as_str().unwrap_or_default().to_owned();
    assert_eq!(row(&cloud.db, &id).await["state"], "PUBLISHED");

    let worker = Worker::start(&env);
    let sent = wait_for_state(&cloud.db, &id, "SENT", Some(&worker)).await;
    let messages = sandbox.messages(Some(&id)).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(messages[0]["to"], "628123456789");
    assert_eq!(messages[0]["template"], "sentra_service_reminder");
    assert_eq!(
        messages[0]["parameters"],
        json!(["Budi Santoso", "B 1234 XYZ", number])
    );
    assert_eq!(sent["gateway_message_id"], messages[0]["id"]);
    let (status, log) = worker.terminate().await;
    assert!(status.success(), "{log}");
    assert!(
        !log.contains("628123456789"),
        "the phone number was logged:\n{log}"
    );
}

#[tokio::test]
async fn a_worker_that_dies_before_acking_costs_no_second_delivery() {
    let db = notify_db().await;
    let queues = Queues::new();
    let sandbox = Sandbox::start().await;
    let env = notify_env(db.url(), &queues, &sandbox);
    let id = schedule(&db, "booking:crash-before-ack").await;
    assert_eq!(publish_due(&env, None).await, 1);

    // A worker that took the message and died: its channel closes without an ack.
    let (connection, channel) = amqp().await;
    let mut consumer = channel
        .basic_consume(
            queues.work.as_str().into(),
            "crashing-worker".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await
        .expect("consume");
    let delivery = tokio::time::timeout(WAIT, consumer.next())
        .await
        .expect("the message arrives")
        .expect("a delivery")
        .expect("a good delivery");
    assert_eq!(delivery.data, id.as_bytes());
    drop(consumer);
    connection
        .close(320, "the worker died".into())
        .await
        .expect("close");
    // And a publisher that died after the broker's confirm, before recording it: the same
    // notification is in the queue twice.
    let (connection, channel) = amqp().await;
    channel
        .basic_publish(
            "".into(),
            queues.work.as_str().into(),
            Default::default(),
            id.as_bytes(),
            lapin::BasicProperties::default().with_delivery_mode(2),
        )
        .await
        .expect("publish the duplicate");
    let _ = connection.close(200, "done".into()).await;

    let worker = Worker::start(&env);
    let sent = wait_for_state(&db, &id, "SENT", Some(&worker)).await;
    assert_eq!(sent["attempts"], 1);
    let (status, log) = worker.terminate().await;
    assert!(status.success(), "{log}");
    // Both copies were consumed and acked (an unacked one would be back in the queue now).
    assert_eq!(queues.ready(&queues.work).await, 0, "{log}");
    assert_eq!(sandbox.messages(Some(&id)).await.len(), 1);
}

#[tokio::test]
async fn a_send_the_gateway_accepted_before_the_worker_died_is_not_sent_again() {
    let db = notify_db().await;
    let queues = Queues::new();
    let sandbox = Sandbox::start().await;
    let env = notify_env(db.url(), &queues, &sandbox);
    let id = schedule(&db, "booking:crash-mid-send").await;
    // The gateway takes the message and never answers: the worker dies waiting.
    sandbox.hold_next(1).await;
    assert_eq!(publish_due(&env, None).await, 1);
    // The first worker would wait a minute for the answer: it dies long before.
    let mut patient = env.clone();
    patient.push((
        "SENTRA_CLOUD__NOTIFY__GATEWAY_TIMEOUT_MS".into(),
        "60000".into(),
    ));
    let first = Worker::start(&patient);
    sandbox.wait_for(1).await;
    first.kill().await;
    assert_eq!(row(&db, &id).await["state"], "SENDING");

    let second = Worker::start(&env);
    let sent = wait_for_state(&db, &id, "SENT", Some(&second)).await;
    let messages = sandbox.messages(Some(&id)).await;
    assert_eq!(messages.len(), 1, "{messages:?}");
    assert_eq!(sent["gateway_message_id"], messages[0]["id"]);
    // Sent once, by the first worker; the second only asked.
    assert_eq!(sent["attempts"], 1);
    let (status, log) = second.terminate().await;
    assert!(status.success(), "{log}");
    assert_eq!(queues.ready(&queues.work).await, 0);
}

#[tokio::test]
async fn a_failing_gateway_is_retried_with_backoff_until_it_recovers() {
    let db = notify_db().await;
    let queues = Queues::new();
    let sandbox = Sandbox::start().await;
    let env = notify_env(db.url(), &queues, &sandbox);
    let id = schedule(&db, "booking:gateway-recovers").await;
    sandbox.fail_next(MAX_ATTEMPTS - 1, 503).await;
    assert_eq!(publish_due(&env, None).await, 1);
    let worker = Worker::start(&env);
    let sent = wait_for_state(&db, &id, "SENT", Some(&worker)).await;
    assert_eq!(sent["attempts"], MAX_ATTEMPTS);
    assert_eq!(sent["reason"], Value::Null);
    assert_eq!(sandbox.messages(Some(&id)).await.len(), 1);
    let (status, log) = worker.terminate().await;
    assert!(status.success(), "{log}");
    assert!(log.contains("will retry"), "{log}");
    assert_eq!(queues.ready(&queues.dead()).await, 0);
}

#[tokio::test]
async fn dead_lettered_after_the_retry_limit_then_replayed_by_hand() {
    let db = notify_db().await;
    let queues = Queues::new();
    let sandbox = Sandbox::start().await;
    let env = notify_env(db.url(), &queues, &sandbox);
    let id = schedule(&db, "booking:gateway-down").await;
    sandbox.fail_next(MAX_ATTEMPTS, 503).await;
    assert_eq!(publish_due(&env, None).await, 1);
    let worker = Worker::start(&env);
    let dead = wait_for_state(&db, &id, "DEAD", Some(&worker)).await;
    assert_eq!(dead["attempts"], MAX_ATTEMPTS);
    let reason = dead["reason"].as_str().unwrap_or_default();
    assert!(
        reason.contains("attempt 3") && reason.contains("503"),
        "{reason}"
    );
    let (status, log) = worker.terminate().await;
    assert!(status.success(), "{log}");
    assert_eq!(queues.ready(&queues.dead()).await, 1);
    assert!(sandbox.messages(Some(&id)).await.is_empty());

    // The operator replays it once the gateway is back.
    let output = run(&["notify", "replay", &id], &pairs(&env)).await;
    assert!(output.status.success(), "{}", output.stderr);
    assert_eq!(publish_due(&env, None).await, 1);
    let worker = Worker::start(&env);
    wait_for_state(&db, &id, "SENT", Some(&worker)).await;
    let (status, log) = worker.terminate().await;
    assert!(status.success(), "{log}");
    assert_eq!(sandbox.messages(Some(&id)).await.len(), 1);
    // Replaying what is not dead is refused.
    let output = run(&["notify", "replay", &id], &pairs(&env)).await;
    assert_eq!(output.status.code(), Some(1), "{}", output.stdout);
    assert!(
        output.stderr.contains("no dead, skipped or published"),
        "{}",
        output.stderr
    );
}

#[tokio::test]
async fn a_message_refused_for_good_is_dead_lettered_without_retries() {
    let db = notify_db().await;
    let queues = Queues::new();
    let sandbox = Sandbox::start().await;
    let env = notify_env(db.url(), &queues, &sandbox);
    let id = schedule(&db, "booking:bad-number").await;
    sandbox.fail_next(1, 400).await;
    assert_eq!(publish_due(&env, None).await, 1);
    let worker = Worker::start(&env);
    let dead = wait_for_state(&db, &id, "DEAD", Some(&worker)).await;
    assert_eq!(dead["attempts"], 1);
    assert!(
        dead["reason"].as_str().unwrap_or_default().contains("400"),
        "{dead}"
    );
    let (status, log) = worker.terminate().await;
    assert!(status.success(), "{log}");
}

#[tokio::test]
async fn booking_holds_confirmations_and_expiries_notify_the_customer() {
    let redis = RedisProcess::start().await;
    let cloud = BookingCloud::start(
        1,
        2,
        &[
            ("REDIS_URL", &redis.url()),
            ("SENTRA_CLOUD__BOOKING__HOLD_SECS", "3"),
            ("SENTRA_CLOUD__BOOKING__SWEEP_INTERVAL_MS", "50"),
        ],
    )
    .await;
    {
        let mut connection = cloud.db.connect().await;
        sqlx::query(
            "INSERT INTO record_fields (branch_id, entity, entity_id, field, value, hlc, origin)
             VALUES ($1, 'customer', 'C-1', 'phone', '\"0812-3456-789\"', '0', 'cloud')",
        )
        .bind(crate::booking_support::BRANCH)
        .execute(&mut connection)
        .await
        .expect("a customer with a phone");
    }
    let confirmed = cloud
        .hold(0, "a1", "2027-05-01", "2027-05-02", "C-1", None)
        .await;
    assert_eq!(confirmed.status, 201, "{confirmed:?}");
    let confirmed_id = confirmed.body["id"].as_str().unwrap_or_default().to_owned();
    let answer = cloud
        .call(
            0,
            &cloud.portal,
            Method::POST,
            &format!("/v1/bookings/{confirmed_id}/confirm"),
            Some(json!({"payment_ref": "pay-1"})),
            None,
        )
        .await;
    assert_eq!(answer.status, 200, "{answer:?}");
    let lapsing = cloud
        .hold(0, "a2", "2027-05-01", "2027-05-02", "C-1", None)
        .await;
    assert_eq!(lapsing.status, 201, "{lapsing:?}");
    let lapsing_id = lapsing.body["id"].as_str().unwrap_or_default().to_owned();
    let stranger = cloud
        .hold(0, "a1", "2027-06-01", "2027-06-02", "walk-in", None)
        .await;
    assert_eq!(stranger.status, 201, "{stranger:?}");
    let stranger_id = stranger.body["id"].as_str().unwrap_or_default().to_owned();
    // The sweeper expires the unpaid hold.
    cloud
        .wait_until(
            &format!(
                "SELECT count(*) = 2 FROM notifications WHERE cause IN ('booking:{lapsing_id}', 'booking:{stranger_id}') AND kind = 'booking_expired'"
            ),
            SETTLE,
        )
        .await;

    let states = scalar(
        &cloud.db,
        "SELECT jsonb_object_agg(cause || ' ' || kind, state || ' ' || coalesce(phone, '-'))
         FROM notifications",
    )
    .await;
    let expected = json!({
        format!("booking:{confirmed_id} booking_held"): "SKIPPED 628123456789",
        format!("booking:{confirmed_id} booking_confirmed"): "SCHEDULED 628123456789",
        format!("booking:{lapsing_id} booking_held"): "SKIPPED 628123456789",
        format!("booking:{lapsing_id} booking_expired"): "SCHEDULED 628123456789",
        format!("booking:{stranger_id} booking_held"): "SKIPPED -",
        format!("booking:{stranger_id} booking_expired"): "SKIPPED -",
    });
    assert_eq!(states, expected);

    // Out through RabbitMQ to the gateway: the two messages that matter.
    let queues = Queues::new();
    let sandbox = Sandbox::start().await;
    let env = notify_env(cloud.db.url(), &queues, &sandbox);
    assert_eq!(publish_due(&env, None).await, 2);
    let worker = Worker::start(&env);
    let mut templates: Vec<String> = sandbox
        .wait_for(2)
        .await
        .iter()
        .map(|message| message["template"].as_str().unwrap_or_default().to_owned())
        .collect();
    templates.sort();
    assert_eq!(
        templates,
        ["sentra_booking_confirmed", "sentra_booking_expired"]
    );
    let (status, log) = worker.terminate().await;
    assert!(status.success(), "{log}");
}

#[tokio::test]
async fn serve_publishes_and_sends_through_its_sandbox_and_counts_it() {
    let db = notify_db().await;
    let queues = Queues::new();
    let id = schedule(&db, "booking:served").await;
    let amqp = amqp_url();
    let server = crate::support::Server::start(
        &[],
        &[
            ("DATABASE_URL", db.url()),
            ("SENTRA_CLOUD__NOTIFY__AMQP_URL", &amqp),
            ("SENTRA_CLOUD__NOTIFY__QUEUE", &queues.work),
            ("SENTRA_CLOUD__NOTIFY__GATEWAY_URL", "sandbox"),
            ("SENTRA_CLOUD__NOTIFY__RETRY_BASE_MS", "50"),
            ("SENTRA_CLOUD__NOTIFY__MAX_ATTEMPTS", "3"),
            ("SENTRA_CLOUD__NOTIFY__PUBLISH_INTERVAL_MS", "50"),
        ],
    )
    .await;
    let deadline = Instant::now() + SETTLE;
    loop {
        let current = row(&db, &id).await;
        if current["state"] == "SENT" {
            assert!(
                current["gateway_message_id"]
                    .as_str()
                    .is_some_and(|id| id.starts_with("wamid.")),
                "{current}"
            );
            break;
        }
        assert!(
            Instant::now() < deadline,
            "{current}; serve log:\n{}",
            server.stderr()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let operator = crate::support::operator_token(db.url()).await;
    let metrics = crate::support::scrape(server.addr, &operator).await;
    for line in [
        "sentra_cloud_notifications_published_total 1",
        "sentra_cloud_notifications_sent_total 1",
        "sentra_cloud_notifications_failed_total 0",
        "sentra_cloud_notifications_dead_total 0",
    ] {
        assert!(metrics.lines().any(|l| l == line), "{line} in:\n{metrics}");
    }
    let (status, _, log) = server.terminate().await;
    assert!(status.success(), "{log}");
    assert!(log.contains("sandbox messaging gateway listening"), "{log}");
}

#[tokio::test]
async fn a_broker_that_is_down_leaves_the_schedule_as_it_was() {
    let db = notify_db().await;
    let queues = Queues::new();
    let sandbox = Sandbox::start().await;
    let env = notify_env(db.url(), &queues, &sandbox);
    let id = schedule(&db, "booking:broker-down").await;
    let down = format!(
        "amqp://guest:guest@127.0.0.1:{}/%2f",
        crate::support::closed_port()
    );
    let mut unreachable = env.clone();
    unreachable.push(("SENTRA_CLOUD__NOTIFY__AMQP_URL".into(), down));
    let output = run(&["notify", "publish-due"], &pairs(&unreachable)).await;
    assert_eq!(output.status.code(), Some(1), "{}", output.stdout);
    assert!(output.stderr.contains("RabbitMQ"), "{}", output.stderr);
    let current = row(&db, &id).await;
    assert_eq!(current["state"], "SCHEDULED");
    assert_eq!(current["attempts"], 0);
    // The broker is back: the row goes out as if nothing happened.
    assert_eq!(publish_due(&env, None).await, 1);
    let worker = Worker::start(&env);
    wait_for_state(&db, &id, "SENT", Some(&worker)).await;
    let (status, log) = worker.terminate().await;
    assert!(status.success(), "{log}");
}

#[tokio::test]
async fn the_sandbox_answers_bad_requests_like_the_whatsapp_api() {
    let sandbox = Sandbox::start().await;
    let http = crate::support::http_client();
    let url = format!("{}/1234567890/messages", sandbox.url());
    let good = json!({"messaging_product": "whatsapp", "recipient_type": "individual",
        "to": "628123456789", "type": "template",
        "template": {"name": "sentra_booking_confirmed", "language": {"code": "id"},
                     "components": [{"type": "body", "parameters": [{"type": "text", "text": "car-1"}]}]},
        "biz_opaque_callback_data": "k-1"});
    let send = |body: Value, token: &'static str| {
        let request = http.post(&url).bearer_auth(token).json(&body);
        async move {
            let response = request.send().await.expect("the sandbox answers");
            let status = response.status().as_u16();
            (
                status,
                response.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (status, body) = send(good.clone(), "wrong-token").await;
    assert_eq!(status, 401, "{body}");
    assert_eq!(body["error"]["code"], 190);
    let mut bad_number = good.clone();
    bad_number["to"] = json!("+62 812");
    let (status, body) = send(bad_number, TOKEN).await;
    assert_eq!(status, 400, "{body}");
    assert!(body["error"]["message"].is_string(), "{body}");
    let (status, body) = send(json!({"to": 1}), TOKEN).await;
    assert_eq!(status, 400, "{body}");
    assert!(sandbox.messages(None).await.is_empty());
    let (status, body) = send(good, TOKEN).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["messaging_product"], "whatsapp");
    let id = body["messages"][0]["id"].as_str().unwrap_or_default();
    assert!(id.starts_with("wamid."), "{body}");
    let stored = sandbox.messages(Some("k-1")).await;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0]["id"], id);
    assert_eq!(stored[0]["parameters"], json!(["car-1"]));
    let (status, body) = sandbox
        .call(
            Method::POST,
            "/_sandbox/fail",
            Some(json!({"count": 1, "status": 200})),
        )
        .await;
    assert_eq!(status, 400, "{body}");
    assert_eq!(body["error"]["code"], "invalid_body");
}
