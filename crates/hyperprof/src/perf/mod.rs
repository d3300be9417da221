//! Profiles for Linux perf: a domain's SPE buffers written as a complete
//! perf.data file (`perf report`, `perf script`, `perf mem` and `perf c2c`
//! open it) with, beside it, the symbol files it names; and `hyperprof
//! perf-setup DIR`, which adds those files to perf's build-id cache.

pub mod elf;
pub mod setup;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use hyperprof_sim::op::Symbol;
use hyperprof_spe::packet::Packet;
use hyperprof_spe::perf_data::profile::SPE_CONFIG_TS_ENABLE;
use hyperprof_spe::perf_data::{
    write_profile, AuxBuffer, AuxSlot, CodeMap, Comm, MachineInfo, Profile, SpeEvent,
};
use hyperprof_spe::text::DumpWalker;

use crate::error::Result;
use crate::spe::export::write_atomically;
use elf::{symbol_file, SymbolFile, TEXT_OFFSET};

/// MIDR_EL1 of an Arm Neoverse N1 r4p0: perf picks the N1 data-source
/// encoding (L1, L2, peer core, LLC, DRAM) for it.
pub const NEOVERSE_N1_MIDR: u64 = 0x410f_d0c0;
/// The dynamic PMU type of arm_spe_0 written into every profile.
pub const SPE_PMU_TYPE: u32 = 8;
/// The event name perf shows.
pub const SPE_EVENT_NAME: &str = "arm_spe_0/ts_enable=1/";
/// The extension of the symbol files hyperprof writes.
pub const SYMBOL_FILE_EXT: &str = "elf";

/// The instruction address perf gives a sample whose PC packet is `pc`:
/// perf takes every Non-secure EL1 or EL2 PC for a Linux kernel address and
/// sets its byte 7 to 0xff; other PCs are sign-extended from bit 55.
pub fn perf_ip(pc: &hyperprof_spe::record::CodeAddress) -> u64 {
    if pc.ns && matches!(pc.el, 1 | 2) {
        pc.addr & 0x00ff_ffff_ffff_ffff | 0xff << 56
    } else {
        pc.virtual_address()
    }
}

/// A process whose samples a profile holds.
#[derive(Clone, Debug)]
pub struct Process {
    /// Its pid.
    pub pid: u32,
    /// Its threads: the CONTEXTIDR values its samples carry (none for
    /// kernel code that runs on behalf of other processes).
    pub tids: Vec<u32>,
    /// Its name (the workload's).
    pub comm: String,
    /// The functions of its code.
    pub symbols: Vec<Symbol>,
    /// Its code is kernel text (an MMAP of the kernel) rather than a user
    /// executable (an MMAP2 with the file's build id).
    pub kernel: bool,
}

/// One domain's profile: its SPE buffers and what they sample.
#[derive(Clone, Debug)]
pub struct DomainProfile<'a> {
    /// `(cpu, bytes)`: each CPU's (or vCPU's) SPE data.
    pub buffers: Vec<(u32, &'a [u8])>,
    /// The processes (and kernel) the samples fall in.
    pub processes: Vec<Process>,
    /// CPUs of the machine the domain ran on (vCPUs for a VM).
    pub nr_cpus: u32,
    /// Its memory, in bytes.
    pub mem_bytes: u64,
    /// The SPE sampling interval.
    pub interval: u64,
}

/// The machine the header features describe.
fn machine(nr_cpus: u32, mem_bytes: u64) -> MachineInfo<'static> {
    MachineInfo {
        hostname: "hyperprof",
        osrelease: "6.1.0-hyperprof",
        version: "6.1",
        arch: "aarch64",
        midr: NEOVERSE_N1_MIDR,
        nr_cpus,
        mem_bytes,
    }
}

/// The file name of a symbol file for `name`.
fn symbol_file_name(name: &str) -> String {
    format!(
        "{}.{SYMBOL_FILE_EXT}",
        crate::run::artifacts::file_stem(name)
    )
}

/// Writes `file` at `path` unless an identical file is there (perf's
/// build-id cache hard-links the files it adds: an unchanged file keeps its
/// inode, a changed one gets a new one).
fn write_symbol_file(path: &Path, file: &SymbolFile) -> Result<()> {
    if std::fs::read(path).is_ok_and(|old| old == file.bytes) {
        return Ok(());
    }
    write_atomically(path, &file.bytes)
}

fn buffers<'a>(raw: &[(u32, &'a [u8])]) -> Vec<AuxBuffer<'a>> {
    raw.iter()
        .filter(|(_, d)| !d.is_empty())
        .map(|&(cpu, data)| AuxBuffer {
            cpu,
            aux_offset: 0,
            data,
        })
        .collect()
}

fn bytes_of(p: &Profile<'_>) -> Vec<u8> {
    let mut bytes = Vec::new();
    write_profile::<std::convert::Infallible>(p, &mut |b| {
        bytes.extend_from_slice(b);
        Ok(())
    })
    .unwrap_or_else(|never| match never {});
    bytes
}

/// Writes `d` as `dir/file_name` with its symbol files beside it (one per
/// user executable, named after its workload, and one `vmlinux-STEM.elf`
/// for kernel text); returns the files written.
pub fn write_domain(dir: &Path, file_name: &str, d: &DomainProfile<'_>) -> Result<Vec<PathBuf>> {
    let mut wrote = Vec::new();
    let stem = file_name.strip_suffix(".perf.data").unwrap_or(file_name);

    // Kernel text: one image holding every kernel process's functions.
    let mut kernel_syms: Vec<Symbol> = d
        .processes
        .iter()
        .filter(|p| p.kernel)
        .flat_map(|p| p.symbols.iter().cloned())
        .collect();
    kernel_syms.sort_by(|a, b| a.start.cmp(&b.start).then(a.name.cmp(&b.name)));
    kernel_syms.dedup();
    let kernel_name = symbol_file_name(&format!("vmlinux-{stem}"));
    let kernel = (!kernel_syms.is_empty()).then(|| symbol_file(&kernel_name, &kernel_syms, true));

    let mut user: Vec<(String, SymbolFile, u32)> = Vec::new();
    for p in d
        .processes
        .iter()
        .filter(|p| !p.kernel && !p.symbols.is_empty())
    {
        let name = symbol_file_name(&p.comm);
        let file = symbol_file(&name, &p.symbols, false);
        user.push((name, file, p.pid));
    }

    let mut maps: Vec<CodeMap<'_>> = Vec::new();
    if let Some(k) = &kernel {
        maps.push(CodeMap {
            pid: hyperprof_spe::perf_data::profile::KERNEL_PID,
            start: k.text_start,
            len: k.text_end - k.text_start,
            pgoff: k.text_start,
            build_id: k.build_id,
            filename: &kernel_name,
            kernel: true,
        });
    }
    for (name, f, pid) in &user {
        maps.push(CodeMap {
            pid: *pid,
            start: f.text_start,
            len: f.text_end - f.text_start,
            pgoff: TEXT_OFFSET,
            build_id: f.build_id,
            filename: name,
            kernel: false,
        });
    }
    let comms: Vec<Comm<'_>> = d
        .processes
        .iter()
        .flat_map(|p| {
            p.tids.iter().map(move |&tid| Comm {
                pid: p.pid,
                tid,
                name: &p.comm,
            })
        })
        .collect();
    let bufs = buffers(&d.buffers);
    let profile = Profile {
        event: SpeEvent {
            pmu_type: SPE_PMU_TYPE,
            config: SPE_CONFIG_TS_ENABLE,
            period: d.interval,
            exclude_user: !d.processes.iter().any(|p| !p.kernel),
            exclude_kernel: !d.processes.iter().any(|p| p.kernel),
            name: SPE_EVENT_NAME,
        },
        machine: machine(d.nr_cpus, d.mem_bytes),
        comms: &comms,
        maps: &maps,
        buffers: &bufs,
    };

    if let Some(k) = &kernel {
        let path = dir.join(&kernel_name);
        write_symbol_file(&path, k)?;
        wrote.push(path);
    }
    let mut seen = BTreeSet::new();
    for (name, f, _) in &user {
        if seen.insert(name.clone()) {
            let path = dir.join(name);
            write_symbol_file(&path, f)?;
            wrote.push(path);
        }
    }
    let path = dir.join(file_name);
    write_atomically(&path, &bytes_of(&profile))?;
    wrote.push(path);
    Ok(wrote)
}

/// What a raw trace says of itself, gathered packet by packet: the context
/// ids its records carry and whether it sampled user or kernel code.
#[derive(Clone, Debug, Default)]
pub struct RawTrace {
    contexts: BTreeSet<u32>,
    user: bool,
    kernel: bool,
}

impl RawTrace {
    /// Takes what `p` says.
    pub fn add(&mut self, p: &Packet) {
        match *p {
            Packet::Context { id, .. } => {
                self.contexts.insert(id);
            }
            Packet::Address {
                index: 0, payload, ..
            } => {
                if payload >> 61 & 3 == 0 {
                    self.user = true;
                } else {
                    self.kernel = true;
                }
            }
            _ => {}
        }
    }

    /// Calls `f` with the complete profile of `bufs` for this trace: every
    /// context id becomes a process of that pid (the samples get their pids
    /// and CPUs; their code stays unresolved, since it is unknown).
    pub fn with_profile<B: AuxSlot + Copy, R>(
        &self,
        bufs: &[B],
        pmu_type: u32,
        f: impl FnOnce(&Profile<'_, B>) -> R,
    ) -> R {
        let names: Vec<String> = self
            .contexts
            .iter()
            .map(|c| format!("context-{c}"))
            .collect();
        let comms: Vec<Comm<'_>> = self
            .contexts
            .iter()
            .zip(&names)
            .map(|(&c, name)| Comm {
                pid: c,
                tid: c,
                name,
            })
            .collect();
        let nr_cpus = bufs.iter().map(|b| b.cpu() + 1).max().unwrap_or(1);
        f(&Profile {
            event: SpeEvent {
                pmu_type,
                config: SPE_CONFIG_TS_ENABLE,
                period: 1,
                exclude_user: self.kernel && !self.user,
                exclude_kernel: self.user && !self.kernel,
                name: SPE_EVENT_NAME,
            },
            machine: machine(nr_cpus, 1 << 30),
            comms: &comms,
            maps: &[],
            buffers: bufs,
        })
    }
}

/// The bytes of a complete profile of raw buffers whose code is unknown
/// (see [`RawTrace::with_profile`]).
pub fn raw_profile_bytes(bufs: &[AuxBuffer<'_>], pmu_type: u32) -> Vec<u8> {
    let mut t = RawTrace::default();
    for b in bufs {
        for item in DumpWalker::new(b.data, 0) {
            if let Ok(p) = item.packet {
                t.add(&p);
            }
        }
    }
    // A closure: `bytes_of` itself is not general enough over the profile's
    // two lifetimes.
    #[allow(clippy::redundant_closure)]
    t.with_profile(bufs, pmu_type, |p| bytes_of(p))
}
