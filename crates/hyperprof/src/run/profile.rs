//! What a domain's SPE samples say: the records, the functions they fall
//! in, the latency distribution of each kind of operation, and the folded
//! stacks a flame graph is drawn from.

use serde::{Deserialize, Serialize};

use hyperprof_sim::op::Symbol;
use hyperprof_spe::{OpClass, Record, RecordDecoder};

use crate::flame::FoldedStacks;
use crate::spe::stats::{LatencyHistogram, LatencySummary};

/// One function's share of the samples.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct FunctionShare {
    /// Function name (`[unknown]` for a PC in no symbol).
    pub function: String,
    /// Records whose PC is in it.
    pub samples: u64,
    /// `samples` over all records, in percent.
    pub percent: f64,
}

/// Total-latency percentiles of one kind of operation, in cycles.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ClassLatency {
    /// `load`, `store`, `branch` or `other`.
    pub class: String,
    /// Records of this kind with a total latency, and their percentiles
    /// (nearest rank), as `spe stats` computes them.
    #[serde(flatten)]
    pub summary: LatencySummary,
}

/// A domain's samples, analysed.
#[derive(Debug, Default)]
pub struct Profile {
    /// Complete records decoded.
    pub records: u64,
    /// Bytes that did not decode as records (should be 0).
    pub undecodable: u64,
    /// Records whose PC is not at the domain's own Exception level (should
    /// be 0: another domain's sample in this domain's buffer).
    pub foreign: u64,
    /// Functions by samples, most first (ties by name).
    pub functions: Vec<FunctionShare>,
    /// Latency per operation kind.
    pub latency: Vec<ClassLatency>,
    /// `root;workload;function` stacks for the flame graph.
    pub stacks: FoldedStacks,
}

/// The kind of operation a record describes.
fn class_of(r: &Record) -> &'static str {
    match r.op {
        Some(op) if op.class == OpClass::LoadStore && op.is_store() => "store",
        Some(op) if op.class == OpClass::LoadStore => "load",
        Some(op) if op.class == OpClass::Branch => "branch",
        _ => "other",
    }
}

const CLASSES: [&str; 4] = ["load", "store", "branch", "other"];

/// The symbol holding `pc` in `symbols` (sorted or not).
fn function_of(symbols: &[Symbol], pc: u64) -> Option<&str> {
    symbols
        .iter()
        .find(|s| s.start <= pc && pc < s.end)
        .map(|s| s.name.as_str())
}

impl Profile {
    /// Analyses SPE `data` (buffers as a driver collected them, one after
    /// another) of the domain `root` running `workload` at Exception level
    /// `el`, whose functions are `symbols`.
    pub fn of(data: &[u8], root: &str, workload: &str, el: u8, symbols: &[Symbol]) -> Profile {
        Profile::of_levels(data, root, workload, &[el], symbols)
    }

    /// As [`Profile::of`], for a domain whose own code runs at any of the
    /// Exception levels `els` (a guest kernel and its user space).
    pub fn of_levels(
        data: &[u8],
        root: &str,
        workload: &str,
        els: &[u8],
        symbols: &[Symbol],
    ) -> Profile {
        let mut p = Profile::default();
        let mut per_function: std::collections::BTreeMap<String, u64> = Default::default();
        let mut lat: [LatencyHistogram; 4] = Default::default();
        for item in RecordDecoder::new(data) {
            let r = match item {
                Ok((_, r)) => r,
                Err(_) => {
                    p.undecodable += 1;
                    continue;
                }
            };
            p.records += 1;
            p.foreign += u64::from(r.pc.is_none_or(|pc| !els.contains(&pc.el)));
            let name =
                r.pc.and_then(|pc| function_of(symbols, pc.virtual_address()))
                    .unwrap_or("[unknown]");
            *per_function.entry(name.to_string()).or_default() += 1;
            p.stacks.add(&[root, workload, name], 1);
            if let Some(l) = r.total_latency {
                let class = class_of(&r);
                if let Some(i) = CLASSES.iter().position(|c| *c == class) {
                    lat[i].add(l);
                }
            }
        }
        let total = p.records.max(1) as f64;
        let mut functions: Vec<FunctionShare> = per_function
            .into_iter()
            .map(|(function, samples)| FunctionShare {
                function,
                samples,
                percent: samples as f64 * 100.0 / total,
            })
            .collect();
        functions.sort_by(|a, b| b.samples.cmp(&a.samples).then(a.function.cmp(&b.function)));
        p.functions = functions;
        for (class, h) in CLASSES.iter().zip(&lat) {
            if let Some(summary) = h.summary() {
                p.latency.push(ClassLatency {
                    class: class.to_string(),
                    summary,
                });
            }
        }
        p
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyperprof_spe::packet::OpClass;
    use hyperprof_spe::record::{CodeAddress, OpType};

    fn rec(pc: u64, store: bool, latency: u16) -> Vec<u8> {
        let r = Record {
            pc: Some(CodeAddress {
                addr: pc,
                el: 0,
                ns: true,
            }),
            op: Some(OpType {
                class: OpClass::LoadStore,
                payload: u8::from(store),
            }),
            total_latency: Some(latency),
            ..Record::default()
        };
        let mut buf = [0u8; 256];
        let n = r.encode(&mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn functions_latencies_and_stacks() {
        let symbols = vec![
            Symbol {
                name: "copy".into(),
                start: 0x1000,
                end: 0x2000,
            },
            Symbol {
                name: "sum".into(),
                start: 0x2000,
                end: 0x3000,
            },
        ];
        let mut data = Vec::new();
        for (i, lat) in (1..=10u16).enumerate() {
            data.extend(rec(0x1004 + i as u64 * 4, false, lat * 10));
        }
        data.extend(rec(0x2010, true, 7));
        data.extend(rec(0x9000, true, 9));
        let p = Profile::of(&data, "vm0", "mix", 0, &symbols);
        assert_eq!(p.records, 12);
        assert_eq!(p.undecodable, 0);
        assert_eq!(p.foreign, 0);
        assert_eq!(Profile::of(&data, "host", "mix", 2, &symbols).foreign, 12);
        assert_eq!(p.functions[0].function, "copy");
        assert_eq!(p.functions[0].samples, 10);
        assert!((p.functions[0].percent - 1000.0 / 12.0).abs() < 1e-9);
        assert_eq!(p.functions[1].function, "[unknown]");
        let (load, l) = (&p.latency[0], &p.latency[0].summary);
        assert_eq!((load.class.as_str(), l.samples), ("load", 10));
        assert_eq!((l.p50, l.p90, l.p99, l.max), (50, 90, 100, 100));
        let (store, st) = (&p.latency[1], &p.latency[1].summary);
        assert_eq!((store.class.as_str(), st.samples, st.max), ("store", 2, 9));
        assert_eq!(p.stacks.total(), 12);
        assert!(p.stacks.to_folded_text().contains("vm0;mix;copy 10"));
    }
}
