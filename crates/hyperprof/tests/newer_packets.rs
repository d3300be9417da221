//! Packets newer than perf 6.1 (previous branch target, the newer events,
//! GCS, SME, memcpy/memset and MTE operation subclasses, IMPLEMENTATION
//! DEFINED event bits) reach `spe stats` and the table export, while `spe
//! dump` keeps printing what perf 6.1's `perf report -D` prints for them.

use std::process::Command;

use hyperprof_spe::packet::{event, OpClass};
use hyperprof_spe::record::{CodeAddress, OpType};
use hyperprof_spe::Record;
use serde_json::Value;

#[allow(dead_code)] // the perf helpers serve the perf tests
mod common;
use common::{hyperprof, ok, scratch};

fn pc(addr: u64) -> Option<CodeAddress> {
    Some(CodeAddress {
        addr,
        el: 0,
        ns: true,
    })
}

/// One record of each newer kind, `copies` times.
fn trace(copies: usize) -> Vec<u8> {
    let op = |class, payload| Some(OpType { class, payload });
    let base = Record {
        pc: pc(0x1000),
        events: Some(1 << event::RETIRED),
        total_latency: Some(9),
        timestamp: Some(100),
        ..Record::default()
    };
    let kinds = [
        // GCS load (common), memcpy store, memset store, MTE tag load.
        Record {
            op: op(OpClass::LoadStore, 0x44),
            data_va: Some(0xfffe_0000_1000),
            ..base
        },
        Record {
            op: op(OpClass::LoadStore, 0x21),
            data_va: Some(0xfffe_0000_2000),
            ..base
        },
        Record {
            op: op(OpClass::LoadStore, 0x25),
            data_va: Some(0xfffe_0000_3000),
            ..base
        },
        Record {
            op: op(OpClass::LoadStore, 0x14),
            data_va: Some(0xfffe_0000_4000),
            events: Some(
                1 << event::RETIRED
                    | 1 << event::L2D_ACCESS
                    | 1 << event::CACHE_DATA_MODIFIED
                    | 1 << event::IMPDEF_FIRST,
            ),
            ..base
        },
        // SME and SVE data processing.
        Record {
            op: op(OpClass::Other, 0x9e),
            events: Some(1 << event::RETIRED | 1 << event::STREAMING_SVE_MODE | 1 << event::SMCU),
            ..base
        },
        Record {
            op: op(OpClass::Other, 0x2e),
            ..base
        },
        // A GCS-checked call with its previous branch target.
        Record {
            op: op(OpClass::Branch, 0x0c),
            branch_target: pc(0x2000),
            prev_branch_target: pc(0x0f00),
            ..base
        },
    ];
    let mut out = Vec::new();
    let mut buf = [0u8; 128];
    for _ in 0..copies {
        for r in &kinds {
            let n = r.encode(&mut buf).unwrap();
            out.extend_from_slice(&buf[..n]);
        }
    }
    out
}

#[test]
fn stats_and_tables_name_the_newer_packets() {
    let dir = scratch("stats");
    let raw = dir.join("new.spe");
    std::fs::write(&raw, trace(3)).unwrap();
    let out = ok(
        hyperprof()
            .args(["spe", "stats", "--json"])
            .arg(&raw)
            .output()
            .unwrap(),
        "stats",
    );
    let s: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ops = &s["ops"];
    for (k, n) in [
        ("ldst_gcs", 3),
        ("ldst_memcpy", 3),
        ("ldst_memset", 3),
        ("ldst_mte_tag", 3),
        ("other_sme", 3),
        ("other_sve", 3),
        ("branch_gcs", 3),
        ("branch_call", 3),
        ("load", 6),
        ("store", 6),
    ] {
        assert_eq!(ops[k], n, "{k}");
    }
    assert_eq!(s["packets"]["address_pbt"], 3);
    let event = |name: &str| {
        s["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e[0] == name)
            .and_then(|e| e[1].as_u64())
    };
    for (name, n) in [
        ("l2d-access", 3),
        ("hitm", 3),
        ("impdef-12", 3),
        ("streaming-sve", 3),
        ("smcu", 3),
        ("txn", 0),
    ] {
        assert_eq!(event(name), Some(n), "{name}");
    }

    let tables = dir.join("tables");
    ok(
        hyperprof()
            .args(["spe", "export", "--format", "csv", "-o"])
            .arg(&tables)
            .arg(&raw)
            .output()
            .unwrap(),
        "export",
    );
    let ldst = std::fs::read_to_string(tables.join("new-ldst.csv")).unwrap();
    for sub in [",GCS,", ",MEMCPY,", ",MEMSET,", ",MTE-TAG,"] {
        assert_eq!(ldst.matches(sub).count(), 3, "{sub} in\n{ldst}");
    }
    assert!(ldst.contains("RETIRED:IMPDEF-12:L2D-ACCESS:HITM"), "{ldst}");
    let other = std::fs::read_to_string(tables.join("new-other.csv")).unwrap();
    assert_eq!(other.matches(",SME,1024,").count(), 3, "{other}");
    assert!(other.contains("STREAMING-SVE:SMCU"), "{other}");
    let br = std::fs::read_to_string(tables.join("new-br.csv")).unwrap();
    assert_eq!(
        br.matches(",0xf00,0,").count(),
        3,
        "pbt and its level: {br}"
    );
}

#[test]
fn spe_dump_keeps_perf_6_1_text_for_them() {
    let have_perf = Command::new("perf")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !have_perf {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "perf is not installed but CI=true"
        );
        eprintln!("perf not installed: skipping");
        return;
    }
    let dir = scratch("dump");
    let raw = dir.join("new.spe");
    let data = dir.join("new.data");
    std::fs::write(&raw, trace(2)).unwrap();
    ok(
        hyperprof()
            .args(["spe", "export", "-o"])
            .arg(&data)
            .arg(&raw)
            .output()
            .unwrap(),
        "export",
    );
    let perf = ok(
        Command::new("perf")
            .args(["report", "-D", "-i"])
            .arg(&data)
            .output()
            .unwrap(),
        "perf report -D",
    );
    let perf: Vec<String> = String::from_utf8_lossy(&perf.stdout)
        .lines()
        .filter(|l| {
            let b = l.as_bytes();
            b.len() > 12 && l.starts_with(".  ") && b[11] == b':'
        })
        .map(str::to_owned)
        .collect();
    let ours = ok(
        hyperprof()
            .args(["spe", "dump"])
            .arg(&data)
            .output()
            .unwrap(),
        "dump",
    );
    let ours: Vec<String> = String::from_utf8_lossy(&ours.stdout)
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(!perf.is_empty());
    assert_eq!(perf, ours);
}
