//! Real A64 machine code on a PE: the A64 engine ([`hyperprof_a64`]) runs
//! at EL0/EL1 with this PE as its bus.
//!
//! - Memory goes through the PE's translation regime: the guest's stage 1
//!   (TTBR0_EL1, when SCTLR_EL1.M is set) and stage 2 (VTTBR_EL2, when
//!   HCR_EL2.VM is set), with the architected faults. A stage-2 fault (an
//!   IPA outside the VM's memory: MMIO) goes to EL2 and leaves the run.
//! - System registers the PE models are read and written through the same
//!   routing and trap rules as software's [`hyperprof_arch::Cpu`] accesses:
//!   a trapped one leaves the run as an exception to EL2 (EC 0x18).
//! - ISB, DSB and PSB CSYNC act on the profiling units as strict mode says.
//! - Every retired instruction is an operation: the microarchitecture model
//!   ([`crate::uarch`]) gives its latencies, events and data source, the PMU
//!   counts its events at its Exception level and the SPE unit samples it.
//!   Accounting is batched between sample points and counter overflows, so
//!   counts are exact and the per-instruction cost stays small.

use hyperprof_a64 as a64;
use hyperprof_arch::{hcr_el2, AccessFault, ExceptionLevel, SysReg};

use super::{IrqLines, Pe};
use crate::event::{Event, EventCounts};
use crate::gic::GicRoute;
use crate::memory::{FrameId, PhysMem, PAGE_SIZE};
use crate::mmu::{translate_two_stage, walk_stage2, Access as MmuAccess, Fault};
use crate::op::Op;
use crate::stack::{walk_frames, SampledStack, StackLog};
use crate::translate::STAGE2_START_LEVEL;
use crate::uarch::{BranchInfo, Hierarchy, Tally};

/// MIDR_EL1 of the modelled core: Arm Neoverse N1 r4p0.
pub const MIDR_NEOVERSE_N1: u64 = 0x414F_D0C0;

/// EL1 and EL0 registers of a code context that the rest of the PE does not
/// model: they travel with the vCPU (KVM saves and restores them at
/// vcpu_put/vcpu_load the same way).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct El1Regs {
    /// TCR_EL1.
    pub tcr_el1: u64,
    /// MAIR_EL1.
    pub mair_el1: u64,
    /// AMAIR_EL1.
    pub amair_el1: u64,
    /// TTBR1_EL1.
    pub ttbr1_el1: u64,
    /// TPIDR_EL1.
    pub tpidr_el1: u64,
    /// TPIDR_EL0.
    pub tpidr_el0: u64,
    /// TPIDRRO_EL0.
    pub tpidrro_el0: u64,
    /// CNTKCTL_EL1.
    pub cntkctl_el1: u64,
    /// PAR_EL1.
    pub par_el1: u64,
    /// CSSELR_EL1.
    pub csselr_el1: u64,
    /// MDSCR_EL1.
    pub mdscr_el1: u64,
    /// AFSR0_EL1.
    pub afsr0_el1: u64,
    /// AFSR1_EL1.
    pub afsr1_el1: u64,
}

/// One context of machine code: the engine's architectural state, the EL1
/// registers that go with it, the identification its reads of MIDR_EL1 and
/// MPIDR_EL1 return, and its translation cache.
pub struct CodeContext {
    /// The engine: general-purpose registers, PSTATE, EL1 exception
    /// registers, SCTLR_EL1, VBAR_EL1, CPACR_EL1, the basic-block cache.
    pub cpu: a64::Cpu,
    /// The other EL1/EL0 context registers.
    pub el1: El1Regs,
    /// What MIDR_EL1 reads (VPIDR_EL2 for a guest).
    pub midr: u64,
    /// What MPIDR_EL1 reads (VMPIDR_EL2 for a guest).
    pub mpidr: u64,
    /// When set, the stack of every instruction the SPE unit samples, read
    /// from the code's frame-pointer chain ([`crate::stack`]).
    pub stacks: Option<StackLog>,
    tlb: SoftTlb,
}

impl CodeContext {
    /// A context out of reset (EL1h, MMU off, interrupts masked) that
    /// starts at `pc`, with the MPIDR affinity `mpidr`.
    pub fn new(pc: u64, mpidr: u64) -> CodeContext {
        let mut cpu = a64::Cpu::new();
        cpu.set_pc(pc);
        CodeContext {
            cpu,
            el1: El1Regs::default(),
            midr: MIDR_NEOVERSE_N1,
            mpidr: mpidr | 1 << 31,
            stacks: None,
            tlb: SoftTlb::new(),
        }
    }

    /// Forgets every cached translation (the context moved, or its tables
    /// or the PE's regime changed behind its back).
    pub fn flush_translations(&mut self) {
        self.tlb.flush();
        self.cpu.invalidate_translations();
    }
}

impl std::fmt::Debug for CodeContext {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeContext")
            .field("pc", &format_args!("{:#x}", self.cpu.pc()))
            .field("el", &self.cpu.el())
            .field("retired", &self.cpu.retired())
            .finish_non_exhaustive()
    }
}

/// Why [`Pe::run_code`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeStop {
    /// The budget of instructions ran out, or the code took exceptions for
    /// a whole chunk of it without retiring an instruction.
    Budget,
    /// A profiling unit's interrupt line is asserted: EL2's business.
    Interrupt(IrqLines),
    /// An exception to EL2 (a hypervisor call, a trapped access, a stage-2
    /// abort, a trapped WFI/WFE).
    El2(a64::El2Exit),
    /// WFI with no interrupt pending (not trapped): the context sleeps.
    Wfi,
    /// The virtual timer's output fell while its PPI is disabled: the
    /// hypervisor that disabled it to forward the interrupt to a guest
    /// enables it again and lowers the guest's line.
    TimerDeasserted,
}

/// A soft TLB entry: one 4 KiB page of one Exception level's view.
#[derive(Clone, Copy, Debug)]
struct TlbEntry {
    /// VA page number + 1 (0: empty), with the EL in bit 63.
    tag: u64,
    pa_page: u64,
    frame: FrameId,
    read: bool,
    write: bool,
    exec: bool,
}

const TLB_SIZE: usize = 512;

/// The engine's translation cache: VA page to PA page and frame, with the
/// permissions walks have shown. Flushed by TLBI, by writes of the
/// registers that define the regime, and at every run's start (so its
/// frame handles never outlive a run: within one, no page is released).
#[derive(Clone, Debug)]
struct SoftTlb {
    entries: Vec<Option<TlbEntry>>,
}

impl SoftTlb {
    fn new() -> SoftTlb {
        SoftTlb {
            entries: vec![None; TLB_SIZE],
        }
    }

    fn flush(&mut self) {
        self.entries.fill(None);
    }

    #[inline]
    fn slot(va: u64) -> usize {
        (va >> 12) as usize & (TLB_SIZE - 1)
    }

    #[inline]
    fn tag(va: u64, el: u8) -> u64 {
        ((va >> 12) + 1) | u64::from(el) << 63
    }
}

/// The kind of a data access, for the walk and the soft TLB.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Fetch,
    Read,
    Write,
}

/// What a data access left for the operation it belongs to.
#[derive(Clone, Copy, Debug, Default)]
struct LastAccess {
    pa: u64,
    write: bool,
}

/// Descriptor bits for execute permission (stage 1).
const DESC_PXN: u64 = 1 << 53;
const DESC_UXN: u64 = 1 << 54;
const DESC_AP_EL0: u64 = 1 << 6;
const DESC_AP_RO: u64 = 1 << 7;

/// SCTLR_EL1.M.
const SCTLR_M: u64 = 1;

/// The PE as the engine's bus for one run.
struct PeBus<'a> {
    pe: &'a mut Pe,
    mem: &'a mut PhysMem,
    uarch: &'a mut Hierarchy,
    el1: &'a mut El1Regs,
    tlb: &'a mut SoftTlb,
    midr: u64,
    mpidr: u64,
    /// SCTLR_EL1 as the engine holds it (kept in step by MSR).
    sctlr: u64,
    /// Events of the memory and branch operations retired so far, per EL
    /// (0 and 1).
    tally: [Tally; 2],
    /// Operations retired so far, per EL.
    ops: [u64; 2],
    /// Of those, the ones that neither access memory nor branch: each
    /// causes exactly one INST_RETIRED, INST_SPEC and CPU_CYCLES, which
    /// are added in one go.
    plain: [u64; 2],
    /// The last operation's PC, and the operation itself when it accessed
    /// memory or branched.
    last_pc: u64,
    last_op: Option<Op>,
    /// The number of the operation of this run that is the sample point
    /// (0: none is).
    sample_at: u64,
    /// Operations retired in this run.
    total: u64,
    /// The SPE unit counts operations at some Exception level.
    sampling: bool,
    /// Operations to the sample point when the run started.
    to_sample: u64,
    /// Of this run's operations flushed so far, those the unit counted.
    counted: u64,
    access: Option<LastAccess>,
    /// The EL of the previous retired instruction.
    el: u8,
    /// The last MRS/MSR reached the GIC CPU interface.
    gic_access: bool,
}

fn el_of(el: u8) -> ExceptionLevel {
    if el == 0 {
        ExceptionLevel::EL0
    } else {
        ExceptionLevel::EL1
    }
}

fn mem_fault(f: Fault) -> a64::MemFault {
    if f.stage == 2 {
        a64::MemFault::Stage2 {
            fsc: f.fsc(),
            ipa: f.addr,
            s1ptw: f.s1ptw,
        }
    } else {
        a64::MemFault::Stage1 { fsc: f.fsc() }
    }
}

/// The stage-2 translation fault at level 1 an IPA outside memory takes.
fn not_memory(ipa: u64) -> a64::MemFault {
    a64::MemFault::Stage2 {
        fsc: 0b00_0101,
        ipa,
        s1ptw: false,
    }
}

impl PeBus<'_> {
    fn stage2_root(&self) -> Option<u64> {
        if hcr_el2::VM.is_set(self.pe.regs.hcr_el2) {
            let root = self.pe.regs.vttbr_el2 & 0x0000_FFFF_FFFF_FFFE;
            (root != 0).then_some(root)
        } else {
            None
        }
    }

    /// Walks the page of `va` for `kind` at `el` and caches what it found.
    fn walk(&mut self, va: u64, el: u8, kind: Kind) -> Result<TlbEntry, a64::MemFault> {
        let s2 = self.stage2_root().map(|r| (r, STAGE2_START_LEVEL));
        let mmu = MmuAccess {
            write: kind == Kind::Write,
            el0: el == 0,
        };
        let (pa, exec) = if self.sctlr & SCTLR_M != 0 {
            if va >> 48 != 0 {
                // TTBR1_EL1's half is not modelled: the upper range has no
                // translation (as with TCR_EL1.EPD1 set).
                return Err(a64::MemFault::Stage1 { fsc: 0b00_0100 });
            }
            let root = self.pe.regs.ttbr0_el1 & 0x0000_FFFF_FFFF_FFFE;
            let w = translate_two_stage(self.mem, root, s2, va, mmu).map_err(mem_fault)?;
            let d = w.s1_descriptor;
            let el0_writable = d & DESC_AP_EL0 != 0 && d & DESC_AP_RO == 0;
            let exec = if el == 0 {
                d & DESC_UXN == 0 && d & DESC_AP_EL0 != 0
            } else {
                // Armv8: a page EL0 can write is never executable at EL1.
                d & DESC_PXN == 0 && !el0_writable
            };
            (w.pa, exec)
        } else {
            // Stage 1 off: the VA is the IPA (and EL0/EL1 may execute).
            let pa = match s2 {
                Some((root, level)) => {
                    walk_stage2(self.mem, root, level, va, mmu.write)
                        .map_err(mem_fault)?
                        .oa
                }
                None => va,
            };
            (pa, true)
        };
        if kind == Kind::Fetch && !exec {
            return Err(a64::MemFault::Stage1 { fsc: 0b00_1111 });
        }
        let frame = match self.mem.frame(pa) {
            Ok(f) => f,
            // Not RAM. With stage 2 on the IPA was mapped, so the PA is
            // outside RAM: an external abort. Without stage 2 it is a
            // device (MMIO), which only a hypervisor's guest reaches.
            Err(_) if s2.is_some() => return Err(a64::MemFault::Stage1 { fsc: 0b01_0000 }),
            Err(_) => return Err(not_memory(pa)),
        };
        let slot = SoftTlb::slot(va);
        let tag = SoftTlb::tag(va, el);
        let mut e = match self.tlb.entries[slot] {
            Some(e) if e.tag == tag && e.pa_page == pa & !(PAGE_SIZE - 1) => e,
            _ => TlbEntry {
                tag,
                pa_page: pa & !(PAGE_SIZE - 1),
                frame,
                read: false,
                write: false,
                exec: false,
            },
        };
        match kind {
            Kind::Fetch => e.exec = true,
            Kind::Read => e.read = true,
            Kind::Write => {
                e.write = true;
                e.read = true;
            }
        }
        self.tlb.entries[slot] = Some(e);
        Ok(e)
    }

    /// The frame and offset of `va` for `kind` at `el`.
    #[inline]
    fn lookup(&mut self, va: u64, el: u8, kind: Kind) -> Result<(TlbEntry, usize), a64::MemFault> {
        let off = (va & (PAGE_SIZE - 1)) as usize;
        if let Some(e) = self.tlb.entries[SoftTlb::slot(va)] {
            let ok = match kind {
                Kind::Fetch => e.exec,
                Kind::Read => e.read,
                Kind::Write => e.write,
            };
            if ok && e.tag == SoftTlb::tag(va, el) {
                return Ok((e, off));
            }
        }
        Ok((self.walk(va, el, kind)?, off))
    }

    #[inline]
    fn read_bytes(&mut self, va: u64, size: u8, el: u8) -> Result<(u64, u64), a64::MemFault> {
        let n = usize::from(size);
        let (e, off) = self.lookup(va, el, Kind::Read)?;
        if off + n <= PAGE_SIZE as usize {
            let page = self.mem.frame_bytes(e.frame);
            let v = match n {
                1 => u64::from(page[off]),
                2 => u64::from(u16::from_le_bytes([page[off], page[off + 1]])),
                4 => u64::from(u32::from_le_bytes(
                    page[off..off + 4].try_into().expect("4 bytes"),
                )),
                _ => {
                    let mut v = [0u8; 8];
                    v[..n].copy_from_slice(&page[off..off + n]);
                    u64::from_le_bytes(v)
                }
            };
            return Ok((v, e.pa_page + off as u64));
        }
        let mut v = 0u64;
        for i in 0..n {
            let (e, o) = self.lookup(va.wrapping_add(i as u64), el, Kind::Read)?;
            v |= u64::from(self.mem.frame_bytes(e.frame)[o]) << (8 * i);
        }
        Ok((v, e.pa_page + off as u64))
    }

    fn write_bytes(&mut self, va: u64, size: u8, value: u64, el: u8) -> Result<u64, a64::MemFault> {
        let n = usize::from(size);
        let (e, off) = self.lookup(va, el, Kind::Write)?;
        let bytes = value.to_le_bytes();
        if off + n <= PAGE_SIZE as usize {
            self.mem.frame_bytes_mut(e.frame)[off..off + n].copy_from_slice(&bytes[..n]);
            return Ok(e.pa_page + off as u64);
        }
        // Check every byte's page first: a write is all or nothing.
        let mut at = Vec::with_capacity(n);
        for i in 0..n {
            at.push(self.lookup(va.wrapping_add(i as u64), el, Kind::Write)?);
        }
        for (i, (e, o)) in at.into_iter().enumerate() {
            self.mem.frame_bytes_mut(e.frame)[o] = bytes[i];
        }
        Ok(e.pa_page + off as u64)
    }

    /// The PE's register for an engine encoding, if the PE models it.
    fn arch_reg(reg: a64::SysReg) -> Option<SysReg> {
        SysReg::from_encoding(hyperprof_arch::Encoding::new(
            reg.op0(),
            reg.op1(),
            reg.crn(),
            reg.crm(),
            reg.op2(),
        ))
    }

    /// Registers of [`El1Regs`], and the identification registers.
    fn el1_slot(&mut self, reg: a64::SysReg) -> Option<&mut u64> {
        let r = &mut self.el1;
        Some(
            match (reg.op0(), reg.op1(), reg.crn(), reg.crm(), reg.op2()) {
                (3, 0, 2, 0, 2) => &mut r.tcr_el1,
                (3, 0, 10, 2, 0) => &mut r.mair_el1,
                (3, 0, 10, 3, 0) => &mut r.amair_el1,
                (3, 0, 2, 0, 1) => &mut r.ttbr1_el1,
                (3, 0, 13, 0, 4) => &mut r.tpidr_el1,
                (3, 3, 13, 0, 2) => &mut r.tpidr_el0,
                (3, 3, 13, 0, 3) => &mut r.tpidrro_el0,
                (3, 0, 14, 1, 0) => &mut r.cntkctl_el1,
                (3, 0, 7, 4, 0) => &mut r.par_el1,
                (3, 2, 0, 0, 0) => &mut r.csselr_el1,
                (2, 0, 0, 2, 2) => &mut r.mdscr_el1,
                (3, 0, 5, 1, 0) => &mut r.afsr0_el1,
                (3, 0, 5, 1, 1) => &mut r.afsr1_el1,
                _ => return None,
            },
        )
    }

    /// Whether EL0 may access an [`El1Regs`] register.
    fn el0_may(reg: a64::SysReg, write: bool) -> bool {
        match (reg.op0(), reg.op1(), reg.crn(), reg.crm(), reg.op2()) {
            (3, 3, 13, 0, 2) => true,
            (3, 3, 13, 0, 3) => !write,
            _ => false,
        }
    }

    /// Whether CNTKCTL_EL1 denies EL0 this Generic Timer access: the
    /// frequency and the counters need EL0PCTEN/EL0VCTEN, the virtual and
    /// physical timers EL0VTEN/EL0PTEN. A denied access traps to EL1 (EC
    /// 0x18), before any EL2 trap is considered.
    fn el0_timer_denied(&self, reg: a64::SysReg) -> bool {
        use hyperprof_arch::cntkctl_el1 as k;
        let ctl = self.el1.cntkctl_el1;
        let allowed = match Self::arch_reg(reg) {
            Some(SysReg::CNTFRQ_EL0) => k::EL0PCTEN.is_set(ctl) || k::EL0VCTEN.is_set(ctl),
            Some(SysReg::CNTPCT_EL0) => k::EL0PCTEN.is_set(ctl),
            Some(SysReg::CNTVCT_EL0) => k::EL0VCTEN.is_set(ctl),
            Some(SysReg::CNTV_CTL_EL0 | SysReg::CNTV_CVAL_EL0 | SysReg::CNTV_TVAL_EL0) => {
                k::EL0VTEN.is_set(ctl)
            }
            Some(SysReg::CNTP_CTL_EL0 | SysReg::CNTP_CVAL_EL0 | SysReg::CNTP_TVAL_EL0) => {
                k::EL0PTEN.is_set(ctl)
            }
            _ => true,
        };
        !allowed
    }

    /// Fixed read-only registers: identification.
    fn fixed(&self, reg: a64::SysReg) -> Option<u64> {
        Some(
            match (reg.op0(), reg.op1(), reg.crn(), reg.crm(), reg.op2()) {
                (3, 0, 0, 0, 0) => self.midr,
                (3, 0, 0, 0, 5) => self.mpidr,
                (3, 0, 0, 0, 6) => 0,
                // CTR_EL0: 64-byte lines, PIPT I-cache, IDC/DIC clear.
                (3, 3, 0, 0, 1) => 0x8444_c004,
                // DCZID_EL0: DC ZVA zeroes 64 bytes.
                (3, 3, 0, 0, 7) => 4,
                _ => return None,
            },
        )
    }

    /// Whether HCR_EL2.TID3 traps this identification register (the ID
    /// group 3 space: op0 3, op1 0, CRn 0, CRm 1..7).
    fn id_group3(reg: a64::SysReg) -> bool {
        reg.op0() == 3 && reg.op1() == 0 && reg.crn() == 0 && (1..=7).contains(&reg.crm())
    }

    /// Hands what the operations retired since the last flush did to the
    /// PMU and the SPE unit: before software touches a register the PE
    /// models (a counter read must see every operation before it), and at
    /// the end of the run (`at_end`), where the last operation is sampled
    /// if it is the sample point. Returns whether it was.
    fn flush(&mut self, at_end: bool) -> bool {
        let ops = self.ops;
        for (i, el) in [ExceptionLevel::EL0, ExceptionLevel::EL1]
            .into_iter()
            .enumerate()
        {
            if ops[i] > 0 {
                let mut c = EventCounts::default();
                self.tally[i].add_to(&mut c);
                c.add(Event::INST_RETIRED, self.plain[i]);
                c.add(Event::INST_SPEC, self.plain[i]);
                c.add(Event::CPU_CYCLES, self.plain[i]);
                self.pe.account(&c, el, ops[i]);
            }
        }
        self.tally = [Tally::default(); 2];
        self.ops = [0; 2];
        self.plain = [0; 2];
        if !self.sampling {
            return false;
        }
        let counted = self.pe.count_sampled_ops(&ops);
        self.counted += counted;
        // `counted == to_sample` at the end means every operation of the
        // run was at a profiled level: the last one is the sample point.
        let hit = at_end && self.total > 0 && self.counted == self.to_sample;
        if hit {
            if let Some(spe) = self.pe.spe.as_mut() {
                spe.skip(counted - 1);
            }
            let op = self.last_op.unwrap_or_else(|| Op::other(self.last_pc));
            self.pe.sample(self.mem, &op);
        } else if let Some(spe) = self.pe.spe.as_mut() {
            spe.skip(counted);
        }
        hit
    }

    /// The stack of the instruction just sampled at `pc`, from the frame
    /// pointer `fp`, read through the code's regime at its level.
    fn sampled_stack(&mut self, pc: u64, fp: u64) -> SampledStack {
        let el = self.el;
        let callers = walk_frames(fp, |va| self.read_bytes(va, 8, el).ok().map(|(v, _)| v));
        SampledStack { pc, callers }
    }

    /// A change of the regime: cached translations go.
    fn regime_changed(&mut self) {
        self.tlb.flush();
    }

    fn sync_el(&mut self, el: u8) {
        if el != self.el {
            self.el = el;
            // Exception entry and return synchronize context.
            self.pe.exception_entry(el_of(el));
        }
    }
}

impl a64::Bus for PeBus<'_> {
    #[inline]
    fn fetch(&mut self, va: u64, access: a64::Access) -> Result<a64::Fetched, a64::MemFault> {
        let el = access.el;
        let (e, off) = self.lookup(va, el, Kind::Fetch)?;
        let b = &self.mem.frame_bytes(e.frame)[off..off + 4];
        Ok(a64::Fetched {
            pa: e.pa_page + off as u64,
            insn: u32::from_le_bytes([b[0], b[1], b[2], b[3]]),
        })
    }

    #[inline]
    fn read(&mut self, va: u64, size: u8, access: a64::Access) -> Result<u64, a64::MemFault> {
        let el = access.el;
        let (v, pa) = self.read_bytes(va, size, el)?;
        if access.kind == a64::AccessKind::ReadModifyWrite {
            // An atomic needs write permission too.
            self.lookup(va, el, Kind::Write)?;
        }
        if self.access.is_none() {
            self.access = Some(LastAccess {
                pa,
                write: access.kind == a64::AccessKind::ReadModifyWrite,
            });
        }
        Ok(v)
    }

    #[inline]
    fn write(
        &mut self,
        va: u64,
        size: u8,
        value: u64,
        access: a64::Access,
    ) -> Result<u64, a64::MemFault> {
        let el = access.el;
        let pa = self.write_bytes(va, size, value, el)?;
        match &mut self.access {
            Some(a) => a.write = true,
            None => self.access = Some(LastAccess { pa, write: true }),
        }
        Ok(pa)
    }

    fn sysreg_read(&mut self, reg: a64::SysReg, el: u8) -> a64::SysRegRead {
        self.sync_el(el);
        if el == 0 && self.el0_timer_denied(reg) {
            return a64::SysRegRead::TrapToEl1;
        }
        if let Some(r) = Self::arch_reg(reg) {
            self.flush(false);
            self.pe.stats.reads += 1;
            self.gic_access = GicRoute::of(r).is_some();
            return match self.pe.read_reg(r) {
                Ok(v) => a64::SysRegRead::Value(v),
                Err(AccessFault::Trapped { .. }) => a64::SysRegRead::TrapToEl2,
                Err(AccessFault::Undefined) => a64::SysRegRead::Undefined,
            };
        }
        if el == 1 && Self::id_group3(reg) && hcr_el2::TID3.is_set(self.pe.regs.hcr_el2) {
            return a64::SysRegRead::TrapToEl2;
        }
        if let Some(v) = self.fixed(reg) {
            return if el == 0 && reg.op1() != 3 {
                a64::SysRegRead::Undefined
            } else {
                a64::SysRegRead::Value(v)
            };
        }
        let el0_ok = Self::el0_may(reg, false);
        match self.el1_slot(reg) {
            Some(_) if el == 0 && !el0_ok => a64::SysRegRead::Undefined,
            Some(v) => a64::SysRegRead::Value(*v),
            None => a64::SysRegRead::Engine,
        }
    }

    fn sysreg_write(&mut self, reg: a64::SysReg, value: u64, el: u8) -> a64::SysRegWrite {
        self.sync_el(el);
        if el == 0 && self.el0_timer_denied(reg) {
            return a64::SysRegWrite::TrapToEl1;
        }
        if let Some(r) = Self::arch_reg(reg) {
            self.flush(false);
            self.pe.stats.writes += 1;
            self.gic_access = GicRoute::of(r).is_some();
            return match self.pe.write_reg(r, value) {
                Ok(()) => {
                    if matches!(r, SysReg::TTBR0_EL1) {
                        self.regime_changed();
                    }
                    a64::SysRegWrite::Done
                }
                Err(AccessFault::Trapped { .. }) => a64::SysRegWrite::TrapToEl2,
                Err(AccessFault::Undefined) => a64::SysRegWrite::Undefined,
            };
        }
        if self.fixed(reg).is_some() || Self::id_group3(reg) {
            return a64::SysRegWrite::Undefined;
        }
        // SCTLR_EL1 belongs to the engine; the PE watches M for the regime.
        if (reg.op0(), reg.op1(), reg.crn(), reg.crm(), reg.op2()) == (3, 0, 1, 0, 0) {
            if el == 1 && (self.sctlr ^ value) & SCTLR_M != 0 {
                self.regime_changed();
            }
            if el == 1 {
                self.sctlr = value;
            }
            return a64::SysRegWrite::Engine;
        }
        let el0_ok = Self::el0_may(reg, true);
        match self.el1_slot(reg) {
            Some(_) if el == 0 && !el0_ok => a64::SysRegWrite::Undefined,
            // TCR_EL1 among them: the walk is the fixed 48-bit, 4 KiB
            // granule one, so no TCR_EL1 write changes a translation.
            Some(v) => {
                *v = value;
                a64::SysRegWrite::Done
            }
            None => a64::SysRegWrite::Engine,
        }
    }

    fn after_sysreg(&mut self) -> a64::SysRegEffect {
        if !std::mem::take(&mut self.gic_access) {
            return a64::SysRegEffect::Unchanged;
        }
        // An acknowledge, end of interrupt or mask change: the virtual
        // IRQ follows the virtual CPU interface, and a maintenance
        // interrupt goes to EL2.
        if self.pe.gic.maintenance() {
            a64::SysRegEffect::Exit
        } else if self.pe.virtual_irqs_routed() {
            a64::SysRegEffect::Irq(self.pe.gic.virtual_irq())
        } else {
            a64::SysRegEffect::Unchanged
        }
    }

    fn sys(&mut self, op: a64::SysOp, value: u64, el: u8) -> a64::SysRegWrite {
        let _ = (value, el);
        match op.kind() {
            a64::SysOpKind::Tlbi => {
                self.regime_changed();
                self.uarch.flush_tlb(self.pe.id);
                // Over-invalidation is allowed: any TLBI empties the SPE
                // unit's cache too.
                self.pe.invalidate_buffer_tlb(None);
                a64::SysRegWrite::Done
            }
            _ => a64::SysRegWrite::Engine,
        }
    }

    fn hint(&mut self, hint: a64::insn::Hint, el: u8) -> a64::HintAction {
        self.sync_el(el);
        if hint == a64::insn::Hint::PsbCsync {
            self.flush(false);
            self.pe.stats.psb += 1;
            self.pe.psb_csync_now(self.mem);
        }
        a64::HintAction::Continue
    }

    fn barrier(&mut self, barrier: a64::insn::Barrier, el: u8) -> a64::HintAction {
        self.sync_el(el);
        match barrier {
            a64::insn::Barrier::Isb => {
                self.pe.stats.isb += 1;
                self.pe.context_sync();
                // The units may count and sample differently now: the run
                // recomputes its next stop.
                a64::HintAction::Exit
            }
            a64::insn::Barrier::Dsb(_) => {
                self.pe.stats.dsb += 1;
                self.pe.dsb_now(self.mem);
                a64::HintAction::Continue
            }
            a64::insn::Barrier::Dmb(_) => a64::HintAction::Continue,
        }
    }

    #[inline(always)]
    fn retired(&mut self, info: &a64::Retired) {
        if info.el != self.el {
            self.sync_el(info.el);
        }
        let access = self.access.take();
        let class = info.class;
        let mem = if class.is_memory() && info.size > 0 {
            access.map(|a| (info.va, a.pa, a.write || class.has(a64::OpClass::STORE)))
        } else {
            None
        };
        let branch = class.is_branch().then(|| BranchInfo {
            conditional: class.has(a64::OpClass::CONDITIONAL),
            indirect: class.has(a64::OpClass::INDIRECT),
            taken: info.taken,
            target: info.target,
            link: class.has(a64::OpClass::LINK),
            is_return: class.has(a64::OpClass::RETURN),
        });
        let e = usize::from(info.el.min(1));
        self.ops[e] += 1;
        self.total += 1;
        // Only the run's last operation can be the sample point: only it
        // needs the whole operation kept.
        let keep = self.total == self.sample_at;
        if keep {
            self.last_pc = info.pc;
        }
        if mem.is_none() && branch.is_none() {
            self.plain[e] += 1;
            return;
        }
        let core = self.pe.id;
        let op = match (mem, branch) {
            (Some(m), _) => self
                .uarch
                .retire_mem(core, info.pc, m, &mut self.tally[e], keep),
            (None, Some(b)) => {
                self.uarch
                    .retire_branch(core, info.pc, &b, &mut self.tally[e], keep)
            }
            (None, None) => None,
        };
        if keep {
            self.last_op = op.map(|mut op| {
                op.ldst_subclass = ldst_subclass(class);
                op
            });
        }
    }
}

/// The OP TYPE subclass of a load or store of `class`: 0b10 with AT, EXCL
/// and AR for atomics, exclusives and acquire/release accesses, else 0
/// (general-purpose registers).
fn ldst_subclass(class: a64::OpClass) -> u8 {
    let at = class.has(a64::OpClass::ATOMIC);
    let excl = class.has(a64::OpClass::EXCLUSIVE);
    let ar = class.has(a64::OpClass::ACQ_REL);
    if at || excl || ar {
        0x02 | u8::from(at) << 2 | u8::from(excl) << 3 | u8::from(ar) << 4
    } else {
        0
    }
}

/// Events that no single operation adds more than one of.
fn at_most_one_per_op(event: Event) -> bool {
    !matches!(
        event,
        Event::CPU_CYCLES | Event::STALL_BACKEND | Event::STALL_FRONTEND
    )
}

/// The most cycles one operation can take in the model (a DRAM access
/// behind a table walk, or a mispredict): bounds how far accounting may
/// run ahead of a cycle counter's overflow.
const MAX_CYCLES_PER_OP: u64 = 1 << 12;

impl Pe {
    /// Runs `ctx`'s machine code at its Exception level for at most
    /// `budget` instructions; `done` says how many retired. Returns early
    /// when a profiling interrupt line rises, when the code takes an
    /// exception to EL2, or when it waits for an interrupt.
    pub fn run_code(
        &mut self,
        mem: &mut PhysMem,
        uarch: &mut Hierarchy,
        ctx: &mut CodeContext,
        budget: u64,
        done: &mut u64,
    ) -> CodeStop {
        *done = 0;
        // The context may have moved here from another PE, the hypervisor
        // may have changed the regime, or a page may have been released
        // while it was away.
        ctx.tlb.flush();
        let hcr = self.regs.hcr_el2;
        ctx.cpu.el2 = a64::El2Controls {
            twi: hcr_el2::TWI.is_set(hcr),
            twe: hcr_el2::TWE.is_set(hcr),
            tsc: hcr_el2::TSC.is_set(hcr),
            tfp: false,
            hcd: false,
        };
        let start_el = ctx.cpu.el();
        if self.el != el_of(start_el) {
            self.exception_entry(el_of(start_el));
        }
        loop {
            let lines = self.irq_lines();
            if lines.any() {
                return CodeStop::Interrupt(lines);
            }
            if !self.vtimer_irq_enabled() && !self.vtimer_output() {
                return CodeStop::TimerDeasserted;
            }
            if *done >= budget {
                return CodeStop::Budget;
            }
            // With HCR_EL2.IMO the virtual IRQ is the GIC virtual CPU
            // interface's; without, the caller drives the line.
            if self.virtual_irqs_routed() {
                ctx.cpu.set_irq(self.gic.virtual_irq());
            }
            let el = el_of(ctx.cpu.el());
            // The unit counts at every Exception level it profiles: a run
            // that changes level must still stop at the sample point.
            let sampling = self.spe.as_ref().is_some_and(|s| {
                s.sampling_at(ExceptionLevel::EL0) || s.sampling_at(ExceptionLevel::EL1)
            });
            let to_sample = if sampling {
                self.spe.as_ref().map_or(u64::MAX, |s| s.ops_to_sample())
            } else {
                u64::MAX
            };
            let mut chunk = (budget - *done).min(to_sample);
            self.pmu.for_each_until_overflow(el, |event, k| {
                let safe = if at_most_one_per_op(event) {
                    k
                } else {
                    k / MAX_CYCLES_PER_OP
                };
                chunk = chunk.min(safe.max(1));
            });
            // Every instruction takes at least one cycle: a run no longer
            // than the ticks to the virtual timer's deadline stops at or
            // before it, and the next round sees the line.
            if let Some(ticks) = self.ticks_to_vtimer() {
                chunk = chunk.min(ticks.max(1));
            }
            // The code may have turned stage 1 on or off in the last chunk.
            let sctlr = ctx.cpu.read_sysreg(a64::cpu::regs::SCTLR_EL1).unwrap_or(0);
            let mut bus = PeBus {
                pe: self,
                mem,
                uarch,
                el1: &mut ctx.el1,
                tlb: &mut ctx.tlb,
                midr: ctx.midr,
                mpidr: ctx.mpidr,
                sctlr,
                tally: [Tally::default(); 2],
                ops: [0; 2],
                plain: [0; 2],
                last_pc: 0,
                last_op: None,
                sample_at: if sampling && chunk == to_sample {
                    chunk
                } else {
                    0
                },
                total: 0,
                sampling,
                to_sample,
                counted: 0,
                access: None,
                el: ctx.cpu.el(),
                gic_access: false,
            };
            let taken = ctx.cpu.exceptions_taken();
            let exit = ctx.cpu.run(&mut bus, chunk);
            if bus.flush(true) {
                if let Some(log) = ctx.stacks.as_mut() {
                    log.push(bus.sampled_stack(bus.last_pc, ctx.cpu.x(29)));
                }
            }
            *done += bus.total;
            match exit {
                // The engine spent its budget taking exceptions and retired
                // nothing (a vector that faults on itself): give the PE
                // back rather than go round here for ever.
                a64::Exit::Budget if bus.total == 0 && ctx.cpu.exceptions_taken() > taken => {
                    return CodeStop::Budget
                }
                a64::Exit::Budget | a64::Exit::Hint => {}
                a64::Exit::El2(e) => return CodeStop::El2(e),
                a64::Exit::Wfi => return CodeStop::Wfi,
                // WFE without an event: nothing else runs on this PE, so
                // the wait ends at once (an event or interrupt would end
                // it on silicon too).
                a64::Exit::Wfe => {}
            }
        }
    }

    /// How many of the operations of a run the SPE unit counts (those at an
    /// Exception level where profiling is enabled).
    fn count_sampled_ops(&self, ops: &[u64; 2]) -> u64 {
        let spe = match self.spe.as_ref() {
            Some(s) => s,
            None => return 0,
        };
        [ExceptionLevel::EL0, ExceptionLevel::EL1]
            .into_iter()
            .enumerate()
            .filter(|(_, el)| spe.sampling_at(*el))
            .map(|(i, _)| ops[i])
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads_and_stores_carry_their_spe_subclass() {
        let c = |bits| a64::OpClass(a64::OpClass::LOAD | bits);
        assert_eq!(ldst_subclass(c(0)), 0);
        assert_eq!(ldst_subclass(c(a64::OpClass::ATOMIC)), 0x06);
        assert_eq!(ldst_subclass(c(a64::OpClass::EXCLUSIVE)), 0x0A);
        assert_eq!(
            ldst_subclass(c(a64::OpClass::EXCLUSIVE | a64::OpClass::ACQ_REL)),
            0x1A
        );
        assert_eq!(ldst_subclass(c(a64::OpClass::ACQ_REL)), 0x12);
        // The OP TYPE packet: ST in bit 0, the subclass above it.
        use crate::spe::record::op_type;
        assert_eq!(op_type(crate::op::OpKind::Load, false, 0x1A).payload, 0x1A);
        assert_eq!(op_type(crate::op::OpKind::Store, false, 0x12).payload, 0x13);
        assert_eq!(op_type(crate::op::OpKind::Load, false, 0).payload, 0);
    }
}
