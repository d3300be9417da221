//! A guest profiler's records as that VM's profile.
//!
//! A guest that runs its own SPE driver (guests/programs/profiler.c) hands
//! its records to the VMM through the vendor hypercall SPE_RECORDS
//! (`hyperprof_board::vendor`), one byte stream per vCPU. [`write_vm_profile`]
//! turns those streams and the guest image's ELF into what perf opens:
//! `NAME.perf.data` (one AUXTRACE queue per vCPU, the process and its
//! threads as COMM records, the image's code as kernel text), the symbol
//! file `vmlinux-NAME.elf` made from the image's symbol table,
//! `NAME.svg` (a flame graph) and `NAME.json` (hyperprof's own report of
//! the samples, [`GuestProfileReport`], which perf's must equal).
//!
//! The guest samples its own EL1 code. perf turns an EL1 PC into a kernel
//! address by setting the top byte (`arm_spe_calc_ip`), so the symbol file
//! places each function at its address with the top byte set; hyperprof's
//! own report names PCs by their addresses as the records carry them.

pub mod symbols;

use std::path::{Path, PathBuf};

use hyperprof_sim::op::Symbol;
use hyperprof_sim::stack::SampledStack;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::flame::{render_svg, FlameOptions, FoldedStacks};
use crate::perf::{write_domain, DomainProfile, Process};
use crate::run::artifacts::file_stem;
use crate::run::profile::{FunctionShare, Profile};
use crate::spe::export::write_atomically;
use crate::spe::stats::{Aggregator, Stats};
use hyperprof_spe::{Record, RecordDecoder};
pub use symbols::{image_symbols, ImageSymbols, SymbolsError};

/// The process a guest profiler's samples belong to; vCPU `j` runs its
/// thread `GUEST_PROFILER_PID + j` (the guest's CONTEXTIDR_EL1).
pub const GUEST_PROFILER_PID: u32 = 1000;

/// The records one vCPU handed over.
#[derive(Clone, Debug, Default)]
pub struct VcpuRecords {
    /// The bytes, pieces concatenated in the order they were handed over.
    pub bytes: Vec<u8>,
    /// Pieces the guest flagged as following lost records.
    pub truncations: u64,
    /// The stacks the simulator read at the instructions it sampled, in
    /// sampling order (empty when it did not capture them).
    pub stacks: Vec<SampledStack>,
}

/// What a VM's guest profiler handed over, and what it profiled.
#[derive(Clone, Debug)]
pub struct GuestRecords<'a> {
    /// The VM's name: the files are `NAME.perf.data`, `vmlinux-NAME.elf`,
    /// `NAME.svg` and `NAME.json`.
    pub vm: &'a str,
    /// The process name perf shows (the image's).
    pub comm: &'a str,
    /// Per vCPU, in the VM's order.
    pub vcpus: Vec<VcpuRecords>,
    /// Bytes the VMM refused because its store was full.
    pub refused_bytes: u64,
    /// The image's functions and text.
    pub image: &'a ImageSymbols,
    /// The guest's sampling interval (its PMSIRR_EL1.INTERVAL).
    pub interval: u64,
    /// The guest's RAM in bytes.
    pub ram_bytes: u64,
}

/// One vCPU's share of a guest profile.
#[derive(Clone, Debug, Serialize, PartialEq, Eq)]
pub struct VcpuSummary {
    /// The vCPU's index in the VM.
    pub vcpu: u32,
    /// Bytes it handed over.
    pub bytes: u64,
    /// Complete records in them.
    pub records: u64,
    /// Pieces flagged as following lost records.
    pub truncations: u64,
}

/// hyperprof's own report of a guest profile.
#[derive(Clone, Debug, Serialize)]
pub struct GuestProfileReport {
    /// The VM's name.
    pub vm: String,
    /// Complete records, all vCPUs.
    pub records: u64,
    /// Bytes handed over, all vCPUs.
    pub bytes: u64,
    /// Per vCPU.
    pub vcpus: Vec<VcpuSummary>,
    /// Bytes the VMM refused (its store was full): records lost.
    pub refused_bytes: u64,
    /// Pieces flagged as following lost records, all vCPUs.
    pub truncations: u64,
    /// Bytes that did not decode as records (0 for a well-behaved guest).
    pub undecodable: u64,
    /// Where a vCPU's bytes stopped decoding as packets, and why (none for
    /// a well-behaved guest); the counts in `stats` stop there.
    pub malformed: Vec<String>,
    /// Records whose PC is not at EL1, the level the guest samples.
    pub foreign: u64,
    /// Records whose PC lies outside the image's executable sections.
    pub outside_text: u64,
    /// Functions by samples, most first.
    pub top_functions: Vec<FunctionShare>,
    /// Packets, operations and events, as `hyperprof spe stats` counts
    /// them.
    pub stats: Stats,
    /// Where the flame graph's stacks come from: `simulator` (the guest's
    /// frame-pointer chain at each sampled instruction) or `function` (the
    /// sampled function alone).
    pub stacks: &'static str,
    /// Records whose stack the simulator captured (the others are drawn
    /// by their function alone).
    pub records_with_stacks: u64,
}

/// perf's address for an EL1 PC: bits 55:0 with the top byte set
/// (`arm_spe_calc_ip` for NS EL1/EL2 PCs).
pub fn perf_kernel_address(pc: u64) -> u64 {
    pc & ((1 << 56) - 1) | 0xff << 56
}

/// The symbol of `pc` among `functions` (sorted by start).
fn function_at(functions: &[Symbol], pc: u64) -> Option<&str> {
    let i = functions.partition_point(|f| f.start <= pc);
    functions[..i]
        .last()
        .filter(|f| pc < f.end)
        .map(|f| f.name.as_str())
}

/// Counts the records of `data` whose PC lies outside `image`'s text.
fn outside_text(data: &[u8], image: &ImageSymbols) -> u64 {
    RecordDecoder::new(data)
        .filter_map(|r| r.ok())
        .filter(|(_, r): &(usize, Record)| {
            r.pc.is_none_or(|pc| !image.in_text(pc.virtual_address()))
        })
        .count() as u64
}

/// How far past the last matched stack a record's stack is looked for: a
/// sampled instruction whose record the unit dropped (a collision, a
/// filter, a full buffer) leaves a stack with no record.
const STACK_LOOKAHEAD: usize = 256;

/// The flame graph's stacks: each record's stack, matched in sampling
/// order by its PC with the simulator's frame-pointer walks, as
/// `vm;comm;outermost caller;...;sampled function`; a record with no
/// matching walk as `vm;comm;function`. Returns the stacks and how many
/// records had a walk.
fn simulator_stacks(g: &GuestRecords<'_>) -> (FoldedStacks, u64) {
    let mut folded = FoldedStacks::new();
    let mut matched = 0;
    let name = |pc: u64| function_at(&g.image.functions, pc).unwrap_or("[unknown]");
    for v in &g.vcpus {
        let mut next = 0;
        for (_, r) in RecordDecoder::new(&v.bytes).filter_map(|r| r.ok()) {
            let Some(pc) = r.pc.map(|pc| pc.virtual_address()) else {
                continue;
            };
            let mut frames: Vec<&str> = vec![g.vm, g.comm];
            let window = v.stacks.get(next..).unwrap_or_default();
            let found = window.iter().take(STACK_LOOKAHEAD).position(|s| s.pc == pc);
            if let Some(k) = found {
                let s = &window[k];
                // A return address lies just after its call: name the call.
                frames.extend(s.callers.iter().rev().map(|&ra| name(ra.wrapping_sub(4))));
                next += k + 1;
                matched += 1;
            }
            frames.push(name(pc));
            folded.add(&frames, 1);
        }
    }
    (folded, matched)
}

/// Writes the guest profile `g` into `dir` (`NAME.perf.data`,
/// `vmlinux-NAME.elf`, `NAME.svg`, `NAME.json`); returns hyperprof's report
/// of it and the files written.
pub fn write_vm_profile(
    dir: &Path,
    g: &GuestRecords<'_>,
) -> Result<(GuestProfileReport, Vec<PathBuf>)> {
    let stem = file_stem(g.vm);
    let mut all = Vec::new();
    let mut agg = Aggregator::default();
    let mut vcpus = Vec::new();
    let mut outside = 0;
    let mut malformed = Vec::new();
    for (j, v) in g.vcpus.iter().enumerate() {
        all.extend_from_slice(&v.bytes);
        let before = agg.finish().records;
        // The bytes are the guest's: whatever they hold, the profile is
        // written and the report says where they stopped making sense.
        if let Err((off, why)) = agg.add_buffer(&v.bytes, 0) {
            malformed.push(format!("vCPU {j}: byte offset {off:#x}: {why}"));
        }
        vcpus.push(VcpuSummary {
            vcpu: j as u32,
            bytes: v.bytes.len() as u64,
            records: agg.finish().records - before,
            truncations: v.truncations,
        });
        outside += outside_text(&v.bytes, g.image);
    }
    let stats = agg.finish();
    let profile = Profile::of(&all, g.vm, g.comm, 1, &g.image.functions);
    let (stacks, source, with_stacks) = if g.vcpus.iter().all(|v| v.stacks.is_empty()) {
        (profile.stacks, "function", 0)
    } else {
        let (folded, matched) = simulator_stacks(g);
        (folded, "simulator", matched)
    };
    let report = GuestProfileReport {
        vm: g.vm.to_string(),
        records: profile.records,
        bytes: all.len() as u64,
        truncations: vcpus.iter().map(|v| v.truncations).sum(),
        vcpus,
        refused_bytes: g.refused_bytes,
        undecodable: profile.undecodable,
        malformed,
        foreign: profile.foreign,
        outside_text: outside,
        top_functions: profile.functions,
        stats,
        stacks: source,
        records_with_stacks: with_stacks,
    };

    std::fs::create_dir_all(dir).map_err(|e| Error::output(dir, e))?;
    let perf_symbols: Vec<Symbol> = g
        .image
        .functions
        .iter()
        .map(|f| Symbol {
            name: f.name.clone(),
            start: perf_kernel_address(f.start),
            end: perf_kernel_address(f.end - 1) + 1,
        })
        .collect();
    let d = DomainProfile {
        buffers: g
            .vcpus
            .iter()
            .enumerate()
            .map(|(j, v)| (j as u32, v.bytes.as_slice()))
            .collect(),
        processes: vec![Process {
            pid: GUEST_PROFILER_PID,
            tids: (0..g.vcpus.len() as u32)
                .map(|j| GUEST_PROFILER_PID + j)
                .collect(),
            comm: g.comm.to_string(),
            symbols: perf_symbols,
            kernel: true,
        }],
        nr_cpus: g.vcpus.len().max(1) as u32,
        mem_bytes: g.ram_bytes,
        interval: g.interval,
    };
    let mut wrote = write_domain(dir, &format!("{stem}.perf.data"), &d)?;

    let title = if source == "simulator" {
        format!(
            "{}: guest SPE samples; stacks from the simulator's walk of the guest's frame pointers (SPE records none)",
            g.vm
        )
    } else {
        format!("{}: guest SPE samples by function", g.vm)
    };
    let svg = render_svg(
        &stacks,
        &FlameOptions {
            title,
            ..FlameOptions::default()
        },
    );
    let path = dir.join(format!("{stem}.svg"));
    write_atomically(&path, svg.as_bytes())?;
    wrote.push(path);
    let path = dir.join(format!("{stem}.json"));
    let json = serde_json::to_string_pretty(&report).map_err(|e| Error::output(&path, e))? + "\n";
    write_atomically(&path, json.as_bytes())?;
    wrote.push(path);
    Ok((report, wrote))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(pc: u64) -> Vec<u8> {
        let r = Record {
            pc: Some(hyperprof_spe::record::CodeAddress {
                addr: pc,
                el: 1,
                ns: true,
            }),
            ..Record::default()
        };
        let mut buf = [0u8; 64];
        let n = r.encode(&mut buf).unwrap();
        buf[..n].to_vec()
    }

    #[test]
    fn a_guests_bad_bytes_are_reported_and_the_profile_still_written() {
        let dir =
            std::env::temp_dir().join(format!("hyperprof-guest-profile-{}", std::process::id()));
        let image = ImageSymbols {
            functions: vec![Symbol {
                name: "work".into(),
                start: 0x4008_0000,
                end: 0x4008_0100,
            }],
            text: vec![(0x4008_0000, 0x4008_0100)],
        };
        let mut good = record(0x4008_0010);
        good.extend(record(0x4008_0200));
        let mut bad = record(0x4008_0020);
        bad.extend([0xb7, 0x01]);
        let g = GuestRecords {
            vm: "vm 1",
            comm: "work",
            vcpus: vec![
                VcpuRecords {
                    bytes: good,
                    ..VcpuRecords::default()
                },
                VcpuRecords {
                    bytes: bad,
                    truncations: 2,
                    ..VcpuRecords::default()
                },
            ],
            refused_bytes: 64,
            image: &image,
            interval: 1024,
            ram_bytes: 1 << 27,
        };
        let (r, wrote) = write_vm_profile(&dir, &g).unwrap();
        assert_eq!(r.vcpus[0].records, 2);
        assert_eq!(r.vcpus[1].records, 1);
        assert_eq!(r.malformed.len(), 1, "{:?}", r.malformed);
        assert!(
            r.malformed[0].starts_with("vCPU 1: byte offset 0x"),
            "{:?}",
            r.malformed
        );
        assert_eq!((r.truncations, r.refused_bytes), (2, 64));
        assert_eq!(r.outside_text, 1, "the PC at 0x40080200");
        assert_eq!(r.stacks, "function");
        let names: Vec<_> = wrote
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            names,
            [
                "vmlinux-vm_1.elf",
                "vm_1.perf.data",
                "vm_1.svg",
                "vm_1.json"
            ]
        );
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn records_are_matched_to_the_simulators_stacks_by_pc_in_order() {
        let image = ImageSymbols {
            functions: vec![
                Symbol {
                    name: "main".into(),
                    start: 0x1000,
                    end: 0x1100,
                },
                Symbol {
                    name: "leaf".into(),
                    start: 0x2000,
                    end: 0x2100,
                },
            ],
            text: vec![(0x1000, 0x2100)],
        };
        let mut bytes = record(0x2010);
        bytes.extend(record(0x2020));
        bytes.extend(record(0x1010));
        let stacks = vec![
            // A sample whose record was dropped.
            SampledStack {
                pc: 0x2004,
                callers: vec![0x1008],
            },
            SampledStack {
                pc: 0x2010,
                callers: vec![0x1044],
            },
            // 0x2020's walk is missing: drawn by its function alone.
            SampledStack {
                pc: 0x1010,
                callers: vec![],
            },
        ];
        let g = GuestRecords {
            vm: "vm",
            comm: "c",
            vcpus: vec![VcpuRecords {
                bytes,
                truncations: 0,
                stacks,
            }],
            refused_bytes: 0,
            image: &image,
            interval: 1024,
            ram_bytes: 1 << 20,
        };
        let (folded, matched) = simulator_stacks(&g);
        assert_eq!(matched, 2);
        assert_eq!(
            folded.to_folded_text(),
            "vm;c;leaf 1\nvm;c;main 1\nvm;c;main;leaf 1\n"
        );
    }

    #[test]
    fn el1_pcs_get_perfs_top_byte() {
        assert_eq!(perf_kernel_address(0x4008_1000), 0xff00_0000_4008_1000);
        assert_eq!(
            perf_kernel_address(0xffff_8000_1000_0000),
            0xffff_8000_1000_0000
        );
    }

    #[test]
    fn functions_are_found_by_address() {
        let f = vec![
            Symbol {
                name: "a".into(),
                start: 0x10,
                end: 0x20,
            },
            Symbol {
                name: "b".into(),
                start: 0x30,
                end: 0x40,
            },
        ];
        assert_eq!(function_at(&f, 0x10), Some("a"));
        assert_eq!(function_at(&f, 0x24), None);
        assert_eq!(function_at(&f, 0x3c), Some("b"));
        assert_eq!(function_at(&f, 0x40), None);
        assert_eq!(function_at(&f, 0x0), None);
    }
}
