//! Faults: the scenario's schedule, or a swarm the seed picks (0–4 faults of random kinds, times and
//! targets within the safety phase, returned as a schedule that replays them). Starting a fault
//! changes the world's data (a cut in `net`, a factor in `disk`, a stall in a consumer) or crashes a
//! node; ending it undoes exactly that. Everything still active heals when the liveness phase
//! begins.

use sluice_core::history::{Edge, Event};
use sluice_core::spec::{Fault, FaultKind, Scenario};

use crate::dist::Stream;
use crate::net::{Cut, Degraded, Layout, NodeIdx};
use crate::world::World;
use crate::SimError;

/// The most faults swarm mode injects in one run.
pub const SWARM_FAULTS_MAX: u64 = 4;

/// A fault in force, with what is needed to heal it.
#[derive(Clone, Debug)]
pub struct Active {
    pub id: u64,
    pub name: &'static str,
    pub target: String,
    pub end_ms: u64,
    undo: Undo,
}

#[derive(Clone, Debug)]
enum Undo {
    Nothing,
    Net,
    Disk(u32),
    Restart(NodeIdx),
    Stall(u32),
    Slow(u32),
    CommitLoss(u32),
}

/// Checks that every node a schedule names exists (`validate` checks indices, not names).
pub fn check_schedule(spec: &Scenario, layout: &Layout, faults: &[Fault]) -> Result<(), SimError> {
    for (i, f) in faults.iter().enumerate() {
        match &f.kind {
            FaultKind::Partition { from, to, .. } => {
                for n in from.iter().chain(to) {
                    if layout.parse(n).is_none() {
                        return Err(SimError::Invalid(format!(
                            "faults[{i}]: unknown node {n:?} (use b0.., p0.., c0.., controller)"
                        )));
                    }
                }
            }
            FaultKind::Latency { node, loss, .. } => {
                if layout.parse(node).is_none() {
                    return Err(SimError::Invalid(format!(
                        "faults[{i}]: unknown node {node:?}"
                    )));
                }
                if !(0.0..=1.0).contains(loss) {
                    return Err(SimError::Invalid(format!(
                        "faults[{i}].loss must be within 0..=1"
                    )));
                }
            }
            FaultKind::SlowDisk { factor, .. } | FaultKind::SlowConsumer { factor, .. }
                if !(*factor >= 1.0 && factor.is_finite()) =>
            {
                return Err(SimError::Invalid(format!(
                    "faults[{i}].factor must be a finite number >= 1"
                )));
            }
            _ => {}
        }
        if f.at_s > spec.duration_s as f64 {
            return Err(SimError::Invalid(format!(
                "faults[{i}].at_s is beyond the safety phase"
            )));
        }
    }
    Ok(())
}

/// The faults the seed picks in swarm mode.
pub fn swarm(spec: &Scenario, seed: u64) -> Vec<Fault> {
    let mut r = Stream::new(seed, "swarm");
    let n = r.below(SWARM_FAULTS_MAX + 1);
    let d = spec.duration_s as f64;
    let brokers = spec.cluster.brokers as u64;
    let consumers = spec.consumers.count as u64;
    let mut out = Vec::new();
    for _ in 0..n {
        let at_s = (r.range_f64(0.1, 0.7) * d * 10.0).round() / 10.0;
        let for_s = (r.range_f64(0.02, 0.25) * d * 10.0).round().max(1.0) / 10.0;
        let kind = match r.below(9) {
            0 => FaultKind::BrokerCrash {
                broker: r.below(brokers) as u32,
            },
            1 => {
                let t = &spec.topics[r.below(spec.topics.len() as u64) as usize];
                FaultKind::LeaderCrash {
                    topic: t.name.clone(),
                    partition: r.below(t.partitions as u64) as u32,
                }
            }
            2 => {
                let a = r.below(brokers);
                let b = (a + 1 + r.below(brokers.max(2) - 1)) % brokers.max(1);
                FaultKind::Partition {
                    from: vec![format!("b{a}")],
                    to: vec![format!("b{b}")],
                    one_way: r.chance(0.5),
                }
            }
            3 => FaultKind::Latency {
                node: format!("b{}", r.below(brokers)),
                ms: 1 + r.below(50),
                loss: (r.f64() * 0.2 * 100.0).round() / 100.0,
            },
            4 => FaultKind::SlowDisk {
                broker: r.below(brokers) as u32,
                factor: (2 + r.below(19)) as f64,
            },
            5 => FaultKind::CoordinatorFailover,
            6 => FaultKind::ConsumerCrash {
                consumer: r.below(consumers) as u32,
            },
            7 => FaultKind::ConsumerStall {
                consumer: r.below(consumers) as u32,
            },
            _ => FaultKind::SlowConsumer {
                consumer: r.below(consumers) as u32,
                factor: (2 + r.below(9)) as f64,
            },
        };
        out.push(Fault { at_s, for_s, kind });
    }
    out.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    one_broker_fault_at_a_time(out, d)
}

/// After a broker-level fault ends, the next one waits this long (seconds): time for the restarted
/// broker to catch up and rejoin the ISR.
pub const SWARM_BROKER_FAULT_GAP_S: f64 = 15.0;

/// Whether a fault takes a broker (or its links to the other brokers) away.
fn broker_fault(f: &FaultKind) -> bool {
    matches!(
        f,
        FaultKind::BrokerCrash { .. }
            | FaultKind::LeaderCrash { .. }
            | FaultKind::CoordinatorFailover
            | FaultKind::Partition { .. }
    )
}

/// The swarm stays within what the cluster claims to tolerate: with RF 3 and min.insync 2, one
/// broker away at a time. Overlapping broker faults are Kafka's documented loss cases (every ISR
/// member dies; the ISR shrinks to one replica that then fails), which dedicated scenarios cover;
/// here they would be reported as the consumer core's failures. A broker fault that would overlap
/// the previous one (plus the catch-up gap) moves after it, or is dropped past the safety phase.
fn one_broker_fault_at_a_time(faults: Vec<Fault>, duration_s: f64) -> Vec<Fault> {
    let mut busy_until = f64::NEG_INFINITY;
    let mut out = Vec::with_capacity(faults.len());
    for mut f in faults {
        if broker_fault(&f.kind) {
            if f.at_s < busy_until {
                f.at_s = (busy_until * 10.0).ceil() / 10.0;
            }
            if f.at_s > duration_s {
                continue;
            }
            busy_until = f.at_s + f.for_s + SWARM_BROKER_FAULT_GAP_S;
        }
        out.push(f);
    }
    out.sort_by(|a, b| a.at_s.total_cmp(&b.at_s));
    out
}

fn consumer_fault(f: &FaultKind) -> bool {
    matches!(
        f,
        FaultKind::ConsumerCrash { .. }
            | FaultKind::ConsumerStall { .. }
            | FaultKind::SlowConsumer { .. }
            | FaultKind::CommitReplyLoss { .. }
    )
}

impl World {
    /// Starts fault `f` (number `id`). Returns, unless it was skipped, the record needed to heal it.
    pub fn fault_start(&mut self, id: u64, f: &Fault) -> Option<Active> {
        let now = self.now_ms;
        let end_ms = now + (f.for_s * 1_000.0).round() as u64;
        let l = self.layout;
        if consumer_fault(&f.kind) && !self.opts.consumers {
            self.record(Event::Note {
                text: format!("fault {} skipped: consumers are not running", f.kind.name()),
            });
            return None;
        }
        let (target, undo) = match &f.kind {
            FaultKind::BrokerCrash { broker } => {
                let n = l.broker(*broker);
                if !self.up[n] {
                    self.record(Event::Note {
                        text: format!("fault broker-crash skipped: b{broker} is already down"),
                    });
                    return None;
                }
                (format!("b{broker}"), Undo::Restart(n))
            }
            FaultKind::LeaderCrash { topic, partition } => {
                let g = self
                    .spec
                    .topic_index(topic)
                    .map(|ti| self.tp_base[ti as usize] + partition);
                match g.and_then(|g| self.meta[g as usize].leader) {
                    Some(b) if self.up[l.broker(b)] => {
                        (format!("b{b}"), Undo::Restart(l.broker(b)))
                    }
                    _ => {
                        self.record(Event::Note { text: format!("fault leader-crash skipped: {topic}/{partition} has no live leader") });
                        return None;
                    }
                }
            }
            FaultKind::CoordinatorFailover => {
                let b = self.coordinator_broker;
                if !self.up[l.broker(b)] {
                    return None;
                }
                (format!("b{b}"), Undo::Restart(l.broker(b)))
            }
            FaultKind::ConsumerCrash { consumer } => {
                let n = l.consumer(*consumer);
                if !self.up[n] {
                    return None;
                }
                (
                    format!("c{consumer}"),
                    if f.for_s > 0.0 {
                        Undo::Restart(n)
                    } else {
                        Undo::Nothing
                    },
                )
            }
            FaultKind::Partition { from, to, one_way } => {
                let from: Vec<NodeIdx> = from.iter().filter_map(|s| l.parse(s)).collect();
                let to: Vec<NodeIdx> = to.iter().filter_map(|s| l.parse(s)).collect();
                let target = format!(
                    "{}{}{}",
                    from.iter()
                        .map(|&n| l.name(n))
                        .collect::<Vec<_>>()
                        .join(","),
                    if *one_way { "->" } else { "<->" },
                    to.iter().map(|&n| l.name(n)).collect::<Vec<_>>().join(",")
                );
                self.net.add_cut(Cut {
                    id,
                    from,
                    to,
                    one_way: *one_way,
                });
                (target, Undo::Net)
            }
            FaultKind::Latency { node, ms, loss } => {
                let n = l.parse(node).unwrap_or(0);
                self.net.add_degraded(Degraded {
                    id,
                    node: n,
                    extra_ms: *ms,
                    loss: *loss,
                });
                (node.clone(), Undo::Net)
            }
            FaultKind::SlowDisk { broker, factor } => {
                self.brokers[*broker as usize].disk.slow_down(id, *factor);
                (format!("b{broker}"), Undo::Disk(*broker))
            }
            FaultKind::ConsumerStall { consumer } => {
                let co = &mut self.consumers[*consumer as usize];
                co.stall_until_ms = co.stall_until_ms.max(end_ms);
                self.stall_running_jobs(*consumer, end_ms);
                (format!("c{consumer}"), Undo::Stall(*consumer))
            }
            FaultKind::SlowConsumer { consumer, factor } => {
                self.consumers[*consumer as usize].slow.push((id, *factor));
                (format!("c{consumer}"), Undo::Slow(*consumer))
            }
            FaultKind::CommitReplyLoss { consumer } => {
                self.consumers[*consumer as usize]
                    .commit_reply_loss
                    .push(id);
                (format!("c{consumer}"), Undo::CommitLoss(*consumer))
            }
        };
        self.record(Event::Fault {
            fault: f.kind.name().into(),
            target: target.clone(),
            edge: Edge::Start,
        });
        if let Undo::Restart(n) = undo {
            self.crash_node(n);
        }
        if let (FaultKind::ConsumerCrash { .. }, Undo::Nothing) = (&f.kind, &undo) {
            let n = l.consumer(match f.kind {
                FaultKind::ConsumerCrash { consumer } => consumer,
                _ => unreachable!("matched above"),
            });
            self.crash_node(n);
        }
        Some(Active {
            id,
            name: f.kind.name(),
            target,
            end_ms,
            undo,
        })
    }

    /// Heals an active fault.
    pub fn fault_end(&mut self, a: &Active) {
        match a.undo {
            Undo::Nothing => {}
            Undo::Net => self.net.heal(a.id),
            Undo::Disk(b) => self.brokers[b as usize].disk.heal(a.id),
            Undo::Restart(n) => self.restart_node(n),
            Undo::Stall(c) => {
                // The stall ends now even if healed early (liveness phase).
                let now = self.now_ms;
                let co = &mut self.consumers[c as usize];
                co.stall_until_ms = co.stall_until_ms.min(now);
            }
            Undo::Slow(c) => self.consumers[c as usize].slow.retain(|s| s.0 != a.id),
            Undo::CommitLoss(c) => self.consumers[c as usize]
                .commit_reply_loss
                .retain(|&x| x != a.id),
        }
        self.record(Event::Fault {
            fault: a.name.into(),
            target: a.target.clone(),
            edge: Edge::End,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crash(at_s: f64, for_s: f64, broker: u32) -> Fault {
        Fault { at_s, for_s, kind: FaultKind::BrokerCrash { broker } }
    }

    #[test]
    fn overlapping_broker_faults_move_after_the_previous_one_or_go() {
        let stall = Fault { at_s: 12.0, for_s: 5.0, kind: FaultKind::ConsumerStall { consumer: 0 } };
        let got = one_broker_fault_at_a_time(vec![crash(10.0, 5.0, 0), stall.clone(), crash(12.0, 3.0, 1), crash(40.0, 1.0, 2)], 45.0);
        // 12.0 moves to 10 + 5 + gap = 30; the one at 40 would then start at 48 > 45: dropped.
        assert_eq!(got, vec![crash(10.0, 5.0, 0), stall, crash(30.0, 3.0, 1)]);
    }

    #[test]
    fn swarm_takes_one_broker_away_at_a_time() {
        let spec: Scenario = serde_json::from_value(serde_json::json!({
            "name": "t", "duration_s": 120, "liveness_s": 60,
            "topics": [{"name": "a", "partitions": 6}],
            "producers": [{"topic": "a", "rate_per_s": 100.0}],
            "consumers": {"count": 3, "topics": ["a"]}
        }))
        .expect("spec parses");
        let mut with_broker_faults = 0;
        for seed in 0..2_000 {
            let faults = swarm(&spec, seed);
            let broker: Vec<&Fault> = faults.iter().filter(|f| broker_fault(&f.kind)).collect();
            with_broker_faults += (broker.len() >= 2) as u32;
            for w in broker.windows(2) {
                assert!(
                    w[1].at_s >= w[0].at_s + w[0].for_s + SWARM_BROKER_FAULT_GAP_S - 0.05,
                    "seed {seed}: {:?} overlaps {:?}",
                    w[1],
                    w[0]
                );
            }
            assert!(faults.iter().all(|f| f.at_s <= spec.duration_s as f64), "seed {seed}");
            assert!(faults.windows(2).all(|w| w[0].at_s <= w[1].at_s), "seed {seed}: not sorted");
        }
        assert!(with_broker_faults > 100, "only {with_broker_faults} seeds with two broker faults");
    }
}
