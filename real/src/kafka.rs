//! Client configuration, naming and administration against the live cluster: the run's own topics
//! and group (and nothing else), redaction of secrets, and a bounded reachability check.

use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

use crate::RealError;

/// How long the first metadata request may take before the cluster counts as unreachable.
pub const METADATA_TIMEOUT_MS: u64 = 10_000;
/// How long topic creation and deletion may take.
pub const ADMIN_TIMEOUT_MS: u64 = 15_000;

/// Substrings that mark a `-X` key as secret: its value is never logged or reported.
const SECRET_MARKERS: [&str; 5] = ["password", "secret", "key", "token", "sasl"];

pub fn is_secret_key(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    SECRET_MARKERS.iter().any(|m| k.contains(m))
}

/// `key=value` for humans, with the value replaced by `<redacted>` when the key looks secret.
pub fn redacted(key: &str, value: &str) -> String {
    if is_secret_key(key) {
        format!("{key}=<redacted>")
    } else {
        format!("{key}={value}")
    }
}

/// Names of the Kafka objects one run creates: everything starts with `sluice-<scenario>-<runid>`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Names {
    pub prefix: String,
    /// Kafka topic name for each scenario topic, in scenario order.
    pub topics: Vec<String>,
    pub group: String,
    pub dlq: String,
}

impl Names {
    pub fn new(scenario: &str, run_id: &str, topics: &[String]) -> Self {
        let clean: String = scenario
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '-' })
            .collect();
        let prefix = format!("sluice-{clean}-{run_id}");
        Names {
            topics: topics.iter().map(|t| format!("{prefix}-{t}")).collect(),
            group: format!("{prefix}-group"),
            dlq: format!("{prefix}-dlq"),
            prefix,
        }
    }
    /// Every topic the run creates (data topics, then the DLQ).
    pub fn all_topics(&self) -> Vec<String> {
        let mut v = self.topics.clone();
        v.push(self.dlq.clone());
        v
    }
}

/// The connection settings shared by every client of a run: brokers, IPv4, then the user's `-X`
/// overrides (which win).
#[derive(Clone, Debug)]
pub struct Conn {
    pub brokers: String,
    pub overrides: Vec<(String, String)>,
}

impl Conn {
    pub fn base(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.brokers);
        // The broker this project tests against listens on IPv4 only.
        c.set("broker.address.family", "v4");
        c.set("log_level", "3");
        for (k, v) in &self.overrides {
            c.set(k, v);
        }
        c
    }

    /// The overrides for logs and reports, secrets redacted.
    pub fn overrides_redacted(&self) -> Vec<String> {
        self.overrides.iter().map(|(k, v)| redacted(k, v)).collect()
    }
}

/// Parses `key=value` overrides.
pub fn parse_overrides(items: &[String]) -> Result<Vec<(String, String)>, RealError> {
    items
        .iter()
        .map(|s| match s.split_once('=') {
            Some((k, v)) if !k.trim().is_empty() => Ok((k.trim().to_string(), v.to_string())),
            _ => Err(RealError::Config(format!(
                "-X {} is not key=value",
                if is_secret_key(s) { "<redacted>" } else { s }
            ))),
        })
        .collect()
}

/// Asks the cluster for metadata within [`METADATA_TIMEOUT_MS`]; returns the broker count.
pub fn check_reachable(conn: &Conn) -> Result<usize, RealError> {
    let consumer: BaseConsumer = conn
        .base()
        .set("socket.connection.setup.timeout.ms", METADATA_TIMEOUT_MS.to_string())
        .create()
        .map_err(|e| RealError::Config(format!("client configuration refused: {e}")))?;
    let md = consumer
        .fetch_metadata(None, Duration::from_millis(METADATA_TIMEOUT_MS))
        .map_err(|e| RealError::Unreachable {
            brokers: conn.brokers.clone(),
            timeout_ms: METADATA_TIMEOUT_MS,
            detail: e.to_string(),
        })?;
    Ok(md.brokers().len())
}

fn admin(conn: &Conn) -> Result<AdminClient<DefaultClientContext>, RealError> {
    conn.base().create().map_err(|e| RealError::Config(format!("admin client: {e}")))
}

/// Creates the run's topics (`(name, partitions)`), replication factor 1 unless the cluster has
/// more brokers than the scenario's factor needs.
pub async fn create_topics(conn: &Conn, topics: &[(String, u32)], replication: i32) -> Result<(), RealError> {
    let admin = admin(conn)?;
    let news: Vec<NewTopic<'_>> = topics
        .iter()
        .map(|(n, p)| NewTopic::new(n, *p as i32, TopicReplication::Fixed(replication)))
        .collect();
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_millis(ADMIN_TIMEOUT_MS)));
    let fut = admin.create_topics(news.iter(), &opts);
    let res = real_tokio::time::timeout(Duration::from_millis(ADMIN_TIMEOUT_MS + 1_000), fut)
        .await
        .map_err(|_| RealError::Kafka(format!("create topics: no answer within {ADMIN_TIMEOUT_MS} ms")))?
        .map_err(|e| RealError::Kafka(format!("create topics: {e}")))?;
    for r in res {
        match r {
            Ok(_) => {}
            Err((name, RDKafkaErrorCode::TopicAlreadyExists)) => {
                return Err(RealError::Kafka(format!("topic {name} already exists: refusing to reuse a topic this run did not create")))
            }
            Err((name, code)) => return Err(RealError::Kafka(format!("create topic {name}: {code}"))),
        }
    }
    Ok(())
}

/// Deletes the run's topics and group; returns what could not be deleted (for the report).
pub async fn delete_run_objects(conn: &Conn, names: &Names) -> Vec<String> {
    let mut problems = Vec::new();
    let admin = match admin(conn) {
        Ok(a) => a,
        Err(e) => return vec![e.to_string()],
    };
    let opts = AdminOptions::new().operation_timeout(Some(Duration::from_millis(ADMIN_TIMEOUT_MS)));
    let all = names.all_topics();
    let refs: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
    let limit = Duration::from_millis(ADMIN_TIMEOUT_MS + 1_000);
    match real_tokio::time::timeout(limit, admin.delete_topics(&refs, &opts)).await {
        Err(_) => problems.push(format!("delete topics: no answer within {ADMIN_TIMEOUT_MS} ms")),
        Ok(Err(e)) => problems.push(format!("delete topics: {e}")),
        Ok(Ok(rs)) => {
            for r in rs {
                if let Err((n, code)) = r {
                    if code != RDKafkaErrorCode::UnknownTopicOrPartition {
                        problems.push(format!("delete topic {n}: {code}"));
                    }
                }
            }
        }
    }
    match real_tokio::time::timeout(limit, admin.delete_groups(&[names.group.as_str()], &opts)).await {
        Err(_) => problems.push(format!("delete group: no answer within {ADMIN_TIMEOUT_MS} ms")),
        Ok(Err(e)) => problems.push(format!("delete group {}: {e}", names.group)),
        Ok(Ok(rs)) => {
            for r in rs {
                if let Err((n, code)) = r {
                    if code != RDKafkaErrorCode::GroupIdNotFound {
                        problems.push(format!("delete group {n}: {code}"));
                    }
                }
            }
        }
    }
    problems
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_and_others_are_not() {
        let cases = [
            ("sasl.password", "hunter2", "sasl.password=<redacted>"),
            ("ssl.key.location", "/k", "ssl.key.location=<redacted>"),
            ("sasl.oauthbearer.token.endpoint.url", "u", "sasl.oauthbearer.token.endpoint.url=<redacted>"),
            ("client.secret", "s", "client.secret=<redacted>"),
            ("linger.ms", "5", "linger.ms=5"),
            ("fetch.wait.max.ms", "100", "fetch.wait.max.ms=100"),
        ];
        for (k, v, want) in cases {
            assert_eq!(redacted(k, v), want, "{k}");
        }
    }

    #[test]
    fn overrides_parse_and_bad_ones_do_not_leak() {
        let ok = parse_overrides(&["a.b=1".into(), "x= y=z".into()]).unwrap();
        assert_eq!(ok, vec![("a.b".into(), "1".into()), ("x".into(), " y=z".into())]);
        let err = parse_overrides(&["sasl.passwordhunter2".into()]).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(parse_overrides(&["=v".into()]).is_err());
    }

    #[test]
    fn names_carry_the_prefix_and_are_legal() {
        let n = Names::new("black friday/spike", "r1a2", &["orders".into(), "payments".into()]);
        assert_eq!(n.prefix, "sluice-black-friday-spike-r1a2");
        assert_eq!(n.topics, vec!["sluice-black-friday-spike-r1a2-orders", "sluice-black-friday-spike-r1a2-payments"]);
        assert_eq!(n.group, "sluice-black-friday-spike-r1a2-group");
        assert_eq!(n.all_topics().last().unwrap(), "sluice-black-friday-spike-r1a2-dlq");
        for t in n.all_topics() {
            assert!(t.chars().all(|c| c.is_ascii_alphanumeric() || "._-".contains(c)));
        }
    }
}
