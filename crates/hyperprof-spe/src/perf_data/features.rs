//! The header features of a complete SPE profile (perf's
//! `tools/perf/util/header.c` formats): after the data section, one
//! `{offset, size}` per feature bit set, in ascending bit order, then each
//! feature's bytes. Strings are a u32 length (the string with its NUL,
//! rounded up to 64) and the NUL-padded bytes.

use core::fmt::Write as _;

use super::profile::{
    attr, auxtrace_offsets, clip, measure, padded, put_str, CodeMap, Profile, Sink, BUILD_ID_LEN,
    KERNEL_DSO, KERNEL_PID, MAX_FILENAME, MISC_KERNEL, MISC_USER, SPE_EVENT_ID,
};
use super::{put32, put64, AuxSlot, ATTR_LEN, AUXTRACE_LEN};

/// HEADER_BUILD_ID.
pub const FEAT_BUILD_ID: u32 = 2;
/// HEADER_HOSTNAME.
pub const FEAT_HOSTNAME: u32 = 3;
/// HEADER_OSRELEASE.
pub const FEAT_OSRELEASE: u32 = 4;
/// HEADER_VERSION.
pub const FEAT_VERSION: u32 = 5;
/// HEADER_ARCH.
pub const FEAT_ARCH: u32 = 6;
/// HEADER_NRCPUS.
pub const FEAT_NRCPUS: u32 = 7;
/// HEADER_CPUID.
pub const FEAT_CPUID: u32 = 9;
/// HEADER_TOTAL_MEM.
pub const FEAT_TOTAL_MEM: u32 = 10;
/// HEADER_EVENT_DESC.
pub const FEAT_EVENT_DESC: u32 = 12;
/// HEADER_CPU_TOPOLOGY.
pub const FEAT_CPU_TOPOLOGY: u32 = 13;
/// HEADER_NUMA_TOPOLOGY.
pub const FEAT_NUMA_TOPOLOGY: u32 = 14;
/// HEADER_AUXTRACE (the AUXTRACE index).
pub const FEAT_AUXTRACE: u32 = 18;
/// HEADER_MEM_TOPOLOGY.
pub const FEAT_MEM_TOPOLOGY: u32 = 22;

/// The features written, in file order (ascending bits).
pub const FEATURES: [u32; 13] = [
    FEAT_BUILD_ID,
    FEAT_HOSTNAME,
    FEAT_OSRELEASE,
    FEAT_VERSION,
    FEAT_ARCH,
    FEAT_NRCPUS,
    FEAT_CPUID,
    FEAT_TOTAL_MEM,
    FEAT_EVENT_DESC,
    FEAT_CPU_TOPOLOGY,
    FEAT_NUMA_TOPOLOGY,
    FEAT_AUXTRACE,
    FEAT_MEM_TOPOLOGY,
];

/// PERF_RECORD_MISC_BUILD_ID_SIZE: the entry's size byte is valid.
const MISC_BUILD_ID_SIZE: u16 = 1 << 15;
/// Bytes of a BUILD_ID entry before its name.
const BUILD_ID_ENTRY_LEN: usize = 36;
/// Memory block size written in MEM_TOPOLOGY.
const MEM_BLOCK: u64 = 128 << 20;

/// The header's feature bitmap (256 bits).
pub fn bitmap() -> [u64; 4] {
    let mut b = [0u64; 4];
    for f in FEATURES {
        b[(f / 64) as usize] |= 1 << (f % 64);
    }
    b
}

/// A small text buffer for numbers and CPU lists.
struct Text {
    buf: [u8; 64],
    len: usize,
}

impl Text {
    fn new() -> Self {
        Text {
            buf: [0; 64],
            len: 0,
        }
    }
    fn as_str(&self) -> &str {
        // Only `write_str` fills the buffer, with whole UTF-8 strings.
        core::str::from_utf8(&self.buf[..self.len]).unwrap_or("")
    }
}

impl core::fmt::Write for Text {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let end = self.len + s.len();
        if end > self.buf.len() {
            return Err(core::fmt::Error);
        }
        self.buf[self.len..end].copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

/// "0" or "0-N": the CPU list of `n` CPUs from `first`.
fn cpu_list(first: u32, n: u32) -> Text {
    let mut t = Text::new();
    // 64 bytes hold two u32s and a dash.
    let _ = if n <= 1 {
        write!(t, "{first}")
    } else {
        write!(t, "{first}-{}", first + n - 1)
    };
    t
}

fn string<E>(out: &mut Sink<'_, E>, s: &str) -> Result<(), E> {
    let len = padded(s.len(), 64);
    out(&(len as u32).to_le_bytes())?;
    put_str(out, s, len)
}

fn u32s<E>(out: &mut Sink<'_, E>, v: &[u32]) -> Result<(), E> {
    for x in v {
        out(&x.to_le_bytes())?;
    }
    Ok(())
}

fn u64s<E>(out: &mut Sink<'_, E>, v: &[u64]) -> Result<(), E> {
    for x in v {
        out(&x.to_le_bytes())?;
    }
    Ok(())
}

fn build_id_entry<E>(out: &mut Sink<'_, E>, m: &CodeMap<'_>) -> Result<(), E> {
    let (misc, name) = if m.kernel {
        (MISC_KERNEL, KERNEL_DSO)
    } else {
        (MISC_USER, clip(m.filename, MAX_FILENAME))
    };
    let name_len = padded(name.len(), 64);
    let mut e = [0u8; BUILD_ID_ENTRY_LEN];
    e[4..6].copy_from_slice(&(misc | MISC_BUILD_ID_SIZE).to_le_bytes());
    e[6..8].copy_from_slice(&((BUILD_ID_ENTRY_LEN + name_len) as u16).to_le_bytes());
    put32(&mut e, 8, KERNEL_PID); // the host machine
    e[12..12 + BUILD_ID_LEN].copy_from_slice(&m.build_id);
    e[12 + BUILD_ID_LEN] = BUILD_ID_LEN as u8;
    out(&e)?;
    put_str(out, name, name_len)
}

fn feature<B: AuxSlot, E>(p: &Profile<'_, B>, f: u32, out: &mut Sink<'_, E>) -> Result<(), E> {
    let m = &p.machine;
    let n = m.nr_cpus.max(1);
    match f {
        FEAT_BUILD_ID => {
            // One entry per file: a DSO mapped by several processes once.
            for (i, map) in p.maps.iter().enumerate() {
                let seen = p.maps[..i]
                    .iter()
                    .any(|o| o.build_id == map.build_id && o.kernel == map.kernel);
                if !seen {
                    build_id_entry(out, map)?;
                }
            }
            Ok(())
        }
        FEAT_HOSTNAME => string(out, m.hostname),
        FEAT_OSRELEASE => string(out, m.osrelease),
        FEAT_VERSION => string(out, m.version),
        FEAT_ARCH => string(out, m.arch),
        FEAT_NRCPUS => u32s(out, &[n, n]),
        FEAT_CPUID => {
            let mut t = Text::new();
            let _ = write!(t, "0x{:016x}", m.midr);
            string(out, t.as_str())
        }
        FEAT_TOTAL_MEM => u64s(out, &[m.mem_bytes >> 10]),
        FEAT_EVENT_DESC => {
            u32s(out, &[1, ATTR_LEN as u32])?;
            out(&attr(&p.event))?;
            u32s(out, &[1])?;
            string(out, p.event.name)?;
            u64s(out, &[SPE_EVENT_ID])
        }
        FEAT_CPU_TOPOLOGY => {
            // One package (and die) of single-threaded cores.
            u32s(out, &[1])?;
            string(out, cpu_list(0, n).as_str())?;
            u32s(out, &[n])?;
            for cpu in 0..n {
                string(out, cpu_list(cpu, 1).as_str())?;
            }
            for cpu in 0..n {
                u32s(out, &[cpu, 0])?; // core id, socket id
            }
            u32s(out, &[1])?;
            string(out, cpu_list(0, n).as_str())?;
            for _ in 0..n {
                u32s(out, &[0])?; // die id
            }
            Ok(())
        }
        FEAT_NUMA_TOPOLOGY => {
            u32s(out, &[1, 0])?;
            u64s(out, &[m.mem_bytes >> 10, m.mem_bytes >> 11])?;
            string(out, cpu_list(0, n).as_str())
        }
        FEAT_AUXTRACE => {
            u64s(out, &[p.buffers.len() as u64])?;
            for offset in auxtrace_offsets(p) {
                u64s(out, &[offset as u64, AUXTRACE_LEN as u64])?;
            }
            Ok(())
        }
        FEAT_MEM_TOPOLOGY => {
            let blocks = m.mem_bytes.div_ceil(MEM_BLOCK).max(1);
            u64s(out, &[1, MEM_BLOCK, 1, 0, blocks, blocks])?;
            let mut left = blocks;
            while left > 0 {
                let bits = left.min(64);
                u64s(
                    out,
                    &[if bits == 64 {
                        u64::MAX
                    } else {
                        (1 << bits) - 1
                    }],
                )?;
                left -= bits;
            }
            Ok(())
        }
        _ => Ok(()),
    }
}

/// Writes the feature section of `p`, which starts at file offset `at`.
pub(super) fn write<B: AuxSlot, E>(
    p: &Profile<'_, B>,
    at: usize,
    out: &mut Sink<'_, E>,
) -> Result<(), E> {
    let mut offset = at + 16 * FEATURES.len();
    for f in FEATURES {
        let size = measure(&mut |s| feature(p, f, s));
        let mut e = [0u8; 16];
        put64(&mut e, 0, offset as u64);
        put64(&mut e, 8, size as u64);
        out(&e)?;
        offset += size;
    }
    for f in FEATURES {
        feature(p, f, out)?;
    }
    Ok(())
}
