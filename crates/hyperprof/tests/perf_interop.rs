//! Interoperability with Linux perf: traces hyperprof writes are decoded by
//! the installed `perf report -D`, and `hyperprof spe dump` prints the very
//! same packet lines.
//!
//! When perf is not installed the tests say so and pass, except under CI
//! (CI=true), where they fail: `.ci/run` installs perf.

use std::path::Path;

use hyperprof_spe::packet::{OpClass, Packet};
use hyperprof_spe::perf_data::{self, AuxBuffer};

#[allow(dead_code)] // the guest image and QEMU helpers serve the boot tests
mod common;
use common::{hyperprof, ok, perf_available, perf_report_d, scratch};

/// The SPE packet lines of `perf report -D`: `.  ` and eight hex digits.
fn perf_packet_lines(data: &Path) -> Vec<String> {
    let out = perf_report_d(data);
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<String> = text
        .lines()
        .filter(|l| {
            let b = l.as_bytes();
            b.len() > 12
                && l.starts_with(".  ")
                && b[3..11].iter().all(u8::is_ascii_hexdigit)
                && b[11] == b':'
        })
        .map(str::to_owned)
        .collect();
    assert!(
        text.contains("ARM SPE data"),
        "perf did not decode SPE data"
    );
    lines
}

fn hyperprof_dump(data: &Path, keep_going: bool) -> Vec<String> {
    let mut cmd = hyperprof();
    cmd.args(["spe", "dump"]);
    if keep_going {
        cmd.arg("--keep-going");
    }
    let out = ok(cmd.arg(data).output().unwrap(), "hyperprof spe dump");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}

fn assert_same(perf: &[String], ours: &[String]) {
    assert!(!perf.is_empty());
    for (i, (p, o)) in perf.iter().zip(ours).enumerate() {
        assert_eq!(p, o, "line {i} differs");
    }
    assert_eq!(perf.len(), ours.len(), "line counts differ");
}

#[test]
fn synthetic_records_dump_identically_and_counts_agree() {
    if !perf_available() {
        return;
    }
    let dir = scratch("records");
    let raw = dir.join("trace.spe");
    let data = dir.join("trace.data");
    ok(
        hyperprof()
            .args(["spe", "synth", "--records", "20000", "--seed", "7", "-o"])
            .arg(&raw)
            .output()
            .unwrap(),
        "synth",
    );
    ok(
        hyperprof()
            .args(["spe", "export", "--cpu", "3", "-o"])
            .arg(&data)
            .arg(&raw)
            .output()
            .unwrap(),
        "export",
    );
    let perf = perf_packet_lines(&data);
    assert_same(&perf, &hyperprof_dump(&data, false));
    // Every record perf decodes ends with a TS (or END) line; stats counts the same.
    let perf_records = perf
        .iter()
        .filter(|l| l.contains(" TS ") || l.ends_with(" END"))
        .count();
    let stats = ok(
        hyperprof()
            .args(["spe", "stats", "--json"])
            .arg(&data)
            .output()
            .unwrap(),
        "stats",
    );
    let json: serde_json::Value = serde_json::from_slice(&stats.stdout).unwrap();
    assert_eq!(json["records"].as_u64(), Some(perf_records as u64));
    assert_eq!(perf_records, 20000);
}

/// A deterministic stream of every packet kind the decoder knows, including
/// extended headers, indices perf cannot name, the reserved operation class,
/// alignment packets and runs of padding.
fn packet_soup(seed: u64, packets: usize) -> Vec<u8> {
    let mut s = seed;
    let mut next = move || {
        s = s.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut out = Vec::new();
    let mut b = [0u8; 16];
    for _ in 0..packets {
        let r = next();
        let v = next();
        let size = 1u8 << (r >> 8 & 3);
        let sized = if size == 8 {
            v
        } else {
            v & ((1u64 << (size * 8)) - 1)
        };
        let index = (r >> 16 & 31) as u8;
        let extended = r >> 21 & 1 == 1 || index > 7;
        let p = match r % 13 {
            0 => Packet::Pad,
            1 => Packet::End,
            2 => Packet::Timestamp(v),
            3 => Packet::Events { size, bits: sized },
            4 => Packet::DataSource { size, value: sized },
            5 => Packet::Context {
                index: (r >> 24 & 3) as u8,
                id: v as u32,
            },
            6 | 7 => Packet::OpType {
                class: OpClass::from_bits((r >> 24) as u8 % 3),
                payload: v as u8,
            },
            8 | 9 => Packet::Address {
                index: if r >> 30 & 3 == 0 {
                    index
                } else {
                    (r >> 26 & 3) as u8
                },
                payload: v,
                extended,
            },
            10 => Packet::Counter {
                index,
                value: v as u16,
                extended,
            },
            11 => {
                // Alignment to 2..16 bytes, followed by a boundary of zeros so
                // that the packet is whole wherever it lands.
                let h = 0x20 | (r >> 24 & 3) as u8;
                out.extend_from_slice(&[h, 0x00]);
                out.extend(std::iter::repeat_n(0u8, 2 << (h & 0xF)));
                continue;
            }
            _ => {
                // The reserved operation class, which encode refuses to make.
                out.extend_from_slice(&[0x4b, v as u8]);
                continue;
            }
        };
        let n = hyperprof_spe::encode(&p, &mut b).unwrap();
        out.extend_from_slice(&b[..n]);
    }
    out
}

/// Every operation class and payload, every event bit alone, every address
/// and counter index in both header forms, every context index.
fn catalogue() -> Vec<u8> {
    let mut out = Vec::new();
    for class in 0..4u8 {
        for payload in 0..=255u8 {
            out.extend_from_slice(&[0x48 | class, payload]);
        }
    }
    let mut b = [0u8; 16];
    let mut put = |p: Packet, out: &mut Vec<u8>| {
        let n = hyperprof_spe::encode(&p, &mut b).unwrap();
        out.extend_from_slice(&b[..n]);
    };
    for bit in 0..64 {
        put(
            Packet::Events {
                size: 8,
                bits: 1 << bit,
            },
            &mut out,
        );
    }
    for index in 0..32u8 {
        for extended in [false, true] {
            if index > 7 && !extended {
                continue;
            }
            let payload = 0xd5a0_1234_5678_9abc_u64.rotate_left(index as u32);
            put(
                Packet::Address {
                    index,
                    payload,
                    extended,
                },
                &mut out,
            );
            put(
                Packet::Counter {
                    index,
                    value: 0xfff0 | index as u16,
                    extended,
                },
                &mut out,
            );
        }
    }
    for index in 0..4 {
        put(
            Packet::Context {
                index,
                id: 0xdead_beef,
            },
            &mut out,
        );
    }
    out
}

#[test]
fn every_packet_kind_dumps_identically_across_buffers() {
    if !perf_available() {
        return;
    }
    let dir = scratch("soup");
    let mut raws = Vec::new();
    for (i, len) in [(0, 40_000), (1, 17), (2, 9_999)] {
        let raw = dir.join(format!("soup{i}.spe"));
        std::fs::write(&raw, packet_soup(100 + i, len)).unwrap();
        raws.push(raw);
    }
    let raw = dir.join("catalogue.spe");
    std::fs::write(&raw, catalogue()).unwrap();
    raws.push(raw);
    let data = dir.join("soup.data");
    ok(
        hyperprof()
            .args(["spe", "export", "-o"])
            .arg(&data)
            .args(&raws)
            .output()
            .unwrap(),
        "export",
    );
    assert_same(&perf_packet_lines(&data), &hyperprof_dump(&data, false));
}

#[test]
fn undecodable_bytes_print_as_perf_prints_them_with_keep_going() {
    if !perf_available() {
        return;
    }
    let dir = scratch("bad");
    // Valid packets with undecodable bytes between them, and a packet cut
    // short at the end; export refuses such buffers, so write the file here.
    let mut raw = packet_soup(5, 3000);
    for (i, junk) in [0xffu8, 0x02, 0x20, 0x4c, 0x8f].iter().enumerate() {
        let at = raw.len() * (i + 1) / 7;
        raw.insert(at, *junk);
    }
    raw.extend_from_slice(&[0xb0, 1, 2, 3]);
    let bytes = {
        let mut v = Vec::new();
        let buffers = [AuxBuffer {
            cpu: 0,
            aux_offset: 0,
            data: &raw,
        }];
        perf_data::write_profile::<()>(&perf_data::Profile::bare(&buffers, 8), &mut |b| {
            v.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        v
    };
    let data = dir.join("bad.data");
    std::fs::write(&data, bytes).unwrap();
    let perf = perf_packet_lines(&data);
    assert!(perf.iter().any(|l| l.ends_with("Bad packet!")));
    assert_same(&perf, &hyperprof_dump(&data, true));

    // Without --keep-going: the lines before the first bad byte, then one
    // error line with the file offset, exit status 2.
    let out = hyperprof()
        .args(["spe", "dump"])
        .arg(&data)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("bad.data: byte offset 0x"), "{err}");
    let printed = String::from_utf8(out.stdout).unwrap();
    let first_bad = perf
        .iter()
        .position(|l| l.ends_with("Bad packet!"))
        .unwrap();
    assert_eq!(printed.lines().count(), first_bad);
}

#[test]
fn bare_metal_run_writes_host_data_perf_decodes_record_for_record() {
    if !perf_available() {
        return;
    }
    let dir = scratch("run");
    let out = ok(
        hyperprof()
            .args([
                "run",
                "--scenario",
                "bare-metal",
                "--cpus",
                "2",
                "--ops",
                "3000000",
                "--json",
                "--out",
            ])
            .arg(&dir)
            .output()
            .unwrap(),
        "hyperprof run",
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let reported = report["total_records"].as_u64().unwrap();
    assert!(reported > 4000, "{reported}");
    let data = dir.join("host.perf.data");
    let perf = perf_packet_lines(&data);
    let decoded = perf
        .iter()
        .filter(|l| l.contains(" TS ") || l.ends_with(" END"))
        .count() as u64;
    assert_eq!(decoded, reported);
    assert_same(&perf, &hyperprof_dump(&data, false));
}

#[test]
fn guest_spe_writes_one_perf_data_per_vm_and_one_for_the_host() {
    if !perf_available() {
        return;
    }
    let dir = scratch("guest-spe");
    let out = ok(
        hyperprof()
            .args([
                "run",
                "--scenario",
                "guest-spe",
                "--ops",
                "1500000",
                "--json",
                "--out",
            ])
            .arg(&dir)
            .output()
            .unwrap(),
        "hyperprof run --scenario guest-spe",
    );
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let count = |file: &str| {
        perf_packet_lines(&dir.join(file))
            .iter()
            .filter(|l| l.contains(" TS ") || l.ends_with(" END"))
            .count() as u64
    };
    for (i, vm) in report["vms"].as_array().unwrap().iter().enumerate() {
        assert_eq!(
            count(&format!("vm{i}.perf.data")),
            vm["spe"]["records"].as_u64().unwrap()
        );
    }
    let host: u64 = report["host"]["cpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| h["records"].as_u64().unwrap())
        .sum();
    assert_eq!(host, report["host"]["spe"]["records"].as_u64().unwrap());
    assert_eq!(count("host.perf.data"), host);
}
