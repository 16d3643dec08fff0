//! Helpers shared by the core's property-test files.

use proptest::strategy::Strategy;
use proptest::test_runner::{Config, RngSeed, TestCaseError, TestError, TestRunner};

/// A proptest configuration with `cases` cases on a fixed seed, so every run picks the same cases.
pub fn config(cases: u32, seed: u64) -> Config {
    Config { cases, rng_seed: RngSeed::Fixed(seed), failure_persistence: None, ..Config::default() }
}

/// Runs `body` over `strategy` (fixed `seed`) and asserts that it finds a failing case whose message
/// names `rule`: run against a broken variant, this shows the property can fail.
pub fn assert_caught<S: Strategy>(seed: u64, strategy: S, rule: &str, body: impl Fn(S::Value) -> Result<(), TestCaseError>)
where
    S::Value: std::fmt::Debug,
{
    let mut runner = TestRunner::new(Config { max_shrink_iters: 64, ..config(512, seed) });
    match runner.run(&strategy, body) {
        Err(TestError::Fail(reason, input)) => {
            assert!(reason.message().contains(rule), "failure found but not for {rule}: {reason} on {input:?}")
        }
        Err(TestError::Abort(reason)) => panic!("runner aborted: {reason}"),
        Ok(()) => panic!("the broken variant passed the {rule} property: the property cannot fail"),
    }
}
