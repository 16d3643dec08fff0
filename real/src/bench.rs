//! Throughput of the real pipeline (core in the loop, no rate limit, zero processing time) against a
//! bare rdkafka consume loop, in one run against the same broker and the same records.
//!
//! Both sides join a fresh group, and both are timed from the moment the group assigns them their
//! partitions to their last record, so the group's join time (seconds on some brokers) is not
//! counted on either side, and both pay the same first fetches from the broker. (Timing from the
//! first record instead would credit whichever side let librdkafka prefetch more before its first
//! poll: with 10⁵ records prefetched per partition, up to the whole topic.)

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::producer::DefaultProducerContext;

use sluice_core::history::Event;
use sluice_core::spec::Scenario;

use crate::kafka::{self, Conn, Names};
use crate::member::{self, Control, MemberPlan};
use crate::recorder::{Clock, Recorder};
use crate::RealError;

/// How long one side may take to consume everything before the bench gives up.
pub const BENCH_SIDE_TIMEOUT_MS: u64 = 120_000;
/// Group settings of both sides. Neither side's timing includes the join, but some brokers hold a
/// join for half the session timeout (the in-memory Tansu does), so a short one keeps the bench short.
pub const BENCH_SESSION_TIMEOUT_MS: u64 = 6_000;
pub const BENCH_HEARTBEAT_INTERVAL_MS: u64 = 1_000;
/// librdkafka's `fetch.queue.backoff.ms` for both sides. Its default (1 000 ms) postpones a
/// partition's next fetch by a second whenever its prefetch queue is over its threshold, which at
/// these rates turns a 0.3 s run into a 1.3 s one at random on either side; 10 ms keeps both sides
/// measuring the consume path, not that timer.
pub const BENCH_FETCH_QUEUE_BACKOFF_MS: u64 = 10;

#[derive(Clone, Debug, PartialEq)]
pub struct BenchResult {
    pub records: u64,
    pub partitions: u32,
    pub strategy: String,
    /// Best of the rounds, records per second.
    pub bare_per_s: f64,
    pub pipeline_per_s: f64,
    /// `pipeline_per_s / bare_per_s`.
    pub ratio: f64,
    /// Of the best pipeline round: mean records per answered fetch and per worker run.
    pub records_per_fetch: f64,
    pub records_per_run: f64,
}

/// What one side of one round measured.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
struct Round {
    per_s: f64,
    records_per_fetch: f64,
    records_per_run: f64,
}

fn bench_scenario(partitions: u32, strategy: &str) -> Result<Scenario, RealError> {
    let text = format!(
        r#"
name = "bench"
duration_s = 1
[[topics]]
name = "bench"
partitions = {partitions}
[[producers]]
topic = "bench"
rate_per_s = 1.0
[consumers]
count = 1
topics = ["bench"]
strategy = "{strategy}"
assignor = "range"
protocol = "eager"
buffer_records_max = 20000
max_poll_records = 2000
workers = 4
fetch_wait_max_ms = 100
session_timeout_ms = {BENCH_SESSION_TIMEOUT_MS}
heartbeat_interval_ms = {BENCH_HEARTBEAT_INTERVAL_MS}
processing = {{ kind = "constant", ms = 0.0 }}
"#
    );
    toml::from_str(&text).map_err(|e| RealError::Config(format!("bench scenario: {e}")))
}

/// Produces `records` records into a fresh topic of `partitions` partitions, then consumes them
/// `rounds` times with each side and reports the best rate of each.
pub fn run_bench(brokers: &str, records: u64, partitions: u32, strategy: &str, rounds: u32) -> Result<BenchResult, RealError> {
    run_bench_with(brokers, records, partitions, strategy, None, rounds)
}

/// [`run_bench`] with the credit strategy's exclusive credits per partition set (`None`: the
/// scenario default, 2). One credit is one record, so 2 exclusive credits let a partition fetch
/// 2 records at a time unless floating credits are lent to it.
pub fn run_bench_with(brokers: &str, records: u64, partitions: u32, strategy: &str, exclusive_credits: Option<u32>, rounds: u32) -> Result<BenchResult, RealError> {
    let conn = Conn { brokers: brokers.to_string(), overrides: Vec::new() };
    kafka::check_reachable(&conn)?;
    let mut sc = bench_scenario(partitions, strategy)?;
    if let Some(e) = exclusive_credits {
        sc.consumers.exclusive_credits = e;
        sc.validate().map_err(|es| RealError::Config(format!("bench scenario with {e} exclusive credits: {es:?}")))?;
    }
    let names = Names::new("bench", &format!("{:08x}", std::process::id()), &["bench".to_string()]);
    let rt = real_tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(kafka::create_topics(&conn, &[(names.topics[0].clone(), partitions), (names.dlq.clone(), 1)], 1))?;
    let result = (|| {
        let producer: ThreadedProducer<DefaultProducerContext> = conn
            .base()
            .set("linger.ms", "5")
            .set("acks", "1")
            .set("enable.idempotence", "false")
            .create()
            .map_err(|e| RealError::Config(format!("bench producer: {e}")))?;
        let mut seqs = vec![0u64; partitions as usize];
        for i in 0..records {
            let part = (i % partitions as u64) as u32;
            let payload = crate::load::encode(0, seqs[part as usize]);
            seqs[part as usize] += 1;
            loop {
                match producer.send(BaseRecord::to(&names.topics[0]).partition(part as i32).payload(&payload[..]).key(&payload[..4])) {
                    Ok(()) => break,
                    Err((_, _)) => producer.poll(Duration::from_millis(5)),
                }
            }
        }
        producer.flush(Duration::from_secs(60)).map_err(|e| RealError::Kafka(format!("bench flush: {e}")))?;
        let mut best_bare: f64 = 0.0;
        let mut best_pipe = Round::default();
        for round in 0..rounds {
            best_bare = best_bare.max(bare_rate(&conn, &names, records, round)?);
            let r = pipeline_rate(&conn, &names, &sc, records, round)?;
            if r.per_s > best_pipe.per_s {
                best_pipe = r;
            }
        }
        Ok(BenchResult {
            records,
            partitions,
            strategy: strategy.to_string(),
            bare_per_s: best_bare,
            pipeline_per_s: best_pipe.per_s,
            ratio: if best_bare > 0.0 { best_pipe.per_s / best_bare } else { 0.0 },
            records_per_fetch: best_pipe.records_per_fetch,
            records_per_run: best_pipe.records_per_run,
        })
    })();
    rt.block_on(kafka::delete_run_objects(&conn, &names));
    result
}

/// Notes when the bare consumer's group hands it its partitions: its clock starts there, like the
/// pipeline's (its `Assign` entry). Before assigning, it makes the same two lookups the pipeline's
/// driver makes in its rebalance callback (committed offsets, then each partition's watermarks),
/// so that neither side starts fetching ahead of its clock.
struct AssignClock {
    assigned_at: std::sync::Mutex<Option<Instant>>,
}
impl rdkafka::ClientContext for AssignClock {}
impl rdkafka::consumer::ConsumerContext for AssignClock {
    fn pre_rebalance(&self, c: &BaseConsumer<Self>, r: &rdkafka::consumer::Rebalance<'_>) {
        if let rdkafka::consumer::Rebalance::Assign(l) = r {
            let timeout = Duration::from_millis(member::KAFKA_CALL_TIMEOUT_MS);
            drop(c.committed_offsets((*l).clone(), timeout));
            for e in l.elements() {
                let _ = c.fetch_watermarks(e.topic(), e.partition(), timeout);
            }
        }
    }

    fn post_rebalance(&self, _c: &BaseConsumer<Self>, r: &rdkafka::consumer::Rebalance<'_>) {
        if let rdkafka::consumer::Rebalance::Assign(l) = r {
            if l.count() > 0 {
                self.assigned_at.lock().unwrap_or_else(|p| p.into_inner()).get_or_insert_with(Instant::now);
            }
        }
    }
}

fn bare_rate(conn: &Conn, names: &Names, records: u64, round: u32) -> Result<f64, RealError> {
    let c: BaseConsumer<AssignClock> = conn
        .base()
        .set("group.id", format!("{}-bare{round}", names.prefix))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .set("session.timeout.ms", BENCH_SESSION_TIMEOUT_MS.to_string())
        .set("heartbeat.interval.ms", BENCH_HEARTBEAT_INTERVAL_MS.to_string())
        .set("fetch.queue.backoff.ms", BENCH_FETCH_QUEUE_BACKOFF_MS.to_string())
        .create_with_context(AssignClock { assigned_at: std::sync::Mutex::new(None) })
        .map_err(|e| RealError::Config(format!("bench consumer: {e}")))?;
    c.subscribe(&[names.topics[0].as_str()]).map_err(|e| RealError::Kafka(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_millis(BENCH_SIDE_TIMEOUT_MS);
    let mut n = 0u64;
    let mut sum = 0u64; // touch the payload like the pipeline driver does
    // Waits only when the previous poll came back empty, as the pipeline's driver does (a poll
    // with a timeout costs more than one without, even when a message is ready).
    let mut wait = Duration::from_millis(100);
    while n < records {
        if Instant::now() > deadline {
            return Err(RealError::Kafka(format!("bare consumer read {n} of {records} within {BENCH_SIDE_TIMEOUT_MS} ms")));
        }
        match c.poll(wait) {
            Some(Ok(m)) => {
                use rdkafka::message::Message;
                if let Some((_, s)) = m.payload().and_then(crate::load::decode) {
                    sum = sum.wrapping_add(s);
                }
                n += 1;
                wait = Duration::ZERO;
            }
            _ => wait = Duration::from_millis(100),
        }
    }
    let assigned = *c.context().assigned_at.lock().unwrap_or_else(|p| p.into_inner());
    let secs = assigned.map(|f| f.elapsed().as_secs_f64()).unwrap_or(0.0);
    std::hint::black_box(sum);
    drop(c);
    Ok(if secs > 0.0 { records as f64 / secs } else { 0.0 })
}

fn pipeline_rate(conn: &Conn, names: &Names, sc: &Scenario, records: u64, round: u32) -> Result<Round, RealError> {
    let mut names = names.clone();
    names.group = format!("{}-pipe{round}", names.prefix);
    let rec = Recorder::new(Clock::start());
    let control = Control::new();
    let plan = MemberPlan {
        index: 0,
        scenario: std::sync::Arc::new(sc.clone()),
        names,
        conn: conn.clone(),
        bugs: sluice_core::bugs::Bugs::NONE,
        time_scale: 1.0,
        seed: 1,
        consumer_overrides: vec![("fetch.queue.backoff.ms".to_string(), BENCH_FETCH_QUEUE_BACKOFF_MS.to_string())],
    };
    let (r2, c2) = (rec.clone(), control.clone());
    let h = std::thread::spawn(move || member::run_member(plan, r2, c2));
    let deadline = Instant::now() + Duration::from_millis(BENCH_SIDE_TIMEOUT_MS);
    // Follows the history as it grows (only the new entries are copied each time, so the
    // watching costs the member little).
    let mut seen = 0usize;
    let (mut done, mut fetches, mut fetched, mut runs) = (0u64, 0u64, 0u64, 0u64);
    let mut first = None;
    let last = loop {
        std::thread::sleep(Duration::from_millis(100));
        let es = rec.since(seen);
        seen += es.len();
        let mut last = None;
        for e in &es {
            match &e.ev {
                Event::Assign { tps, .. } if !tps.is_empty() => {
                    first.get_or_insert(e.t_us);
                }
                Event::Fetch { runs: rs, .. } if done < records => {
                    fetches += 1;
                    fetched += rs.iter().map(|r| r.count as u64).sum::<u64>();
                }
                Event::ProcessEnd { ok, .. } if done < records => {
                    done += *ok as u64;
                    runs += 1;
                    if done >= records {
                        last = Some(e.t_us);
                    }
                }
                _ => {}
            }
        }
        if let Some(l) = last {
            break l;
        }
        if Instant::now() > deadline {
            control.stop.store(true, Ordering::Relaxed);
            let _ = h.join();
            return Err(RealError::Kafka(format!("pipeline processed {done} of {records} within {BENCH_SIDE_TIMEOUT_MS} ms")));
        }
    };
    control.stop.store(true, Ordering::Relaxed);
    let _ = h.join();
    let secs = (last - first.unwrap_or(last)) as f64 / 1e6;
    let ratio = |a: u64, b: u64| if b > 0 { a as f64 / b as f64 } else { 0.0 };
    Ok(Round {
        per_s: if secs > 0.0 { records as f64 / secs } else { 0.0 },
        records_per_fetch: ratio(fetched, fetches),
        records_per_run: ratio(done, runs),
    })
}
