//! Throughput of the real pipeline (core in the loop, no rate limit, zero processing time) against a
//! bare rdkafka consume loop, in one run against the same broker and the same records.
//!
//! Both sides join a fresh group, and both are timed from their first record to their last, so the
//! group's join time (seconds on some brokers) is not counted on either side.

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
processing = {{ kind = "constant", ms = 0.0 }}
"#
    );
    toml::from_str(&text).map_err(|e| RealError::Config(format!("bench scenario: {e}")))
}

/// Produces `records` records into a fresh topic of `partitions` partitions, then consumes them
/// `rounds` times with each side and reports the best rate of each.
pub fn run_bench(brokers: &str, records: u64, partitions: u32, strategy: &str, rounds: u32) -> Result<BenchResult, RealError> {
    let conn = Conn { brokers: brokers.to_string(), overrides: Vec::new() };
    kafka::check_reachable(&conn)?;
    let sc = bench_scenario(partitions, strategy)?;
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
        let mut best_pipe: f64 = 0.0;
        for round in 0..rounds {
            best_bare = best_bare.max(bare_rate(&conn, &names, records, round)?);
            best_pipe = best_pipe.max(pipeline_rate(&conn, &names, &sc, records, round)?);
        }
        Ok(BenchResult {
            records,
            partitions,
            strategy: strategy.to_string(),
            bare_per_s: best_bare,
            pipeline_per_s: best_pipe,
            ratio: if best_bare > 0.0 { best_pipe / best_bare } else { 0.0 },
        })
    })();
    rt.block_on(kafka::delete_run_objects(&conn, &names));
    result
}

fn bare_rate(conn: &Conn, names: &Names, records: u64, round: u32) -> Result<f64, RealError> {
    let c: BaseConsumer = conn
        .base()
        .set("group.id", format!("{}-bare{round}", names.prefix))
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .set("fetch.wait.max.ms", "100")
        .create()
        .map_err(|e| RealError::Config(format!("bench consumer: {e}")))?;
    c.subscribe(&[names.topics[0].as_str()]).map_err(|e| RealError::Kafka(e.to_string()))?;
    let deadline = Instant::now() + Duration::from_millis(BENCH_SIDE_TIMEOUT_MS);
    let mut n = 0u64;
    let mut first: Option<Instant> = None;
    let mut sum = 0u64; // touch the payload like the pipeline driver does
    while n < records {
        if Instant::now() > deadline {
            return Err(RealError::Kafka(format!("bare consumer read {n} of {records} within {BENCH_SIDE_TIMEOUT_MS} ms")));
        }
        if let Some(Ok(m)) = c.poll(Duration::from_millis(100)) {
            use rdkafka::message::Message;
            first.get_or_insert_with(Instant::now);
            if let Some((_, s)) = m.payload().and_then(crate::load::decode) {
                sum = sum.wrapping_add(s);
            }
            n += 1;
        }
    }
    let secs = first.map(|f| f.elapsed().as_secs_f64()).unwrap_or(0.0);
    std::hint::black_box(sum);
    drop(c);
    Ok(if secs > 0.0 { records as f64 / secs } else { 0.0 })
}

fn pipeline_rate(conn: &Conn, names: &Names, sc: &Scenario, records: u64, round: u32) -> Result<f64, RealError> {
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
        consumer_overrides: Vec::new(),
    };
    let (r2, c2) = (rec.clone(), control.clone());
    let h = std::thread::spawn(move || member::run_member(plan, r2, c2));
    let deadline = Instant::now() + Duration::from_millis(BENCH_SIDE_TIMEOUT_MS);
    let (first, last) = loop {
        std::thread::sleep(Duration::from_millis(100));
        let es = rec.snapshot();
        let mut done = 0u64;
        let mut first = None;
        let mut last = None;
        for e in &es {
            match e.ev {
                Event::Fetch { .. } if first.is_none() => first = Some(e.t_us),
                Event::ProcessEnd { ok, .. } => {
                    done += ok as u64;
                    if done >= records && last.is_none() {
                        last = Some(e.t_us);
                    }
                }
                _ => {}
            }
        }
        if let (Some(f), Some(l)) = (first, last) {
            break (f, l);
        }
        if Instant::now() > deadline {
            control.stop.store(true, Ordering::Relaxed);
            let _ = h.join();
            return Err(RealError::Kafka(format!("pipeline processed {done} of {records} within {BENCH_SIDE_TIMEOUT_MS} ms")));
        }
    };
    control.stop.store(true, Ordering::Relaxed);
    let _ = h.join();
    let secs = (last - first) as f64 / 1e6;
    Ok(if secs > 0.0 { records as f64 / secs } else { 0.0 })
}
