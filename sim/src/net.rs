//! The simulated network: a plain module, so that faults are data and a message costs a map insert.
//! Every link has the cluster's one-way latency; a link with a consumer at one end adds the
//! consumers' client latency (`consumers.client_latency_ms`: the client-side path of a real
//! consumer — fetch pipelining, synchronous commits — that a network hop does not have), so that
//! broker-to-broker replication, the controller and the producers keep the cluster's latency. A
//! node may carry extra latency and a loss
//! probability (`latency` fault); a cut drops everything `from → to` (both ways unless one-way).
//! Kafka speaks TCP: a lost segment is retransmitted, so loss on a degraded node shows as delay
//! (one retransmission timeout per loss, 200 ms doubling); only after [`RETRANSMITS_MAX`]
//! consecutive losses is the message gone (the connection would time out). Messages are dropped
//! at send time; what is already in flight still arrives.

use crate::dist::Stream;

/// Names the nodes of a run: brokers `b0…`, producers `p0…`, consumers `c0…`, and the controller.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    pub brokers: u32,
    pub producers: u32,
    pub consumers: u32,
}

pub type NodeIdx = usize;

impl Layout {
    pub fn broker(&self, b: u32) -> NodeIdx {
        b as usize
    }
    pub fn producer(&self, p: u32) -> NodeIdx {
        (self.brokers + p) as usize
    }
    pub fn consumer(&self, c: u32) -> NodeIdx {
        (self.brokers + self.producers + c) as usize
    }
    pub fn controller(&self) -> NodeIdx {
        (self.brokers + self.producers + self.consumers) as usize
    }
    pub fn nodes(&self) -> usize {
        self.controller() + 1
    }
    pub fn name(&self, n: NodeIdx) -> String {
        let n = n as u32;
        if n < self.brokers {
            format!("b{n}")
        } else if n < self.brokers + self.producers {
            format!("p{}", n - self.brokers)
        } else if n < self.brokers + self.producers + self.consumers {
            format!("c{}", n - self.brokers - self.producers)
        } else {
            "controller".into()
        }
    }
    /// Parses a node name (`b0`, `p1`, `c2`, `controller`).
    pub fn parse(&self, s: &str) -> Option<NodeIdx> {
        if s == "controller" {
            return Some(self.controller());
        }
        let (kind, num) = s.split_at(1.min(s.len()));
        let i: u32 = num.parse().ok()?;
        match kind {
            "b" if i < self.brokers => Some(self.broker(i)),
            "p" if i < self.producers => Some(self.producer(i)),
            "c" if i < self.consumers => Some(self.consumer(i)),
            _ => None,
        }
    }
}

/// Linux's minimum TCP retransmission timeout, the first retransmission's delay.
pub const RTO_MIN_MS: u64 = 200;
/// Consecutive losses of one message before it is given up (dropped).
pub const RETRANSMITS_MAX: u32 = 6;

/// One cut: messages from any node in `from` to any node in `to` are dropped (and the reverse
/// unless `one_way`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cut {
    pub id: u64,
    pub from: Vec<NodeIdx>,
    pub to: Vec<NodeIdx>,
    pub one_way: bool,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Degraded {
    pub id: u64,
    pub node: NodeIdx,
    pub extra_ms: u64,
    pub loss: f64,
}

#[derive(Debug)]
pub struct Net {
    pub latency_ms: u64,
    /// Added to every message to or from a node in `clients` (see the module docs).
    pub client_latency_ms: u64,
    clients: std::ops::Range<NodeIdx>,
    cuts: Vec<Cut>,
    degraded: Vec<Degraded>,
    rng: Stream,
    /// Messages dropped so far (for reports).
    pub dropped: u64,
}

impl Net {
    pub fn new(latency_ms: u64, seed: u64) -> Self {
        Net {
            latency_ms,
            client_latency_ms: 0,
            clients: 0..0,
            cuts: Vec::new(),
            degraded: Vec::new(),
            rng: Stream::new(seed, "net"),
            dropped: 0,
        }
    }

    /// Every message to or from a node in `clients` takes `ms` longer than the cluster's latency.
    pub fn with_client_latency(mut self, clients: std::ops::Range<NodeIdx>, ms: u64) -> Self {
        self.clients = clients;
        self.client_latency_ms = ms;
        self
    }

    pub fn add_cut(&mut self, c: Cut) {
        self.cuts.push(c);
    }
    pub fn add_degraded(&mut self, d: Degraded) {
        self.degraded.push(d);
    }
    /// Heals the fault with this id (cut or degradation).
    pub fn heal(&mut self, id: u64) {
        self.cuts.retain(|c| c.id != id);
        self.degraded.retain(|d| d.id != id);
    }
    pub fn heal_all(&mut self) {
        self.cuts.clear();
        self.degraded.clear();
    }

    /// Whether `from → to` is cut.
    pub fn cut(&self, from: NodeIdx, to: NodeIdx) -> bool {
        self.cuts.iter().any(|c| {
            (c.from.contains(&from) && c.to.contains(&to))
                || (!c.one_way && c.to.contains(&from) && c.from.contains(&to))
        })
    }

    /// The delay of one message `from → to`, or `None` when it is dropped.
    pub fn delay_ms(&mut self, from: NodeIdx, to: NodeIdx) -> Option<u64> {
        if from != to && self.cut(from, to) {
            self.dropped += 1;
            return None;
        }
        let mut d = if from == to {
            0
        } else if self.clients.contains(&from) || self.clients.contains(&to) {
            self.latency_ms + self.client_latency_ms
        } else {
            self.latency_ms
        };
        for g in &self.degraded {
            if g.node == from || g.node == to {
                d += g.extra_ms;
                let mut rto = RTO_MIN_MS;
                let mut losses = 0;
                while g.loss > 0.0 && self.rng.chance(g.loss) {
                    losses += 1;
                    if losses > RETRANSMITS_MAX {
                        self.dropped += 1;
                        return None;
                    }
                    d += rto;
                    rto *= 2;
                }
            }
        }
        Some(d)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        let l = Layout {
            brokers: 3,
            producers: 1,
            consumers: 2,
        };
        for n in 0..l.nodes() {
            assert_eq!(l.parse(&l.name(n)), Some(n), "{}", l.name(n));
        }
        for bad in ["b3", "c2", "x0", "", "b"] {
            assert_eq!(l.parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn cuts_drop_in_the_right_directions() {
        // (one_way, from→to dropped, to→from dropped)
        for (one_way, fwd, back) in [(false, true, true), (true, true, false)] {
            let mut n = Net::new(2, 1);
            n.add_cut(Cut {
                id: 1,
                from: vec![0],
                to: vec![1],
                one_way,
            });
            assert_eq!(n.delay_ms(0, 1).is_none(), fwd);
            assert_eq!(n.delay_ms(1, 0).is_none(), back);
            assert_eq!(n.delay_ms(0, 2), Some(2));
            n.heal(1);
            assert_eq!(n.delay_ms(0, 1), Some(2));
        }
    }

    #[test]
    fn client_links_add_the_client_latency() {
        // Nodes 0..3 brokers, 3 a producer, 4..6 consumers: (from, to, one-way delay).
        let mut n = Net::new(1, 3).with_client_latency(4..6, 40);
        for (from, to, want) in [(0, 1, 1), (3, 0, 1), (0, 3, 1), (4, 0, 41), (1, 5, 41), (4, 5, 41), (4, 4, 0), (0, 0, 0)] {
            assert_eq!(n.delay_ms(from, to), Some(want), "{from} -> {to}");
        }
        // A latency fault on a consumer adds to both.
        n.add_degraded(Degraded { id: 1, node: 4, extra_ms: 10, loss: 0.0 });
        assert_eq!(n.delay_ms(4, 0), Some(51));
        assert_eq!(n.delay_ms(0, 1), Some(1));
    }

    #[test]
    fn degraded_nodes_add_latency_and_retransmit_lost_segments() {
        let mut n = Net::new(1, 9);
        n.add_degraded(Degraded {
            id: 4,
            node: 2,
            extra_ms: 10,
            loss: 0.5,
        });
        let outcomes: Vec<Option<u64>> = (0..10_000).map(|_| n.delay_ms(0, 2)).collect();
        // Delivered: 11 ms plus 200, 400, 800… ms for each loss before the delivery.
        let allowed: Vec<u64> = (0..=RETRANSMITS_MAX).map(|k| 11 + RTO_MIN_MS * ((1 << k) - 1)).collect();
        assert!(outcomes.iter().flatten().all(|d| allowed.contains(d)), "{:?}", &outcomes[..20]);
        let first_try = outcomes.iter().filter(|o| **o == Some(11)).count();
        assert!((4_500..5_500).contains(&first_try), "first try {first_try}");
        let retried = outcomes.iter().filter(|o| o.is_some_and(|d| d > 11)).count();
        assert!(retried > 4_000, "retried {retried}");
        // Gone only after 7 consecutive losses: about 0.5^7 of the messages.
        let lost = outcomes.iter().filter(|o| o.is_none()).count();
        assert!((30..130).contains(&lost), "lost {lost}");
        assert_eq!(n.dropped, lost as u64);
    }
}
