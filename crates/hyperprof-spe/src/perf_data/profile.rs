//! Writing a complete SPE profile: the perf.data file `perf record -e
//! arm_spe_0//` would leave, which `perf report`, `perf script`, `perf mem`
//! and `perf c2c` open, not just `perf report -D`.
//!
//! What perf 6.1 needs (the project's PERF-DATA.md, established by
//! experiment): an attr with `sample_id_all` and the sample type
//! [`SPE_SAMPLE_TYPE`]; records in the order TIME_CONV, COMM per process
//! and thread, MMAP (kernel) / MMAP2 with build id (user code),
//! AUXTRACE_INFO, one AUXTRACE record per buffer with its CPU's own queue
//! index; and the header features of [`super::features`]. Every record size
//! is a multiple of 8 and every string is NUL-padded to 8.
//!
//! The file is produced in one pass through a byte sink and needs no
//! allocation: the sizes of the data and feature sections are computed by
//! running the same writers into a counting sink first.

use super::features;
use super::{
    aux_padding, put32, put64, AuxBuffer, AuxSlot, Piece, ATTR_LEN, AUXTRACE_LEN,
    AUXTRACE_TYPE_ARM_SPE, FILE_ATTR_LEN, FILE_HEADER_LEN, MAGIC, RECORD_AUXTRACE,
    RECORD_AUXTRACE_INFO, SPE_INFO_LEN,
};

/// PERF_RECORD_MMAP.
pub const RECORD_MMAP: u32 = 1;
/// PERF_RECORD_COMM.
pub const RECORD_COMM: u32 = 3;
/// PERF_RECORD_MMAP2.
pub const RECORD_MMAP2: u32 = 10;
/// PERF_RECORD_TIME_CONV.
pub const RECORD_TIME_CONV: u32 = 79;
/// Size of a PERF_RECORD_TIME_CONV with the `time_cycles` extension.
pub const TIME_CONV_LEN: usize = 56;

/// PERF_RECORD_MISC_KERNEL.
pub const MISC_KERNEL: u16 = 1;
/// PERF_RECORD_MISC_USER.
pub const MISC_USER: u16 = 2;
/// PERF_RECORD_MISC_COMM_EXEC (also PERF_RECORD_MISC_MMAP_DATA).
pub const MISC_COMM_EXEC: u16 = 1 << 13;
/// PERF_RECORD_MISC_MMAP_BUILD_ID.
pub const MISC_MMAP_BUILD_ID: u16 = 1 << 14;

/// `sample_type` of the SPE event: IP, TID, TIME, ADDR, CPU, PERIOD,
/// WEIGHT, DATA_SRC and IDENTIFIER. perf finds the event of every
/// non-sample record by its trailing IDENTIFIER.
pub const SPE_SAMPLE_TYPE: u64 = 0x1c18f;
/// Bytes of the sample-id trailer [`SPE_SAMPLE_TYPE`] gives every
/// non-sample record: pid, tid, time, cpu (and a reserved word), id.
pub const SAMPLE_ID_LEN: usize = 32;
/// The id of the SPE event (the attr's only id).
pub const SPE_EVENT_ID: u64 = 1;
/// The attr's flag bit `exclude_user`.
const ATTR_EXCLUDE_USER: u64 = 1 << 4;
/// The attr's flag bit `exclude_kernel`.
const ATTR_EXCLUDE_KERNEL: u64 = 1 << 5;
/// The attr's flag bit `exclude_hv`.
const ATTR_EXCLUDE_HV: u64 = 1 << 6;
/// The attr's flag bit `sample_id_all`.
const ATTR_SAMPLE_ID_ALL: u64 = 1 << 18;
/// arm_spe's `ts_enable` format bit (config:0).
pub const SPE_CONFIG_TS_ENABLE: u64 = 1;
/// Length of a GNU build id (SHA-1 sized).
pub const BUILD_ID_LEN: usize = 20;
/// The pid perf gives kernel mappings and the host's kernel build id.
pub const KERNEL_PID: u32 = u32::MAX;
/// The name perf gives the kernel in BUILD_ID entries.
pub const KERNEL_DSO: &str = "[kernel.kallsyms]";
/// The file name of the kernel's text mapping.
pub const KERNEL_MMAP_NAME: &str = "[kernel.kallsyms]_text";

/// A process or thread the trace names by its CONTEXT packets.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct Comm<'a> {
    /// Process id.
    pub pid: u32,
    /// Thread id (the CONTEXTIDR value of its samples).
    pub tid: u32,
    /// Its name (at most 15 bytes are meaningful to perf).
    pub name: &'a str,
}

/// A mapping of code that samples fall in.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub struct CodeMap<'a> {
    /// The owning process, or [`KERNEL_PID`] for kernel text.
    pub pid: u32,
    /// First mapped address.
    pub start: u64,
    /// Bytes mapped.
    pub len: u64,
    /// File offset of `start` (for kernel text, `start` itself).
    pub pgoff: u64,
    /// The GNU build id of the file.
    pub build_id: [u8; BUILD_ID_LEN],
    /// The file name perf shows and looks up (kernel: ignored, perf's own
    /// names are written).
    pub filename: &'a str,
    /// Kernel text (MMAP, misc KERNEL) rather than user code (MMAP2).
    pub kernel: bool,
}

/// The machine the trace describes, for the header features.
#[derive(Copy, Clone, Debug)]
pub struct MachineInfo<'a> {
    /// `uname -n`.
    pub hostname: &'a str,
    /// `uname -r`.
    pub osrelease: &'a str,
    /// perf's version string.
    pub version: &'a str,
    /// `uname -m`: "aarch64".
    pub arch: &'a str,
    /// MIDR_EL1 of the CPUs (perf's CPUID "0x%016lx").
    pub midr: u64,
    /// CPUs (all online, one socket, one NUMA node).
    pub nr_cpus: u32,
    /// Memory of the NUMA node, in bytes.
    pub mem_bytes: u64,
}

/// The SPE event.
#[derive(Copy, Clone, Debug)]
pub struct SpeEvent<'a> {
    /// Dynamic PMU type of arm_spe (AUXTRACE_INFO priv[0] equals it).
    pub pmu_type: u32,
    /// `perf_event_attr.config` (arm_spe format bits).
    pub config: u64,
    /// The sampling interval.
    pub period: u64,
    /// User code was not sampled.
    pub exclude_user: bool,
    /// Kernel code was not sampled.
    pub exclude_kernel: bool,
    /// The event's name, e.g. "arm_spe_0/ts_enable=1/".
    pub name: &'a str,
}

/// Everything a complete SPE perf.data file holds. The buffers are
/// [`AuxBuffer`]s with their bytes, or any [`AuxSlot`] whose bytes
/// [`write_profile_pieces`] asks the caller for.
#[derive(Copy, Clone, Debug)]
pub struct Profile<'a, B = AuxBuffer<'a>> {
    /// The event.
    pub event: SpeEvent<'a>,
    /// The machine.
    pub machine: MachineInfo<'a>,
    /// Processes and threads, each written once as a COMM.
    pub comms: &'a [Comm<'a>],
    /// Code mappings.
    pub maps: &'a [CodeMap<'a>],
    /// The SPE buffers, each an AUXTRACE record on its CPU's queue.
    pub buffers: &'a [B],
}

impl<'a> Profile<'a> {
    /// The profile of raw `buffers` alone: the SPE event of PMU type
    /// `pmu_type`, no process or mapping, a machine with a CPU for every
    /// buffer's (what a trace of unknown origin can say of itself).
    pub fn bare(buffers: &'a [AuxBuffer<'a>], pmu_type: u32) -> Profile<'a> {
        Profile {
            event: SpeEvent {
                pmu_type,
                config: SPE_CONFIG_TS_ENABLE,
                period: 1,
                exclude_user: false,
                exclude_kernel: false,
                name: "arm_spe_0//",
            },
            machine: MachineInfo {
                hostname: "hyperprof",
                osrelease: "unknown",
                version: "unknown",
                arch: "aarch64",
                midr: 0,
                nr_cpus: buffers.iter().map(|b| b.cpu + 1).max().unwrap_or(1),
                mem_bytes: 1 << 30,
            },
            comms: &[],
            maps: &[],
            buffers,
        }
    }
}

/// A byte sink: the caller's output, or a counter.
pub(super) type Sink<'s, E> = dyn FnMut(&[u8]) -> Result<(), E> + 's;

/// The length of `s` with its NUL, rounded up to `align`.
pub(super) const fn padded(len: usize, align: usize) -> usize {
    (len + 1).div_ceil(align) * align
}

/// Writes `s` NUL-padded to `total` bytes (`total > s.len()`).
pub(super) fn put_str<E>(out: &mut Sink<'_, E>, s: &str, total: usize) -> Result<(), E> {
    out(s.as_bytes())?;
    let mut left = total - s.len();
    let zeros = [0u8; 64];
    while left > 0 {
        let n = left.min(zeros.len());
        out(&zeros[..n])?;
        left -= n;
    }
    Ok(())
}

/// Clips `s` to at most `max` bytes on a character boundary.
pub(super) fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

fn header(ty: u32, misc: u16, size: usize) -> [u8; 8] {
    let mut h = [0u8; 8];
    put32(&mut h, 0, ty);
    h[4..6].copy_from_slice(&misc.to_le_bytes());
    h[6..8].copy_from_slice(&(size as u16).to_le_bytes());
    h
}

fn sample_id(pid: u32, tid: u32) -> [u8; SAMPLE_ID_LEN] {
    let mut s = [0u8; SAMPLE_ID_LEN];
    put32(&mut s, 0, pid);
    put32(&mut s, 4, tid);
    // time 0: before the first SPE timestamp; cpu 0.
    put64(&mut s, 24, SPE_EVENT_ID);
    s
}

/// The `perf_event_attr` of the SPE event.
pub(super) fn attr(ev: &SpeEvent<'_>) -> [u8; ATTR_LEN] {
    let mut a = [0u8; ATTR_LEN];
    put32(&mut a, 0, ev.pmu_type);
    put32(&mut a, 4, ATTR_LEN as u32);
    put64(&mut a, 8, ev.config);
    put64(&mut a, 16, ev.period.max(1));
    put64(&mut a, 24, SPE_SAMPLE_TYPE);
    let mut flags = ATTR_SAMPLE_ID_ALL | ATTR_EXCLUDE_HV;
    if ev.exclude_user {
        flags |= ATTR_EXCLUDE_USER;
    }
    if ev.exclude_kernel {
        flags |= ATTR_EXCLUDE_KERNEL;
    }
    put64(&mut a, 40, flags);
    a
}

fn time_conv<E>(out: &mut Sink<'_, E>) -> Result<(), E> {
    // The identity: perf time equals the SPE timestamp (the generic
    // counter). time_mult must not be 0 (perf divides by it).
    let mut r = [0u8; TIME_CONV_LEN];
    r[..8].copy_from_slice(&header(RECORD_TIME_CONV, 0, TIME_CONV_LEN));
    put64(&mut r, 8, 0); // time_shift
    put64(&mut r, 16, 1); // time_mult
    put64(&mut r, 24, 0); // time_zero
    put64(&mut r, 32, 0); // time_cycles
    put64(&mut r, 40, u64::MAX); // time_mask
    r[48] = 1; // cap_user_time_zero
    out(&r)
}

fn comm<E>(out: &mut Sink<'_, E>, c: &Comm<'_>) -> Result<(), E> {
    let name = clip(c.name, 15);
    let name_len = padded(name.len(), 8);
    let size = 16 + name_len + SAMPLE_ID_LEN;
    let mut h = [0u8; 16];
    h[..8].copy_from_slice(&header(RECORD_COMM, MISC_COMM_EXEC, size));
    put32(&mut h, 8, c.pid);
    put32(&mut h, 12, c.tid);
    out(&h)?;
    put_str(out, name, name_len)?;
    out(&sample_id(c.pid, c.tid))
}

/// The longest file name a mapping record carries.
pub(super) const MAX_FILENAME: usize = 4000;

fn mmap<E>(out: &mut Sink<'_, E>, m: &CodeMap<'_>) -> Result<(), E> {
    if m.kernel {
        let name_len = padded(KERNEL_MMAP_NAME.len(), 8);
        let size = 40 + name_len + SAMPLE_ID_LEN;
        let mut h = [0u8; 40];
        h[..8].copy_from_slice(&header(RECORD_MMAP, MISC_KERNEL, size));
        put32(&mut h, 8, KERNEL_PID);
        put32(&mut h, 12, 0);
        put64(&mut h, 16, m.start);
        put64(&mut h, 24, m.len);
        put64(&mut h, 32, m.pgoff);
        out(&h)?;
        put_str(out, KERNEL_MMAP_NAME, name_len)?;
        return out(&sample_id(KERNEL_PID, 0));
    }
    let name = clip(m.filename, MAX_FILENAME);
    let name_len = padded(name.len(), 8);
    let size = 72 + name_len + SAMPLE_ID_LEN;
    let mut h = [0u8; 72];
    h[..8].copy_from_slice(&header(RECORD_MMAP2, MISC_USER | MISC_MMAP_BUILD_ID, size));
    put32(&mut h, 8, m.pid);
    put32(&mut h, 12, m.pid);
    put64(&mut h, 16, m.start);
    put64(&mut h, 24, m.len);
    put64(&mut h, 32, m.pgoff);
    h[40] = BUILD_ID_LEN as u8;
    h[44..44 + BUILD_ID_LEN].copy_from_slice(&m.build_id);
    put32(&mut h, 64, 5); // PROT_READ | PROT_EXEC
    put32(&mut h, 68, 2); // MAP_PRIVATE
    out(&h)?;
    put_str(out, name, name_len)?;
    out(&sample_id(m.pid, m.pid))
}

fn auxtrace_info<E>(out: &mut Sink<'_, E>, pmu_type: u32) -> Result<(), E> {
    let mut info = [0u8; SPE_INFO_LEN];
    info[..8].copy_from_slice(&header(RECORD_AUXTRACE_INFO, 0, SPE_INFO_LEN));
    put32(&mut info, 8, AUXTRACE_TYPE_ARM_SPE);
    put64(&mut info, 16, pmu_type as u64);
    put64(&mut info, 24, 1); // per-cpu mmaps
    out(&info)
}

/// The AUXTRACE record of buffer number `reference`.
fn auxtrace(b: &impl AuxSlot, reference: usize) -> [u8; AUXTRACE_LEN] {
    let padded = b.data_len() + aux_padding(b.data_len());
    let mut r = [0u8; AUXTRACE_LEN];
    r[..8].copy_from_slice(&header(RECORD_AUXTRACE, 0, AUXTRACE_LEN));
    put64(&mut r, 8, padded as u64);
    put64(&mut r, 16, b.aux_offset());
    put64(&mut r, 24, reference as u64);
    put32(&mut r, 32, b.cpu()); // idx: one queue per CPU
    put32(&mut r, 36, u32::MAX);
    put32(&mut r, 40, b.cpu());
    r
}

/// The records before the first AUXTRACE record.
fn prologue<B, E>(p: &Profile<'_, B>, out: &mut Sink<'_, E>) -> Result<(), E> {
    time_conv(out)?;
    for c in p.comms {
        comm(out, c)?;
    }
    for m in p.maps {
        mmap(out, m)?;
    }
    auxtrace_info(out, p.event.pmu_type)
}

/// Bytes `f` writes.
pub(super) fn measure(f: &mut dyn FnMut(&mut Sink<'_, ()>) -> Result<(), ()>) -> usize {
    let mut n = 0usize;
    let mut count = |b: &[u8]| -> Result<(), ()> {
        n += b.len();
        Ok(())
    };
    // A counter cannot fail.
    let _ = f(&mut count);
    n
}

/// Where the data section starts.
pub(super) const DATA_OFFSET: usize = FILE_HEADER_LEN + FILE_ATTR_LEN + 8;

/// File offsets of the AUXTRACE records of `p`, in order.
pub(super) fn auxtrace_offsets<'p, B: AuxSlot>(
    p: &'p Profile<'p, B>,
) -> impl Iterator<Item = usize> + 'p {
    let mut at = DATA_OFFSET + measure(&mut |s| prologue(p, s));
    p.buffers.iter().map(move |b| {
        let this = at;
        at += AUXTRACE_LEN + b.data_len() + aux_padding(b.data_len());
        this
    })
}

/// The file offset at which each buffer's raw bytes start, in order (just
/// past its AUXTRACE record).
pub fn buffer_data_offsets<'p, B: AuxSlot>(
    p: &'p Profile<'p, B>,
) -> impl Iterator<Item = usize> + 'p {
    auxtrace_offsets(p).map(|at| at + AUXTRACE_LEN)
}

/// Writes `p` as a perf.data file through `out`.
pub fn write_profile<E>(p: &Profile<'_>, out: &mut Sink<'_, E>) -> Result<(), E> {
    write_profile_pieces(p, &mut |piece| match piece {
        Piece::Bytes(b) => out(b),
        Piece::Buffer(i) => out(p.buffers[i].data),
    })
}

/// [`write_profile`] for buffers whose bytes the caller supplies when asked
/// (a [`Piece::Buffer`]), so that files of any size are written in bounded
/// memory.
pub fn write_profile_pieces<B: AuxSlot, E>(
    p: &Profile<'_, B>,
    out_piece: &mut dyn FnMut(Piece<'_>) -> Result<(), E>,
) -> Result<(), E> {
    let data_size = measure(&mut |s| prologue(p, s))
        + p.buffers
            .iter()
            .map(|b| AUXTRACE_LEN + b.data_len() + aux_padding(b.data_len()))
            .sum::<usize>();
    let ids_offset = FILE_HEADER_LEN + FILE_ATTR_LEN;

    let mut h = [0u8; FILE_HEADER_LEN];
    h[..8].copy_from_slice(&MAGIC);
    put64(&mut h, 8, FILE_HEADER_LEN as u64);
    put64(&mut h, 16, FILE_ATTR_LEN as u64);
    put64(&mut h, 24, FILE_HEADER_LEN as u64);
    put64(&mut h, 32, FILE_ATTR_LEN as u64);
    put64(&mut h, 40, DATA_OFFSET as u64);
    put64(&mut h, 48, data_size as u64);
    for (i, word) in features::bitmap().iter().enumerate() {
        put64(&mut h, 72 + 8 * i, *word);
    }
    out_piece(Piece::Bytes(&h))?;

    let mut a = [0u8; FILE_ATTR_LEN + 8];
    a[..ATTR_LEN].copy_from_slice(&attr(&p.event));
    put64(&mut a, ATTR_LEN, ids_offset as u64);
    put64(&mut a, ATTR_LEN + 8, 8);
    put64(&mut a, FILE_ATTR_LEN, SPE_EVENT_ID);
    out_piece(Piece::Bytes(&a))?;

    prologue(p, &mut |b: &[u8]| out_piece(Piece::Bytes(b)))?;
    for (reference, b) in p.buffers.iter().enumerate() {
        out_piece(Piece::Bytes(&auxtrace(b, reference)))?;
        out_piece(Piece::Buffer(reference))?;
        out_piece(Piece::Bytes(&[0u8; 8][..aux_padding(b.data_len())]))?;
    }
    features::write(p, DATA_OFFSET + data_size, &mut |b: &[u8]| {
        out_piece(Piece::Bytes(b))
    })
}

#[cfg(test)]
mod tests {
    use super::super::{features, PerfData};
    use super::*;

    fn profile_bytes(buffers: &[AuxBuffer<'_>]) -> Vec<u8> {
        let comms = [
            Comm {
                pid: 1000,
                tid: 1000,
                name: "mix",
            },
            Comm {
                pid: 1000,
                tid: 1001,
                name: "a name longer than perf's sixteen bytes",
            },
        ];
        let maps = [
            CodeMap {
                pid: KERNEL_PID,
                start: 0xffff_8000_1000_0000,
                len: 0x10_0000,
                pgoff: 0xffff_8000_1000_0000,
                build_id: [1; BUILD_ID_LEN],
                filename: "vmlinux",
                kernel: true,
            },
            CodeMap {
                pid: 1000,
                start: 0xaaaa_0050_0000,
                len: 0x1000,
                pgoff: 0x1000,
                build_id: [2; BUILD_ID_LEN],
                filename: "mix.elf",
                kernel: false,
            },
        ];
        let p = Profile {
            event: SpeEvent {
                pmu_type: 8,
                config: SPE_CONFIG_TS_ENABLE,
                period: 1024,
                exclude_user: false,
                exclude_kernel: false,
                name: "arm_spe_0/ts_enable=1/",
            },
            machine: MachineInfo {
                hostname: "h",
                osrelease: "r",
                version: "v",
                arch: "aarch64",
                midr: 0x410f_d0c0,
                nr_cpus: 4,
                mem_bytes: 1 << 30,
            },
            comms: &comms,
            maps: &maps,
            buffers,
        };
        let mut v = Vec::new();
        write_profile::<()>(&p, &mut |b| {
            v.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        v
    }

    fn u64_at(b: &[u8], at: usize) -> u64 {
        u64::from_le_bytes(b[at..at + 8].try_into().unwrap())
    }

    #[test]
    fn records_are_in_order_aligned_and_buffers_read_back() {
        let a = [0x01u8; 13];
        let b = [0x00u8, 0x01];
        let bufs = [
            AuxBuffer {
                cpu: 2,
                aux_offset: 0,
                data: &a,
            },
            AuxBuffer {
                cpu: 3,
                aux_offset: 0,
                data: &b,
            },
        ];
        let file = profile_bytes(&bufs);
        let got: Vec<_> = PerfData::parse(&file)
            .unwrap()
            .aux_traces()
            .map(|t| t.unwrap())
            .collect();
        assert_eq!(got.len(), 2);
        assert_eq!((got[0].cpu, got[0].idx, got[1].idx), (2, 2, 3));
        assert_eq!(&got[0].data[..13], &a);

        // The records of the data section, walked by their sizes.
        let (start, size) = (u64_at(&file, 40) as usize, u64_at(&file, 48) as usize);
        let mut at = start;
        let mut types = Vec::new();
        while at < start + size {
            let ty = u32::from_le_bytes(file[at..at + 4].try_into().unwrap());
            let len = u16::from_le_bytes([file[at + 6], file[at + 7]]) as usize;
            assert_eq!(len % 8, 0, "record of type {ty} at {at:#x}");
            types.push(ty);
            at += len;
            if ty == RECORD_AUXTRACE {
                at += u64_at(&file, at - len + 8) as usize;
            }
        }
        assert_eq!(at, start + size);
        assert_eq!(
            types,
            [
                RECORD_TIME_CONV,
                RECORD_COMM,
                RECORD_COMM,
                RECORD_MMAP,
                RECORD_MMAP2,
                RECORD_AUXTRACE_INFO,
                RECORD_AUXTRACE,
                RECORD_AUXTRACE,
            ]
        );
        // The attr: sample_id_all and the sample type perf needs.
        assert_eq!(u64_at(&file, FILE_HEADER_LEN + 24), SPE_SAMPLE_TYPE);
        assert_ne!(u64_at(&file, FILE_HEADER_LEN + 40) & ATTR_SAMPLE_ID_ALL, 0);
    }

    #[test]
    fn long_names_are_clipped_so_record_sizes_hold() {
        let long = "a".repeat(70_000);
        let maps = [CodeMap {
            pid: 7,
            start: 0x1000,
            len: 0x1000,
            pgoff: 0x1000,
            build_id: [3; BUILD_ID_LEN],
            filename: &long,
            kernel: false,
        }];
        let comms = [Comm {
            pid: 7,
            tid: 7,
            name: &long,
        }];
        let data = [0u8; 8];
        let bufs = [AuxBuffer {
            cpu: 0,
            aux_offset: 0,
            data: &data,
        }];
        let p = Profile {
            event: SpeEvent {
                pmu_type: 8,
                config: 0,
                period: 1,
                exclude_user: false,
                exclude_kernel: true,
                name: &long,
            },
            machine: MachineInfo {
                hostname: "h",
                osrelease: "r",
                version: "v",
                arch: "aarch64",
                midr: 0,
                nr_cpus: 1,
                mem_bytes: 0,
            },
            comms: &comms,
            maps: &maps,
            buffers: &bufs,
        };
        let mut file = Vec::new();
        write_profile::<()>(&p, &mut |b| {
            file.extend_from_slice(b);
            Ok(())
        })
        .unwrap();
        let traces: Vec<_> = PerfData::parse(&file).unwrap().aux_traces().collect();
        assert_eq!(traces.len(), 1);
        assert!(traces[0].is_ok());
    }

    #[test]
    fn features_follow_the_data_and_reach_the_end() {
        let data = [0u8; 8];
        let file = profile_bytes(&[AuxBuffer {
            cpu: 0,
            aux_offset: 0,
            data: &data,
        }]);
        let table = (u64_at(&file, 40) + u64_at(&file, 48)) as usize;
        let bits = features::bitmap();
        let n: u32 = bits.iter().map(|w| w.count_ones()).sum();
        assert_eq!(n as usize, features::FEATURES.len());
        let mut expect = table + 16 * n as usize;
        for i in 0..n as usize {
            let (off, size) = (
                u64_at(&file, table + 16 * i),
                u64_at(&file, table + 16 * i + 8),
            );
            assert_eq!(off as usize, expect);
            assert!(size > 0);
            expect += size as usize;
        }
        assert_eq!(expect, file.len());
        // The AUXTRACE index points at the AUXTRACE record.
        let aux_feature = features::FEATURES
            .iter()
            .position(|&f| f == features::FEAT_AUXTRACE)
            .unwrap();
        let at = u64_at(&file, table + 16 * aux_feature) as usize;
        assert_eq!(u64_at(&file, at), 1);
        let record = u64_at(&file, at + 8) as usize;
        assert_eq!(
            u32::from_le_bytes(file[record..record + 4].try_into().unwrap()),
            RECORD_AUXTRACE
        );
        assert_eq!(u64_at(&file, at + 16), AUXTRACE_LEN as u64);
    }
}
