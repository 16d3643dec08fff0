//! The history recorder: every thread of a real run appends [`Entry`]s here, stamped with the wall
//! time since the run started. Stamping under the lock keeps `t_us` non-decreasing in the order the
//! entries land, which is what the schema requires.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use sluice_core::history::{Entry, Event};
use sluice_core::TimeUs;

/// The wall clock of one run: microseconds since its start.
#[derive(Clone, Copy, Debug)]
pub struct Clock {
    start: Instant,
}

impl Clock {
    pub fn start() -> Self {
        Clock { start: Instant::now() }
    }
    pub fn now_us(&self) -> TimeUs {
        self.start.elapsed().as_micros() as TimeUs
    }
}

/// A shared, append-only history. Cloning shares it.
#[derive(Clone)]
pub struct Recorder {
    clock: Clock,
    entries: Arc<Mutex<Vec<Entry>>>,
    /// Bound on the entries one run may hold in memory; past it further entries are counted and
    /// dropped, and the run reports the overflow (never silently).
    entries_max: usize,
    overflow: Arc<Mutex<u64>>,
}

/// Entries one run may hold (about 2 GB of JSON at worst; typical runs hold well under 10⁶).
pub const HISTORY_ENTRIES_MAX: usize = 8_000_000;

impl Recorder {
    pub fn new(clock: Clock) -> Self {
        Recorder {
            clock,
            entries: Arc::new(Mutex::new(Vec::with_capacity(4096))),
            entries_max: HISTORY_ENTRIES_MAX,
            overflow: Arc::new(Mutex::new(0)),
        }
    }

    pub fn clock(&self) -> Clock {
        self.clock
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Entry>> {
        // A panicking recorder thread must not take the history with it.
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends one event stamped now.
    pub fn record(&self, ev: Event) {
        let mut g = self.lock();
        if g.len() >= self.entries_max {
            *self.overflow.lock().unwrap_or_else(|p| p.into_inner()) += 1;
            return;
        }
        let t_us = self.clock.now_us();
        g.push(Entry { t_us, ev });
    }

    /// Appends several events with one time stamp, atomically (no other entry between them).
    pub fn record_all(&self, evs: impl IntoIterator<Item = Event>) {
        let mut g = self.lock();
        let t_us = self.clock.now_us();
        for ev in evs {
            if g.len() >= self.entries_max {
                *self.overflow.lock().unwrap_or_else(|p| p.into_inner()) += 1;
                continue;
            }
            g.push(Entry { t_us, ev });
        }
    }

    pub fn note(&self, text: impl Into<String>) {
        self.record(Event::Note { text: text.into() });
    }

    /// Entries dropped because the history was full.
    pub fn overflow(&self) -> u64 {
        *self.overflow.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A copy of everything recorded so far.
    pub fn snapshot(&self) -> Vec<Entry> {
        self.lock().clone()
    }

    /// A copy of the entries from index `from` on (empty when there are none yet), for readers
    /// that follow a run without copying its whole history each time.
    pub fn since(&self, from: usize) -> Vec<Entry> {
        let g = self.lock();
        g.get(from..).map(|s| s.to_vec()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stamps_are_non_decreasing_across_threads() {
        let r = Recorder::new(Clock::start());
        let hs: Vec<_> = (0..4)
            .map(|i| {
                let r = r.clone();
                std::thread::spawn(move || {
                    for j in 0..500 {
                        r.note(format!("{i}-{j}"));
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let es = r.snapshot();
        assert_eq!(es.len(), 2000);
        assert_eq!(r.since(1_990), es[1_990..].to_vec());
        assert!(r.since(2_000).is_empty() && r.since(5_000).is_empty());
        assert!(es.windows(2).all(|w| w[0].t_us <= w[1].t_us));
        assert_eq!(r.overflow(), 0);
    }
}
