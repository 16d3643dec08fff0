//! The simulated disk of each broker: a serial device with an append latency (times a slow-disk
//! factor) and a sync point. Kafka does not fsync by default and relies on replication; the model
//! lets the OS flush dirty data every `os_flush_interval_ms`, and a crash (a machine failure, not a
//! clean shutdown) loses whatever was written since the last flush or fsync.

/// Linux's default `dirty_expire_centisecs` is 30 s; a shorter period keeps crash losses to the
/// recent tail while still exercising them.
pub const OS_FLUSH_INTERVAL_MS: u64 = 5_000;

#[derive(Clone, Debug)]
pub struct Disk {
    pub append_ms: u64,
    pub fsync_on_append: bool,
    /// Slow-disk faults in force: `(fault id, factor)`.
    slow: Vec<(u64, f64)>,
    /// The disk is busy until then (appends are serial).
    busy_until_ms: u64,
}

impl Disk {
    pub fn new(append_ms: u64, fsync_on_append: bool) -> Self {
        Disk {
            append_ms,
            fsync_on_append,
            slow: Vec::new(),
            busy_until_ms: 0,
        }
    }

    pub fn factor(&self) -> f64 {
        self.slow.iter().map(|s| s.1).fold(1.0, f64::max)
    }

    /// Schedules one append (one request's or fetch response's worth of batches) issued at `now_ms`;
    /// returns when it completes.
    pub fn append(&mut self, now_ms: u64) -> u64 {
        let cost = (self.append_ms as f64 * self.factor()).round() as u64;
        let done = self.busy_until_ms.max(now_ms) + cost;
        self.busy_until_ms = done;
        done
    }

    pub fn slow_down(&mut self, id: u64, factor: f64) {
        self.slow.push((id, factor));
    }
    pub fn heal(&mut self, id: u64) {
        self.slow.retain(|s| s.0 != id);
    }
    /// A crash empties the device queue.
    pub fn reset(&mut self) {
        self.busy_until_ms = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn appends_are_serial_and_slowed_by_the_worst_factor() {
        let mut d = Disk::new(2, false);
        assert_eq!(d.append(10), 12);
        assert_eq!(d.append(10), 14);
        assert_eq!(d.append(20), 22);
        d.slow_down(1, 5.0);
        d.slow_down(2, 3.0);
        assert_eq!(d.append(30), 40);
        d.heal(1);
        assert_eq!(d.append(40), 46);
        d.heal(2);
        assert_eq!(d.append(100), 102);
    }
}
