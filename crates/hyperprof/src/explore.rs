//! `hyperprof explore`: the world-switch model checker of `hyperprof-kvm`
//! ([`hyperprof_kvm::explore`]) from the command line.

use hyperprof_kvm::explore::{catalogue, catalogue_holds, explore_host, summary, Mutation};

use crate::error::{Error, Result};

/// Runs the explorer: the switch as it is (on an nVHE host with `nvhe`),
/// one `mutation`, or (with `all`) the whole catalogue. Returns the text and whether the outcome is
/// the expected one (no violation unmutated; every harmful mutation
/// caught).
pub fn run(bound: usize, mutation: Option<&str>, all: bool, nvhe: bool) -> Result<(String, bool)> {
    if all {
        let reports = catalogue(bound);
        let mut text = summary(&reports);
        for r in &reports {
            text += "\n";
            text += &r.to_string();
        }
        return Ok((text, catalogue_holds(&reports)));
    }
    let m = match mutation {
        None => None,
        Some(name) => Some(Mutation::from_name(name).ok_or_else(|| {
            let names: Vec<_> = Mutation::ALL.iter().map(|m| m.name()).collect();
            Error::Usage(format!(
                "unknown mutation {name:?}; the catalogue: {}",
                names.join(", ")
            ))
        })?),
    };
    let r = explore_host(nvhe, m, bound, false);
    let holds = match m {
        None => r.counterexample.is_none(),
        Some(_) => true,
    };
    Ok((r.to_string(), holds))
}
