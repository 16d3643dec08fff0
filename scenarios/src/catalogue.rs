//! The named scenarios, embedded in the binary so that `sluice run <name>` needs no files at run
//! time. Each is a TOML file in `scenarios/catalogue/` whose `name` equals its file stem.

macro_rules! catalogue {
    ($($name:literal),* $(,)?) => {
        /// `(name, TOML text)` for every catalogue scenario, in listing order.
        pub const CATALOGUE: &[(&str, &str)] = &[
            $(($name, include_str!(concat!("../catalogue/", $name, ".toml")))),*
        ];
    };
}

catalogue![
    "s0",
    "steady",
    "slow-consumer",
    "black-friday-spike",
    "rebalance-storm-eager",
    "rebalance-storm-cooperative",
    "rebalance-storm-static",
    "broker-crash-acks-all",
    "unclean-election",
    "network-partition-leader",
    "hot-partition",
    "poison-pill-dlq",
    "poison-pill-nonblocking",
    "rate-limited-sink-restart",
    "coordinator-failover",
    "commit-unknown-outcome",
    "prefetch-memory-growth",
    "large-records",
    "pause-across-rebalance",
    "rate-limited-backlog",
    "round-robin-fair-share",
    "aligned-checkpoints",
    "stream-consumer-stall",
    "commit-on-revoke",
];

/// The TOML text of a catalogue scenario.
pub fn text(name: &str) -> Option<&'static str> {
    CATALOGUE.iter().find(|(n, _)| *n == name).map(|(_, t)| *t)
}

/// Every catalogue name, in listing order.
pub fn names() -> impl Iterator<Item = &'static str> {
    CATALOGUE.iter().map(|(n, _)| *n)
}
