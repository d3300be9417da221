//! `hyperprof explore` and `hyperprof run --scenario pinning` as a user
//! meets them: output, error line, exit status.

use std::process::{Command, Output};

fn hyperprof(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_hyperprof"))
        .args(args)
        .output()
        .unwrap()
}

#[test]
fn explore_passes_on_the_switch_and_names_a_counterexample_for_a_mutation() {
    let out = hyperprof(&["explore", "--bound", "1"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("bound 1") && text.contains("every invariant held"),
        "{text}"
    );
    // A mutation's counterexample is a result, not a failure of the command.
    let out = hyperprof(&[
        "explore",
        "--bound",
        "1",
        "--mutation",
        "put-skips-host-pmbsr",
    ]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("counterexample") && text.contains("LEFT OUT"),
        "{text}"
    );
}

#[test]
fn an_unknown_mutation_is_one_line_and_status_2() {
    let out = hyperprof(&["explore", "--mutation", "nope"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("unknown mutation") && err.contains("no-irq-mask-in-load"),
        "{err}"
    );
}

#[test]
fn the_pinning_scenario_prints_its_table() {
    let out = hyperprof(&["run", "--scenario", "pinning", "--ops", "500000"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("v6 pin-on-enable") && text.contains("pin-all"),
        "{text}"
    );
    assert!(text.contains("hold."), "{text}");
    let out = hyperprof(&["run", "--scenario", "pinning", "--ops", "500000", "--json"]);
    assert!(out.status.success(), "{out:?}");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["rows"].as_array().map(Vec::len), Some(4));
    assert_eq!(v["violations"].as_array().map(Vec::len), Some(0));
    let out = hyperprof(&["run", "--scenario", "pinning", "--cpus", "2"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert_eq!(String::from_utf8_lossy(&out.stderr).lines().count(), 1);
}
