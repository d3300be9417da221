//! A processing element (PE): Exception levels, the system registers the
//! profiling model needs, its SPE unit and PMU, the [`Cpu`] interface that
//! software uses, and the skip-ahead execution of workloads.
//!
//! Strict mode: a system register write is visible to reads at once but
//! reaches the profiling units only at the next context synchronization
//! event ([`Cpu::isb`], exception entry, exception return; with
//! [`Pe::set_early_spe_writes`], SPE writes other than PMBPTR_EL1 and
//! PMBSR_EL1 reach the unit at once, another order the architecture
//! allows); the SPE unit's own updates of PMBPTR_EL1 and PMBSR_EL1 reach
//! software's reads only at the next one too. Profiling buffer writes that
//! `PSB CSYNC` (or a full
//! record queue) releases complete only at the next `DSB`, translated by
//! the owning regime of that moment; until then memory does not hold them.
//! The unit translates through its own translation cache
//! ([`crate::buffer_tlb`]), tagged with the context of each walk and
//! flushed only by TLB maintenance ([`Pe::invalidate_buffer_tlb`]); it
//! walks the page of its pointer whenever an ISB leaves its buffer enabled
//! and whenever software writes a translation table base while it is
//! enabled (a walk may happen at any such time; these are the moments a
//! missing barrier shows).

use hyperprof_arch::predicates::{profiling_buffer_owner, ExceptionLevel};
use hyperprof_arch::{
    hcr_el2, hdfgrtr_el2, hdfgwtr_el2, mdcr_el2, AccessFault, Cpu, MemoryFault, PmsVer, PmuVer,
    SysReg, Unit,
};

use crate::buffer_tlb::{BufferTlb, TlbTag};
use crate::event::{Event, EventCounts};
use crate::gic::{GicRoute, IcvFault, VirtualCpuIf};
use crate::memory::{PhysMem, PAGE_SIZE};
use crate::mmu::{Access, Fault};
use crate::op::{Op, OpKind};
use crate::pmu::{Pmu, PmuConfig, View};
use crate::spe::{BufferFault, BufferPort, Control, SampleContext, Spe, SpeConfig};
use crate::translate::{buffer_segments, data_pa, Regime, Segment};
use crate::workload::Workload;

#[path = "pe_code.rs"]
mod code;
#[path = "pe_sysreg.rs"]
mod sysreg;
#[path = "pe_timer.rs"]
mod timer;
pub use code::{CodeContext, CodeStop, El1Regs, MIDR_NEOVERSE_N1};
pub use timer::{TimerRegs, CNTFRQ, CNTHCTL_EL2_RESET};

/// How a PE is built.
#[derive(Clone, Debug)]
pub struct PeConfig {
    /// Its PMU.
    pub pmu: PmuConfig,
    /// Its SPE unit, if it has one (heterogeneous machines have PEs without).
    pub spe: Option<SpeConfig>,
    /// FEAT_FGT: HDFGRTR_EL2/HDFGWTR_EL2 trap EL0/EL1 accesses (without it
    /// only MDCR_EL2's coarse traps exist, and ID registers cannot be trapped).
    pub fgt: bool,
    /// Caches, TLB, branch predictor and timing behind its real code (the
    /// shared last-level cache is CPU 0's).
    pub uarch: crate::uarch::UarchConfig,
}

/// What software spent on a PE: every system register access and barrier.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AccessStats {
    /// MRS.
    pub reads: u64,
    /// MSR.
    pub writes: u64,
    /// ISB.
    pub isb: u64,
    /// DSB.
    pub dsb: u64,
    /// PSB CSYNC.
    pub psb: u64,
}

impl AccessStats {
    /// Register accesses plus barriers.
    pub fn total(&self) -> u64 {
        self.reads + self.writes + self.isb + self.dsb + self.psb
    }
}

impl std::ops::AddAssign for AccessStats {
    fn add_assign(&mut self, o: AccessStats) {
        self.reads += o.reads;
        self.writes += o.writes;
        self.isb += o.isb;
        self.dsb += o.dsb;
        self.psb += o.psb;
    }
}

impl std::ops::Sub for AccessStats {
    type Output = AccessStats;

    /// What was spent between two readings (`self` the later one).
    fn sub(self, o: AccessStats) -> AccessStats {
        AccessStats {
            reads: self.reads - o.reads,
            writes: self.writes - o.writes,
            isb: self.isb - o.isb,
            dsb: self.dsb - o.dsb,
            psb: self.psb - o.psb,
        }
    }
}

/// The interrupt lines a PE's profiling units drive (level sensitive PPIs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IrqLines {
    /// PMBIRQ (PPI 21 by convention): the SPE buffer management interrupt.
    pub pmbirq: bool,
    /// The PMU overflow interrupt (PPI 23 by convention).
    pub pmuirq: bool,
    /// The EL1 virtual timer's interrupt (PPI 27), where the interrupt
    /// controller has it enabled ([`Pe::set_vtimer_irq_enabled`]).
    pub vtimer: bool,
    /// The GIC's virtual CPU interface maintenance interrupt (PPI 25 by
    /// convention), for the hypervisor.
    pub maintenance: bool,
}

impl IrqLines {
    /// Whether any line is asserted.
    pub fn any(&self) -> bool {
        self.pmbirq || self.pmuirq || self.vtimer || self.maintenance
    }
}

/// Why [`Pe::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunExit {
    /// The budget of operations ran out.
    Completed,
    /// An interrupt line is asserted: software must take the interrupt.
    Interrupt(IrqLines),
}

/// EL2 and EL1 registers the PE keeps itself (the profiling units keep theirs).
#[derive(Clone, Copy, Debug, Default)]
struct Regs {
    hcr_el2: u64,
    mdcr_el2: u64,
    hdfgrtr_el2: u64,
    hdfgwtr_el2: u64,
    contextidr_el1: u64,
    contextidr_el2: u64,
    ttbr0_el1: u64,
    ttbr0_el2: u64,
    vttbr_el2: u64,
    cntvoff_el2: u64,
    cnthctl_el2: u64,
}

/// A buffer write released by the SPE unit, waiting for a DSB.
#[derive(Clone, Debug)]
struct PendingWrite {
    /// The buffer address: the write is translated when it completes.
    va: u64,
    bytes: Vec<u8>,
}

/// One processing element.
#[derive(Clone, Debug)]
pub struct Pe {
    id: usize,
    el: ExceptionLevel,
    regs: Regs,
    /// HCR_EL2 and MDCR_EL2 as the units last synchronized them.
    synced_hcr: u64,
    synced_mdcr: u64,
    spe: Option<Spe>,
    pmu: Pmu,
    pmu_version: PmuVer,
    fgt: bool,
    stats: AccessStats,
    ops: u64,
    /// The system counter as this PE reads it (CNTPCT_EL0).
    cycles: u64,
    /// The EL1 virtual timer.
    vtimer: TimerRegs,
    /// The interrupt controller's enable of the virtual timer's PPI.
    vtimer_irq_enabled: bool,
    pending: Vec<PendingWrite>,
    events: EventCounts,
    probe: Option<crate::probe::ProbeHandle>,
    /// PMBPTR_EL1 and PMBSR_EL1 as the last context synchronization left
    /// them: what software reads of the unit's own updates.
    synced_pmbptr: u64,
    synced_pmbsr: u64,
    /// The instructions software runs through [`Cpu`] are operations the
    /// SPE unit samples ([`Pe::set_instruction_sampling`]).
    instruction_sampling: bool,
    /// The GIC CPU interface's virtualization part (ICH_*_EL2, ICV_*).
    gic: VirtualCpuIf,
    /// Direct writes of SPE registers other than PMBPTR_EL1 and PMBSR_EL1
    /// reach the unit at once ([`Pe::set_early_spe_writes`]).
    early_spe_writes: bool,
    /// The SPE unit's translation cache.
    buffer_tlb: BufferTlb,
}

/// Where the instructions software runs through [`Cpu`] (register
/// accesses and barriers) sit when they are sampled: a 16 KiB text range
/// of the kernel's (hypervisor) image.
pub const SYSTEM_TEXT: std::ops::Range<u64> = 0xffff_8000_0001_0000..0xffff_8000_0001_4000;

fn undefined<T>() -> Result<T, AccessFault> {
    Err(AccessFault::Undefined)
}

fn trap_to_el2<T>() -> Result<T, AccessFault> {
    Err(AccessFault::Trapped {
        to: ExceptionLevel::EL2,
    })
}

fn icv_fault<T>(f: IcvFault) -> Result<T, AccessFault> {
    match f {
        IcvFault::Trapped => trap_to_el2(),
        IcvFault::Undefined => undefined(),
    }
}

fn is_pmu_reg(reg: SysReg) -> bool {
    reg.unit() == Unit::Pmu
}

impl Pe {
    /// A PE in its reset state at EL2 (the hypervisor or VHE host boots there).
    pub fn new(id: usize, cfg: &PeConfig) -> Pe {
        let mut pe = Pe {
            id,
            el: ExceptionLevel::EL2,
            regs: Regs::default(),
            synced_hcr: 0,
            synced_mdcr: 0,
            spe: cfg.spe.clone().map(Spe::new),
            pmu: Pmu::new(cfg.pmu),
            pmu_version: cfg.pmu.version,
            fgt: cfg.fgt,
            stats: AccessStats::default(),
            ops: 0,
            cycles: 0,
            vtimer: TimerRegs::default(),
            vtimer_irq_enabled: true,
            pending: Vec::new(),
            events: EventCounts::default(),
            probe: None,
            synced_pmbptr: 0,
            synced_pmbsr: 0,
            instruction_sampling: false,
            gic: VirtualCpuIf::new(),
            early_spe_writes: false,
            buffer_tlb: BufferTlb::default(),
        };
        // MDCR_EL2.HPMN resets to N; the fine-grained traps to trapping
        // nothing (their reset values are UNKNOWN; firmware clears them);
        // the units start synchronized.
        pe.regs.mdcr_el2 = mdcr_el2::HPMN.set(0, cfg.pmu.counters as u64);
        pe.regs.hdfgrtr_el2 = hdfgrtr_el2::TRAP_NOTHING;
        pe.regs.hdfgwtr_el2 = hdfgwtr_el2::TRAP_NOTHING;
        pe.regs.cnthctl_el2 = CNTHCTL_EL2_RESET;
        pe.context_sync();
        pe
    }

    /// Its index in the machine.
    pub fn id(&self) -> usize {
        self.id
    }
    /// The current Exception level.
    pub fn el(&self) -> ExceptionLevel {
        self.el
    }
    /// Whether it implements FEAT_FGT (fine-grained traps).
    pub fn has_fgt(&self) -> bool {
        self.fgt
    }
    /// Whether it has an SPE unit.
    pub fn has_spe(&self) -> bool {
        self.spe.is_some()
    }
    /// Its SPE unit.
    pub fn spe(&self) -> Option<&Spe> {
        self.spe.as_ref()
    }
    /// Its PMU.
    pub fn pmu(&self) -> &Pmu {
        &self.pmu
    }
    /// Register accesses and barriers so far.
    pub fn access_stats(&self) -> AccessStats {
        self.stats
    }
    /// Operations executed so far.
    pub fn ops(&self) -> u64 {
        self.ops
    }
    /// The system counter as this PE reads it (CNTPCT_EL0): the cycles the
    /// machine's PEs executed and the idle time it skipped (see
    /// [`crate::machine::Machine::now`]).
    pub fn cycles(&self) -> u64 {
        self.cycles
    }
    /// Every PMU event the PE's operations caused, at any Exception level.
    pub fn events(&self) -> &EventCounts {
        &self.events
    }
    /// Makes every register access and barrier software runs through
    /// [`Cpu`] an operation at the current Exception level that the SPE
    /// unit counts and may sample (PCs in [`SYSTEM_TEXT`]), as on silicon,
    /// where the hypervisor's and the host kernel's own instructions are
    /// sampled while PMSCR_EL2.E2SPE (or E1SPE) is in effect. Off by
    /// default: workloads alone then drive the unit. The PMU does not count
    /// these operations.
    pub fn set_instruction_sampling(&mut self, on: bool) {
        self.instruction_sampling = on;
    }

    /// Makes every direct write of an SPE register reach the unit at once,
    /// except PMBPTR_EL1 and PMBSR_EL1, which wait for the next context
    /// synchronization event as in strict mode. One of the orders the Arm
    /// ARM allows (an indirect read is guaranteed to see a direct write only
    /// after a context synchronization event, and may see it before, in any
    /// order with other writes): software that enables the buffer right
    /// after writing its pointer, with no ISB between, has the unit use the
    /// old pointer. Off by default.
    pub fn set_early_spe_writes(&mut self, on: bool) {
        self.early_spe_writes = on;
    }

    /// One instruction of software's, sampled when instruction sampling is
    /// on and profiling is enabled at the current Exception level.
    fn system_instruction(&mut self, mem: &mut PhysMem) {
        if !self.instruction_sampling {
            return;
        }
        let el = self.el;
        if !self.spe.as_ref().is_some_and(|s| s.sampling_at(el)) {
            return;
        }
        let len = SYSTEM_TEXT.end - SYSTEM_TEXT.start;
        let op = Op::other(SYSTEM_TEXT.start + (self.stats.total() * 4) % len);
        self.ops += 1;
        self.sample(mem, &op);
    }

    /// The GIC virtual CPU interface (what the ICH_*_EL2 registers hold).
    pub fn gic(&self) -> &VirtualCpuIf {
        &self.gic
    }

    /// Whether virtual IRQs come from the GIC virtual CPU interface:
    /// HCR_EL2.IMO is set for a guest (TGE clear).
    pub fn virtual_irqs_routed(&self) -> bool {
        hcr_el2::IMO.is_set(self.regs.hcr_el2) && !hcr_el2::TGE.is_set(self.regs.hcr_el2)
    }

    /// Buffer writes waiting for a DSB.
    pub fn pending_buffer_writes(&self) -> usize {
        self.pending.len()
    }

    /// The levels of the interrupt lines now.
    pub fn irq_lines(&self) -> IrqLines {
        IrqLines {
            pmbirq: self.spe.as_ref().is_some_and(|s| s.irq_level()),
            pmuirq: self.pmu.irq_level(self.synced_mdcr),
            vtimer: self.vtimer_irq_enabled && self.vtimer_output(),
            maintenance: self.gic.maintenance(),
        }
    }

    /// A context synchronization event: the units take the registers written since.
    fn context_sync(&mut self) {
        self.synced_hcr = self.regs.hcr_el2;
        self.synced_mdcr = self.regs.mdcr_el2;
        let ctl = Control {
            el2_implemented: true,
            hcr_el2: self.synced_hcr,
            mdcr_el2: self.synced_mdcr,
        };
        if let Some(spe) = self.spe.as_mut() {
            spe.sync(&ctl);
            self.synced_pmbptr = spe.read(SysReg::PMBPTR_EL1);
            self.synced_pmbsr = spe.read(SysReg::PMBSR_EL1);
        }
        self.pmu.sync(self.synced_mdcr);
    }

    /// Exception return to `el` (a context synchronization event).
    pub fn eret(&mut self, el: ExceptionLevel) {
        self.el = el;
        self.context_sync();
    }

    /// Exception entry to `el`, e.g. to take an interrupt (a context
    /// synchronization event).
    pub fn exception_entry(&mut self, el: ExceptionLevel) {
        self.el = el;
        self.context_sync();
    }

    /// The Exception level owning the profiling buffer, from the registers
    /// the SPE unit last synchronized.
    fn buffer_owner(&self) -> ExceptionLevel {
        profiling_buffer_owner(true, self.synced_mdcr)
    }

    /// Runs `workload` at the current Exception level for up to `budget`
    /// operations, skipping ahead between sampling points and counter
    /// overflows. Returns early when an interrupt line is asserted; `done`
    /// receives the operations executed.
    pub fn run(
        &mut self,
        mem: &mut PhysMem,
        workload: &mut dyn Workload,
        budget: u64,
        done: &mut u64,
    ) -> RunExit {
        *done = 0;
        let el = self.el;
        while *done < budget {
            let lines = self.irq_lines();
            if lines.any() {
                return RunExit::Interrupt(lines);
            }
            let remaining = budget - *done;
            let sampling = self.spe.as_ref().is_some_and(|s| s.sampling_at(el));
            // Operations before the next sample point.
            let mut chunk = remaining;
            if sampling {
                let to_sample = self.spe.as_ref().map_or(u64::MAX, |s| s.ops_to_sample());
                chunk = chunk.min(to_sample.saturating_sub(1));
            }
            // Stop exactly at the operation that overflows a counter.
            self.pmu.for_each_until_overflow(el, |event, k| {
                if chunk > 0 {
                    chunk = chunk.min(workload.ops_until(event, k, chunk));
                }
            });
            if chunk > 0 {
                let mut counts = EventCounts::default();
                workload.skip(chunk, &mut counts);
                self.account(&counts, el, chunk);
                if sampling {
                    if let Some(spe) = self.spe.as_mut() {
                        spe.skip(chunk);
                    }
                }
                *done += chunk;
                continue;
            }
            // chunk == 0 and budget left: the next operation is the sample point.
            let op = workload.step();
            let mut counts = EventCounts::default();
            op.add_events(&mut counts);
            self.account(&counts, el, 1);
            *done += 1;
            self.sample(mem, &op);
        }
        RunExit::Completed
    }

    fn account(&mut self, counts: &EventCounts, el: ExceptionLevel, ops: u64) {
        self.pmu.count(counts, el);
        self.events.add_all(counts);
        self.ops += ops;
        self.cycles += counts.get(Event::CPU_CYCLES);
    }

    /// The regime of data accesses at the current Exception level: EL2, and
    /// EL0 under a VHE host (E2H and TGE), use the EL2&0 tables.
    fn data_regime(&self) -> Regime {
        let host_el0 =
            self.el == ExceptionLevel::EL0 && self.e2h() && hcr_el2::TGE.is_set(self.regs.hcr_el2);
        if self.el == ExceptionLevel::EL2 || host_el0 {
            Regime::from_bases(self.regs.ttbr0_el2, None)
        } else {
            Regime::from_bases(self.regs.ttbr0_el1, self.stage2())
        }
    }

    /// The regime of the profiling buffer: the owning Exception level's.
    fn buffer_regime(&self) -> Regime {
        if self.buffer_owner() == ExceptionLevel::EL2 {
            Regime::from_bases(self.regs.ttbr0_el2, None)
        } else {
            Regime::from_bases(self.regs.ttbr0_el1, self.stage2())
        }
    }

    /// The VTTBR_EL2 value when HCR_EL2.VM enables stage 2.
    fn stage2(&self) -> Option<u64> {
        (self.synced_hcr & 1 != 0).then_some(self.regs.vttbr_el2)
    }

    fn sample(&mut self, mem: &mut PhysMem, op: &Op) {
        let data_pa = match op.kind {
            OpKind::Load | OpKind::Store => data_pa(
                mem,
                &self.data_regime(),
                op.data_va,
                self.el,
                op.kind == OpKind::Store,
            ),
            _ => None,
        };
        let ctx = SampleContext {
            el: self.el,
            ns: true,
            op_index: self.ops,
            data_pa,
            contextidr_el1: self.regs.contextidr_el1 as u32,
            contextidr_el2: self.regs.contextidr_el2 as u32,
            cntvct: self.cntvct(),
            cntpct: self.cycles,
        };
        self.with_spe_port(mem, |spe, port| spe.sample(op, &ctx, port));
    }

    /// Lends the SPE unit and its path to memory (the owning regime) to `f`.
    fn with_spe_port(&mut self, mem: &mut PhysMem, f: impl FnOnce(&mut Spe, &mut Port<'_>)) {
        let regime = self.buffer_regime();
        let tag = self.buffer_tag();
        if let Some(spe) = self.spe.as_mut() {
            let mut port = Port {
                mem,
                pending: &mut self.pending,
                regime,
                tag,
                tlb: &mut self.buffer_tlb,
                segments: Vec::new(),
            };
            f(spe, &mut port);
        }
    }

    fn psb_csync_now(&mut self, mem: &mut PhysMem) {
        self.with_spe_port(mem, |spe, port| spe.psb_csync(port));
    }

    /// A DSB: the buffer writes the unit released complete now, translated
    /// by the owning regime in effect now. The seeds drain with PSB CSYNC
    /// and DSB before the owner or its tables change; a write left pending
    /// across such a change lands where the new regime maps its address,
    /// or nowhere (one way of the UNPREDICTABLE outcome the architecture
    /// allows there).
    fn dsb_now(&mut self, mem: &mut PhysMem) {
        if self.pending.is_empty() {
            return;
        }
        let (regime, tag) = (self.buffer_regime(), self.buffer_tag());
        let mut segments = Vec::new();
        for w in std::mem::take(&mut self.pending) {
            let tlb = &mut self.buffer_tlb;
            let mut walk = |va| unit_translate(mem, &regime, tag, tlb, va);
            if buffer_segments(mem, &mut walk, w.va, w.bytes.len(), &mut segments).is_err() {
                continue;
            }
            for seg in &segments {
                // buffer_segments checked every piece is RAM.
                let _ = mem.write(seg.pa, &w.bytes[seg.offset..seg.offset + seg.len]);
            }
        }
    }

    /// The context the unit's walks are tagged with now: the owning regime
    /// (as last synchronized), its TTBR0's ASID and, for EL1&0, the VMID.
    fn buffer_tag(&self) -> TlbTag {
        let owner = self.buffer_owner();
        let ttbr0 = if owner == ExceptionLevel::EL2 {
            self.regs.ttbr0_el2
        } else {
            self.regs.ttbr0_el1
        };
        TlbTag::new(owner, ttbr0, self.regs.vttbr_el2)
    }

    /// The unit walks the page of its pointer if its buffer is enabled,
    /// and caches the result in place of any entry of the same context and
    /// page (a walk may happen whether or not one is cached; where the two
    /// differ, software broke the rules and the newer one wins, one of the
    /// outcomes the Arm ARM allows for conflicting entries). A walk that
    /// faults caches nothing and reports nothing.
    fn walk_buffer_pointer(&mut self, mem: &PhysMem) {
        let Some(spe) = self.spe.as_ref() else {
            return;
        };
        if !spe.profiling_buffer_enabled() {
            return;
        }
        let va = spe.effective(SysReg::PMBPTR_EL1);
        let tag = self.buffer_tag();
        if let Ok(pa) = self.buffer_regime().translate(mem, va, Access::WRITE) {
            self.buffer_tlb.fill(tag, va, pa);
        }
    }

    /// TLB maintenance reaching the SPE unit's translation cache: the
    /// entries of VMID `vmid`'s EL1&0 regime, or with `None` all of them.
    pub fn invalidate_buffer_tlb(&mut self, vmid: Option<u16>) {
        self.buffer_tlb.invalidate(vmid);
    }

    /// The SPE unit's translation cache.
    pub fn buffer_tlb(&self) -> &BufferTlb {
        &self.buffer_tlb
    }

    /// Attaches (or with `None` removes) a probe on this PE's [`Cpu`]
    /// boundary ([`crate::probe`]).
    pub fn set_probe(&mut self, probe: Option<crate::probe::ProbeHandle>) {
        self.probe = probe;
    }

    /// Software's view of this PE, with the memory its barriers act on.
    pub fn cpu<'a>(&'a mut self, mem: &'a mut PhysMem) -> PeCpu<'a> {
        PeCpu { pe: self, mem }
    }
}

/// A translation by the SPE unit: its cache's entry for `tag`, or a walk
/// of `regime` that is cached when it succeeds.
fn unit_translate(
    mem: &PhysMem,
    regime: &Regime,
    tag: TlbTag,
    tlb: &mut BufferTlb,
    va: u64,
) -> Result<u64, Fault> {
    if let Some(pa) = tlb.lookup(tag, va) {
        return Ok(pa);
    }
    let pa = regime.translate(mem, va, Access::WRITE)?;
    tlb.fill(tag, va, pa);
    Ok(pa)
}

/// The SPE unit's path to memory: the owning regime's translation (through
/// the unit's cache); the data lands at the next DSB.
struct Port<'a> {
    mem: &'a mut PhysMem,
    pending: &'a mut Vec<PendingWrite>,
    regime: Regime,
    tag: TlbTag,
    tlb: &'a mut BufferTlb,
    segments: Vec<Segment>,
}

impl BufferPort for Port<'_> {
    fn write(&mut self, va: u64, bytes: &[u8]) -> Result<(), BufferFault> {
        // A fault is reported now; the write itself completes at a DSB.
        let (mem, regime, tag) = (&*self.mem, &self.regime, self.tag);
        let tlb = &mut *self.tlb;
        let mut walk = |va| unit_translate(mem, regime, tag, tlb, va);
        buffer_segments(mem, &mut walk, va, bytes.len(), &mut self.segments)?;
        self.pending.push(PendingWrite {
            va,
            bytes: bytes.to_vec(),
        });
        Ok(())
    }
}

/// A PE as software sees it through the [`Cpu`] trait; every call is counted.
pub struct PeCpu<'a> {
    pe: &'a mut Pe,
    mem: &'a mut PhysMem,
}

impl PeCpu<'_> {
    /// The PE behind the interface (for the machine, not for software).
    pub fn pe(&mut self) -> &mut Pe {
        self.pe
    }
}

impl PeCpu<'_> {
    /// Runs the attached probe (detached meanwhile); what it decided.
    fn probe_verdict(&mut self, a: crate::probe::ProbeAccess) -> crate::probe::ProbeVerdict {
        let Some(p) = self.pe.probe.take() else {
            return crate::probe::ProbeVerdict::Proceed;
        };
        let v = p.0.before(self, a);
        self.pe.probe = Some(p);
        v
    }

    /// Whether the access goes on.
    fn probed(&mut self, a: crate::probe::ProbeAccess) -> bool {
        self.probe_verdict(a) == crate::probe::ProbeVerdict::Proceed
    }
}

impl Cpu for PeCpu<'_> {
    fn read(&mut self, reg: SysReg) -> Result<u64, AccessFault> {
        let v = self.probe_verdict(crate::probe::ProbeAccess::Read(reg));
        self.pe.system_instruction(self.mem);
        self.pe.stats.reads += 1;
        match v {
            crate::probe::ProbeVerdict::ReadAs(value) => Ok(value),
            _ => self.pe.read_reg(reg),
        }
    }
    fn write(&mut self, reg: SysReg, val: u64) -> Result<(), AccessFault> {
        if !self.probed(crate::probe::ProbeAccess::Write(reg, val)) {
            return Ok(());
        }
        self.pe.system_instruction(self.mem);
        self.pe.stats.writes += 1;
        self.pe.write_reg(reg, val)?;
        if matches!(
            reg,
            SysReg::TTBR0_EL1 | SysReg::TTBR0_EL12 | SysReg::TTBR0_EL2 | SysReg::VTTBR_EL2
        ) {
            self.pe.walk_buffer_pointer(self.mem);
        }
        Ok(())
    }
    fn isb(&mut self) {
        if self.probed(crate::probe::ProbeAccess::Isb) {
            self.pe.system_instruction(self.mem);
            self.pe.stats.isb += 1;
            self.pe.context_sync();
            self.pe.walk_buffer_pointer(self.mem);
        }
    }
    fn dsb_nsh(&mut self) {
        if self.probed(crate::probe::ProbeAccess::DsbNsh) {
            self.pe.system_instruction(self.mem);
            self.pe.stats.dsb += 1;
            self.pe.dsb_now(self.mem);
        }
    }
    fn psb_csync(&mut self) {
        if self.probed(crate::probe::ProbeAccess::PsbCsync) {
            self.pe.system_instruction(self.mem);
            self.pe.stats.psb += 1;
            self.pe.psb_csync_now(self.mem);
        }
    }
    fn current_el(&self) -> ExceptionLevel {
        self.pe.el
    }
    fn load(&mut self, va: u64, buf: &mut [u8]) -> Result<(), MemoryFault> {
        let regime = self.pe.data_regime();
        let access = Access {
            write: false,
            el0: self.pe.el == ExceptionLevel::EL0,
        };
        let mut done = 0usize;
        while done < buf.len() {
            let at = va.wrapping_add(done as u64);
            let n = ((PAGE_SIZE - (at & (PAGE_SIZE - 1))) as usize).min(buf.len() - done);
            let fault = MemoryFault { va: at };
            let pa = regime.translate(self.mem, at, access).map_err(|_| fault)?;
            self.mem
                .read(pa, &mut buf[done..done + n])
                .map_err(|_| fault)?;
            done += n;
        }
        Ok(())
    }
}
