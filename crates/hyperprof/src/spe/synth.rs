//! `hyperprof spe synth`: a deterministic synthetic SPE trace with the shape
//! of a real one (named functions, loads and stores with data addresses,
//! branches with targets, latencies, events, timestamps), for benchmarks,
//! interoperability tests and trying the tools without hardware.
//!
//! The simulated machine produces real traces; this is the codec's own
//! generator and makes no claim about any workload.

use hyperprof_spe::packet::event;
use hyperprof_spe::record::{CodeAddress, OpType, PhysAddr, MAX_RECORD_LEN};
use hyperprof_spe::{OpClass, Record};

use hyperprof_sim::op::Symbol;

use crate::error::{Error, Result};
use crate::rng::Rng;

/// A code region records are drawn from.
struct Function {
    name: &'static str,
    start: u64,
    len: u64,
    el: u8,
    weight: u64,
}

const FUNCTIONS: &[Function] = &[
    // User space (EL0), a typical PIE text segment.
    Function {
        name: "parse_request",
        start: 0x0000_aaaa_c000_1000,
        len: 0x800,
        el: 0,
        weight: 40,
    },
    Function {
        name: "hash_insert",
        start: 0x0000_aaaa_c000_2400,
        len: 0x300,
        el: 0,
        weight: 25,
    },
    Function {
        name: "memcpy",
        start: 0x0000_ffff_9a00_0000,
        len: 0x1200,
        el: 0,
        weight: 15,
    },
    // Kernel (EL1), addresses bits 55:0 of the sign-extended VA.
    Function {
        name: "copy_to_user",
        start: 0x00ff_8000_1029_d000,
        len: 0x600,
        el: 1,
        weight: 15,
    },
    Function {
        name: "handle_irq",
        start: 0x00ff_8000_1100_4000,
        len: 0x200,
        el: 1,
        weight: 5,
    },
];

/// The pid of the synthetic user process (its CONTEXT value).
pub const USER_PID: u32 = 4242;

/// The functions of the synthetic trace as three code files: the
/// program, its shared library and the kernel (each sorted by address).
pub fn code_files() -> [(&'static str, Vec<Symbol>); 3] {
    let syms = |pick: &dyn Fn(&Function) -> bool| -> Vec<Symbol> {
        FUNCTIONS
            .iter()
            .filter(|f| pick(f))
            .map(|f| Symbol {
                name: f.name.to_string(),
                start: hyperprof_spe::packet::address::sign_extend(f.start),
                end: hyperprof_spe::packet::address::sign_extend(f.start) + f.len,
            })
            .collect()
    };
    [
        (
            "synth-app",
            syms(&|f| f.el == 0 && f.start < 0x0000_f000_0000_0000),
        ),
        (
            "libsynth.so",
            syms(&|f| f.el == 0 && f.start >= 0x0000_f000_0000_0000),
        ),
        ("synth-kernel", syms(&|f| f.el != 0)),
    ]
}

/// Writes `raw` (a trace [`synth`] made) as `dir/name` with its symbol
/// files beside it, so that perf names the synthetic functions; returns
/// the files written.
pub fn write_profile(
    dir: &std::path::Path,
    name: &str,
    raw: &[u8],
) -> Result<Vec<std::path::PathBuf>> {
    let [(app, app_syms), (lib, lib_syms), (kernel, kernel_syms)] = code_files();
    let process =
        |comm: &str, symbols: Vec<Symbol>, tids: Vec<u32>, kernel: bool| crate::perf::Process {
            pid: if kernel { 0 } else { USER_PID },
            tids,
            comm: comm.to_string(),
            symbols,
            kernel,
        };
    let d = crate::perf::DomainProfile {
        buffers: vec![(0, raw)],
        processes: vec![
            process(app, app_syms, vec![USER_PID], false),
            process(lib, lib_syms, Vec::new(), false),
            process(kernel, kernel_syms, vec![0], true),
        ],
        nr_cpus: 1,
        mem_bytes: 1 << 30,
        interval: 1024,
    };
    crate::perf::write_domain(dir, name, &d)
}

/// Parameters of a synthetic trace.
#[derive(Debug, Clone, Copy)]
pub struct SynthConfig {
    /// Records to generate.
    pub records: u64,
    /// Bytes per record, padded with PAD (at least the longest record).
    pub record_size: usize,
    /// PRNG seed.
    pub seed: u64,
}

/// The longest record this generator emits.
const LONGEST: usize = 64;

/// Generates the trace.
pub fn synth(cfg: &SynthConfig) -> Result<Vec<u8>> {
    if cfg.record_size < LONGEST || cfg.record_size > 4096 {
        return Err(Error::Usage(format!(
            "--record-size {} is outside {LONGEST}..=4096 bytes",
            cfg.record_size
        )));
    }
    let total = (cfg.records as usize)
        .checked_mul(cfg.record_size)
        .filter(|&t| t <= 1 << 34)
        .ok_or_else(|| {
            Error::Usage(format!(
                "{} records of {} bytes is more than 16 GiB",
                cfg.records, cfg.record_size
            ))
        })?;
    let mut out = vec![0u8; total];
    let mut rng = Rng::new(cfg.seed);
    let weight_sum: u64 = FUNCTIONS.iter().map(|f| f.weight).sum();
    let mut ts: u64 = 1_000_000;
    for chunk in out.chunks_exact_mut(cfg.record_size) {
        let r = one_record(&mut rng, weight_sum, &mut ts);
        let mut tmp = [0u8; MAX_RECORD_LEN];
        let n = r.encode(&mut tmp).expect("MAX_RECORD_LEN holds any record");
        debug_assert!(n <= LONGEST);
        chunk[..n].copy_from_slice(&tmp[..n]);
    }
    Ok(out)
}

fn one_record(rng: &mut Rng, weight_sum: u64, ts: &mut u64) -> Record {
    let mut pick = rng.below(weight_sum);
    let f = FUNCTIONS
        .iter()
        .find(|f| {
            let hit = pick < f.weight;
            pick = pick.saturating_sub(f.weight);
            hit
        })
        .unwrap_or(&FUNCTIONS[0]);
    let pc = f.start + 4 * rng.below(f.len / 4);
    *ts += 64 + rng.below(4096);
    let mut r = Record {
        pc: Some(CodeAddress {
            addr: pc,
            el: f.el,
            ns: true,
        }),
        context_el1: Some(if f.el == 0 { 4242 } else { 0 }),
        timestamp: Some(*ts),
        ..Record::default()
    };
    let mut ev = 1u64 << event::RETIRED;
    let issue = 1 + rng.below(8) as u16;
    let kind = rng.below(100);
    if kind < 60 {
        let store = kind >= 40;
        let va = if f.el == 0 {
            0x0000_ffff_f000_0000 + 8 * rng.below(1 << 20)
        } else {
            0xffff_0000_8000_0000 + 8 * rng.below(1 << 18)
        };
        let refill = rng.chance(8);
        let walk = rng.chance(2);
        ev |= 1 << event::L1D_ACCESS | 1 << event::TLB_ACCESS;
        if refill {
            ev |= 1 << event::L1D_REFILL | 1 << event::LLC_ACCESS;
            if rng.chance(30) {
                ev |= 1 << event::LLC_MISS;
            }
        }
        if walk {
            ev |= 1 << event::TLB_WALK;
        }
        let xlat = if walk { 20 + rng.below(60) as u16 } else { 1 };
        let mem = if refill {
            30 + rng.below(250) as u16
        } else {
            4
        };
        r.op = Some(OpType {
            class: OpClass::LoadStore,
            payload: store as u8,
        });
        r.data_va = Some(va);
        r.data_pa = Some(PhysAddr {
            addr: 0x8_0000_0000 + (va & 0x3fff_ffff),
            ns: true,
            ch: false,
            pat: 0,
        });
        r.issue_latency = Some(issue);
        r.translation_latency = Some(xlat);
        r.total_latency = Some(issue + xlat + mem);
        r.data_source = refill.then(|| rng.below(16));
    } else if kind < 85 {
        let conditional = rng.chance(70);
        let indirect = !conditional && rng.chance(20);
        let taken = !conditional || rng.chance(60);
        if !taken {
            ev |= 1 << event::NOT_TAKEN;
        }
        if rng.chance(4) {
            ev |= 1 << event::MISPREDICTED;
        }
        r.op = Some(OpType {
            class: OpClass::Branch,
            payload: conditional as u8 | (indirect as u8) << 1,
        });
        r.branch_target = Some(CodeAddress {
            addr: f.start + 4 * rng.below(f.len / 4),
            el: f.el,
            ns: true,
        });
        r.issue_latency = Some(issue);
        r.total_latency = Some(issue + 2 + rng.below(6) as u16);
    } else {
        r.op = Some(OpType {
            class: OpClass::Other,
            payload: rng.chance(5) as u8,
        });
        r.issue_latency = Some(issue);
        r.total_latency = Some(issue + 1 + rng.below(10) as u16);
    }
    r.events = Some(ev);
    r
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyperprof_spe::RecordDecoder;

    #[test]
    fn synthetic_traces_decode_and_are_deterministic() {
        let cfg = SynthConfig {
            records: 2000,
            record_size: 64,
            seed: 3,
        };
        let a = synth(&cfg).unwrap();
        assert_eq!(a, synth(&cfg).unwrap());
        assert_ne!(a, synth(&SynthConfig { seed: 4, ..cfg }).unwrap());
        let recs: Vec<_> = RecordDecoder::new(&a)
            .collect::<std::result::Result<_, _>>()
            .unwrap();
        assert_eq!(recs.len(), 2000);
        assert!(recs.iter().all(|(off, _)| off % 64 == 0));
        let loads = recs
            .iter()
            .filter(|(_, r)| r.op.is_some_and(|o| o.class == OpClass::LoadStore))
            .count();
        assert!(loads > 1000 && loads < 1400, "{loads}");
    }

    #[test]
    fn bad_sizes_are_refused() {
        let cfg = SynthConfig {
            records: 1,
            record_size: 32,
            seed: 0,
        };
        assert!(synth(&cfg).is_err());
        let cfg = SynthConfig {
            records: u64::MAX,
            record_size: 64,
            seed: 0,
        };
        assert!(synth(&cfg).is_err());
    }
}
