//! The guest PMU: the vCPU's PMUv3 registers, their world switch, and the
//! emulation of the accesses that trap, in KVM's two modes.
//!
//! In both modes the guest's event counters `0..nr` and the cycle counter
//! are backed by the *same-numbered* hardware counters, which the host
//! leaves to guests (the host's reservation `HPMN..N` is never touched:
//! every bitmap write is masked to the guest's counters). While the vCPU is
//! loaded and its PMU state is live, the hardware holds the guest's
//! counters, enables, interrupt enables, PMCR_EL0, PMUSERENR_EL0 and (in
//! partitioned mode) PMSELR_EL0; the hypervisor holds the rest:
//!
//! - the event types, as the guest wrote them; the hardware gets them with
//!   the VM's event filter applied (a denied event counts nothing: P and U
//!   set) and EL2 always excluded (NSH clear);
//! - the overflow flags (PMOVS is always trapped): a guest counter's flag
//!   that appears in the hardware is moved to the vCPU at the next physical
//!   interrupt exit, at put, or when the guest reads PMOVS, and the
//!   hardware flag is cleared, so an overflow is recorded once and delivered
//!   once as the guest's virtual PMU interrupt, whose level is
//!   `PMCR_EL0.E && (PMOVSSET & PMINTENSET & guest mask) != 0`.
//!
//! **Partitioned mode** (seed 001 and its series): MDCR_EL2.HPMN = the
//! guest's number of counters, HPMD (FEAT_PMUv3p1) and HCCD (FEAT_PMUv3p5)
//! set so the guest's counters never count at EL2; with FEAT_FGT, TPM and
//! TPMCR clear and the fine-grained traps set for PMOVS, PMEVTYPERn,
//! PMCCFILTR, PMCEIDn and PMMIR only, so PMCR, PMUSERENR, PMSELR, PMCCNTR,
//! PMCNTEN, PMINTEN, PMSWINC and PMEVCNTRn reach the hardware without an
//! exit. Without FEAT_FGT, TPM traps everything and the handlers below read
//! and write the hardware directly: the guest still counts.
//!
//! **Emulated mode** (the classic vPMU): TPM and TPMCR always set; every
//! access exits and is emulated against the hardware counters that back
//! the guest's, and the guest's N is emulated in PMCR_EL0. The hardware
//! keeps the host's MDCR_EL2.HPMN.
//!
//! **Lazy**: until the guest's first PMU access the state stays with the
//! hypervisor, TPM traps everything and load and put touch no PMU register;
//! the first access makes the state live ([`GuestPmu::load`]).
//!
//! **nVHE hosts** (emulated mode only, as upstream: Linux's
//! `kvm_set_pmu_events` and hyp/nvhe/switch.c's `__pmu_switch_to_guest` /
//! `__pmu_switch_to_host`): the host kernel runs at EL1 with MDCR_EL2.HPMN
//! = N and counts on the top counters, enabled by PMCR_EL0.E like the
//! guest's, and event filters cannot tell its EL1 from the guest's. So the
//! guest's counters are the same-numbered hardware counters, programmed
//! with EL2 excluded, but PMCR_EL0, PMCNTENSET_EL0 and PMUSERENR_EL0 stay
//! with the vCPU ([`VpmuCtx::nvhe`]) and the hypervisor at EL2 switches
//! them at every entry and exit ([`GuestPmu::switch_to_guest`],
//! [`PmuSwitch::switch_to_host`]): the host's guest-excluding counters
//! (`events_host`) into PMCNTENCLR_EL0 and the guest's enabled counters
//! (`events_guest`) into PMCNTENSET_EL0 at entry, the reverse at exit,
//! with PMCR_EL0 and PMUSERENR_EL0 written only when the guest's differ
//! from the host's. Load and put (at EL1, in the host kernel) move the
//! counters, event types and interrupt enables.

use hyperprof_arch::{
    mdcr_el2, pm_counter_bits, pmccfiltr_el0, pmcr_el0, pmevtyper_el0, pmselr_el0, pmuserenr_el0,
    AccessFault, Cpu, EventCounter, ExceptionLevel, Field, PmuVer, SysReg,
};

/// The two ways KVM gives a guest a PMU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VpmuMode {
    /// The guest owns hardware counters `0..HPMN` directly (seed 001).
    Partitioned,
    /// Every access traps and is emulated.
    Emulated,
}

/// What the guest PMU needs to know of its VM and CPU.
#[derive(Clone, Copy)]
pub struct VpmuCtx<'a> {
    /// The mode.
    pub mode: VpmuMode,
    /// The guest's number of event counters (its PMCR_EL0.N).
    pub nr: u8,
    /// The hardware's PMU version.
    pub version: PmuVer,
    /// The CPU has FEAT_FGT.
    pub fgt: bool,
    /// The host kernel runs at EL1 (nVHE): PMCR_EL0, the guest's counter
    /// enables and PMUSERENR_EL0 are the vCPU's, switched at every entry
    /// and exit; the hardware holds only the counters, event types,
    /// interrupt enables and overflow flags.
    pub nvhe: bool,
    /// The VM's event filter: whether the guest may count an event.
    pub allowed: &'a dyn Fn(u16) -> bool,
}

impl VpmuCtx<'_> {
    /// The guest's counters: event counters `0..nr` and the cycle counter.
    pub fn mask(&self) -> u64 {
        pm_counter_bits::counter_range(0, self.nr) | pm_counter_bits::C.mask()
    }

    fn events_mask(&self) -> u64 {
        pm_counter_bits::counter_range(0, self.nr)
    }

    /// Whether the fine-grained traps leave the untrapped registers to the
    /// guest (partitioned mode on a CPU with FEAT_FGT).
    pub fn direct(&self) -> bool {
        self.mode == VpmuMode::Partitioned && self.fgt
    }

    /// MDCR_EL2 while the vCPU runs, from the host's value: the PMU fields
    /// set as the mode and the state (`live`) need, the others kept.
    pub fn mdcr(&self, host_mdcr: u64, live: bool) -> u64 {
        let mut m = host_mdcr;
        if self.mode == VpmuMode::Partitioned && live {
            m = mdcr_el2::HPMN.set(m, u64::from(self.nr));
        }
        m = mdcr_el2::HPMD.set(m, u64::from(self.version.has_hpmd()));
        m = mdcr_el2::HCCD.set(m, u64::from(self.version.has_hccd()));
        let trap_all = !live || !self.direct();
        m = mdcr_el2::TPM.set(m, u64::from(trap_all));
        mdcr_el2::TPMCR.set(m, u64::from(trap_all))
    }

    /// The hardware's event type for a guest's `PMEVTYPER<n>_EL0` value:
    /// EL2 excluded; an event the VM's filter denies counts nowhere.
    pub fn hw_evtyper(&self, guest: u64) -> u64 {
        let event = pmevtyper_el0::EVTCOUNT.get(guest) as u16;
        let mut hw = pmevtyper_el0::NSH.set(guest, 0);
        if !(self.allowed)(event) {
            hw = pmevtyper_el0::P.set(pmevtyper_el0::U.set(hw, 1), 1);
        }
        hw
    }

    /// The hardware's PMCCFILTR_EL0 for the guest's: EL2 excluded; nothing
    /// counted when the filter denies CPU_CYCLES.
    pub fn hw_ccfiltr(&self, guest: u64) -> u64 {
        let mut hw = pmccfiltr_el0::NSH.set(guest, 0);
        if !(self.allowed)(CPU_CYCLES) {
            hw = pmccfiltr_el0::P.set(pmccfiltr_el0::U.set(hw, 1), 1);
        }
        hw
    }

    /// `PMEVTYPER<n>_EL0` bits that are not RES0 for this PMU version.
    pub fn evtyper_writable(&self) -> u64 {
        let mut res0 = pmevtyper_el0::RES0;
        if !self.version.at_least(PmuVer::V3p1) {
            res0 |= EVTCOUNT_HIGH.mask();
        }
        !res0
    }

    /// The PMCR_EL0 bits a vCPU keeps of a written value: E, D, X, DP, LP
    /// (RES0 before FEAT_PMUv3p5), and LC, RES1 on this AArch64-only PE.
    pub fn pmcr_stored(&self, v: u64) -> u64 {
        let mut keep = v & PMCR_STATE;
        if !self.version.has_lp() {
            keep = pmcr_el0::LP.set(keep, 0);
        }
        pmcr_el0::LC.set(keep, 1)
    }

    /// Event counters overflow at 64 bits (PMCR_EL0.LP with FEAT_PMUv3p5).
    fn wide(&self, pmcr: u64) -> bool {
        self.version.has_lp() && pmcr_el0::LP.is_set(pmcr)
    }
}

/// The architected CPU_CYCLES event, which the cycle counter counts.
const CPU_CYCLES: u16 = 0x11;
/// The architected SW_INCR event.
const SW_INCR: u16 = 0x00;
/// The architected CHAIN event.
const CHAIN: u16 = 0x1E;
/// Bits \[15:10\] of evtCount: RES0 before FEAT_PMUv3p1.
const EVTCOUNT_HIGH: Field = Field::bits(15, 10);

fn evcntr(i: u8) -> Result<SysReg, AccessFault> {
    EventCounter::new(i)
        .map(SysReg::PMEVCNTR_EL0)
        .ok_or(AccessFault::Undefined)
}

fn evtyper(i: u8) -> Result<SysReg, AccessFault> {
    EventCounter::new(i)
        .map(SysReg::PMEVTYPER_EL0)
        .ok_or(AccessFault::Undefined)
}

/// The counter `i` counts at `el` under the filter bits of `typer`.
fn counts_at(typer: u64, el: ExceptionLevel) -> bool {
    match el {
        ExceptionLevel::EL0 => !pmevtyper_el0::U.is_set(typer),
        ExceptionLevel::EL1 => !pmevtyper_el0::P.is_set(typer),
        _ => false,
    }
}

/// A vCPU's PMUv3 registers as the hypervisor keeps them. While the state
/// is live on a CPU the fields the hardware holds are stale; [`GuestPmu::put`]
/// brings them back.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GuestPmu {
    /// PMCR_EL0 (E, D, X, DP, LC, LP; N and the reset bits are not stored).
    pub pmcr: u64,
    /// PMCNTENSET_EL0.
    pub cnten: u64,
    /// PMINTENSET_EL1.
    pub inten: u64,
    /// PMOVSSET_EL0: always the hypervisor's.
    pub ovs: u64,
    /// PMSELR_EL0.
    pub selr: u64,
    /// PMUSERENR_EL0.
    pub userenr: u64,
    /// `PMEVTYPER<n>_EL0` as the guest wrote them: always the hypervisor's.
    pub evtyper: [u64; 31],
    /// PMCCFILTR_EL0 as the guest wrote it: always the hypervisor's.
    pub ccfiltr: u64,
    /// `PMEVCNTR<n>_EL0`.
    pub evcntr: [u64; 31],
    /// PMCCNTR_EL0.
    pub ccntr: u64,
}

impl Default for GuestPmu {
    fn default() -> Self {
        GuestPmu::reset()
    }
}

/// What a load left on the hardware that put must undo.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HostPmuRegs {
    /// The host's PMUSERENR_EL0.
    pub pmuserenr_el0: u64,
}

/// What an nVHE entry changed of the host's PMU, for the exit to undo
/// ([`GuestPmu::switch_to_guest`], [`PmuSwitch::switch_to_host`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PmuSwitch {
    /// The host's counters that exclude guests: stopped at entry.
    pub events_host: u64,
    /// The guest's enabled counters: started at entry.
    pub events_guest: u64,
    /// The host's PMCR_EL0, when the guest's replaced it.
    pub host_pmcr: Option<u64>,
    /// The host's PMUSERENR_EL0, when the guest's replaced it.
    pub host_pmuserenr: Option<u64>,
}

impl PmuSwitch {
    /// Entry of a vCPU whose PMU state is not live (or that has no PMU):
    /// only the host's guest-excluding counters stop.
    pub fn host_only(c: &mut dyn Cpu, events_host: u64) -> Result<PmuSwitch, AccessFault> {
        if events_host != 0 {
            c.write(SysReg::PMCNTENCLR_EL0, events_host)?;
        }
        Ok(PmuSwitch {
            events_host,
            ..PmuSwitch::default()
        })
    }

    /// nVHE exit (the hypervisor at EL2): the guest's counters stopped,
    /// the host's PMCR_EL0 and PMUSERENR_EL0 back where the entry replaced
    /// them, the host's counters started again.
    pub fn switch_to_host(&self, c: &mut dyn Cpu) -> Result<(), AccessFault> {
        if self.events_guest != 0 {
            c.write(SysReg::PMCNTENCLR_EL0, self.events_guest)?;
        }
        if let Some(v) = self.host_pmcr {
            c.write(SysReg::PMCR_EL0, v)?;
        }
        if let Some(v) = self.host_pmuserenr {
            c.write(SysReg::PMUSERENR_EL0, v)?;
        }
        if self.events_host != 0 {
            c.write(SysReg::PMCNTENSET_EL0, self.events_host)?;
        }
        Ok(())
    }
}

impl GuestPmu {
    /// The state KVM_ARM_VCPU_INIT gives (the architecturally UNKNOWN
    /// fields as 0, PMCR_EL0.LC set as on an AArch64-only PE).
    pub fn reset() -> GuestPmu {
        GuestPmu {
            pmcr: pmcr_el0::LC.mask(),
            cnten: 0,
            inten: 0,
            ovs: 0,
            selr: 0,
            userenr: 0,
            evtyper: [0; 31],
            ccfiltr: 0,
            evcntr: [0; 31],
            ccntr: 0,
        }
    }

    /// The guest's virtual PMU interrupt level from the state the
    /// hypervisor holds (valid while the state is not live).
    pub fn irq_level(&self, ctx: &VpmuCtx<'_>) -> bool {
        pmcr_el0::E.is_set(self.pmcr) && self.ovs & self.inten & ctx.mask() != 0
    }

    /// Makes the state live on the CPU `c` (at EL2): counters, PMCR_EL0,
    /// the enables and PMUSERENR_EL0 written (the host's PMUSERENR_EL0,
    /// `host.pmuserenr_el0`, is what put restores), and the event types
    /// when `types` (the CPU last held another vCPU's). PMSELR_EL0 is not
    /// written here: [`GuestPmu::enter`] switches it late. The hardware's
    /// guest enables must be clear (put leaves them so).
    pub fn load(&self, c: &mut dyn Cpu, ctx: &VpmuCtx<'_>, types: bool) -> Result<(), AccessFault> {
        for i in 0..ctx.nr {
            c.write(evcntr(i)?, self.evcntr[usize::from(i)])?;
        }
        c.write(SysReg::PMCCNTR_EL0, self.ccntr)?;
        if types {
            self.write_types(c, ctx)?;
        }
        if ctx.nvhe {
            // The enables, PMCR_EL0 and PMUSERENR_EL0 go in at entry.
            return c.write(SysReg::PMINTENSET_EL1, self.inten & ctx.mask());
        }
        c.write(SysReg::PMUSERENR_EL0, self.userenr)?;
        c.write(SysReg::PMCR_EL0, self.pmcr & PMCR_STATE)?;
        c.write(SysReg::PMCNTENSET_EL0, self.cnten & ctx.mask())?;
        c.write(SysReg::PMINTENSET_EL1, self.inten & ctx.mask())?;
        self.park_pending(c, ctx, self.irq_level(ctx))
    }

    /// Writes the hardware event types of every guest counter.
    pub fn write_types(&self, c: &mut dyn Cpu, ctx: &VpmuCtx<'_>) -> Result<(), AccessFault> {
        for i in 0..ctx.nr {
            let hw = ctx.hw_evtyper(self.evtyper[usize::from(i)]);
            c.write(evtyper(i)?, hw)?;
        }
        c.write(SysReg::PMCCFILTR_EL0, ctx.hw_ccfiltr(self.ccfiltr))
    }

    /// Takes the live state back from the CPU (at EL2): reads what the
    /// guest could change without an exit, moves the guest's overflow
    /// flags to the vCPU, stops the guest's counters and interrupt enables
    /// and restores the host's PMUSERENR_EL0. The host's counters are not
    /// touched.
    pub fn put(
        &mut self,
        c: &mut dyn Cpu,
        ctx: &VpmuCtx<'_>,
        host: HostPmuRegs,
    ) -> Result<(), AccessFault> {
        for i in 0..ctx.nr {
            self.evcntr[usize::from(i)] = c.read(evcntr(i)?)?;
        }
        self.ccntr = c.read(SysReg::PMCCNTR_EL0)?;
        let mask = ctx.mask();
        if ctx.nvhe {
            // The exit disabled the guest's counters already.
            self.inten = c.read(SysReg::PMINTENSET_EL1)? & mask;
            self.fold_overflow(c, ctx)?;
            return c.write(SysReg::PMINTENCLR_EL1, mask);
        }
        self.pmcr = c.read(SysReg::PMCR_EL0)? & PMCR_STATE;
        self.cnten = c.read(SysReg::PMCNTENSET_EL0)? & mask;
        self.inten = c.read(SysReg::PMINTENSET_EL1)? & mask;
        self.userenr = c.read(SysReg::PMUSERENR_EL0)?;
        if ctx.direct() {
            self.selr = c.read(SysReg::PMSELR_EL0)?;
        }
        self.fold_overflow(c, ctx)?;
        c.write(SysReg::PMCNTENCLR_EL0, mask)?;
        c.write(SysReg::PMINTENCLR_EL1, mask)?;
        c.write(SysReg::PMUSERENR_EL0, host.pmuserenr_el0)
    }

    /// Moves the guest's overflow flags from the hardware to the vCPU
    /// (one read; a write only when there are some).
    pub fn fold_overflow(&mut self, c: &mut dyn Cpu, ctx: &VpmuCtx<'_>) -> Result<(), AccessFault> {
        let hw = c.read(SysReg::PMOVSSET_EL0)? & ctx.mask();
        if hw != 0 {
            c.write(SysReg::PMOVSCLR_EL0, hw)?;
            self.ovs |= hw;
        }
        Ok(())
    }

    /// Partitioned mode with FEAT_FGT, the state live: the guest's pending
    /// overflow flags are set in the hardware's PMOVSSET_EL0 too when they
    /// do not assert its interrupt (`level` false: PMCR_EL0.E or their
    /// PMINTENSET_EL1 bits clear). The guest sets PMCR_EL0.E and
    /// PMINTENSET_EL1 without an exit; with the flags in the hardware that
    /// write raises the physical PMU interrupt, whose exit folds them back
    /// ([`GuestPmu::fold_overflow`]) and asserts the virtual line, as a
    /// level-sensitive interrupt requires. Kept in the vCPU only, a flag
    /// the guest set through PMOVSSET_EL0 (or one an exit had folded) was
    /// never delivered after such a write. No access when nothing is
    /// pending.
    pub fn park_pending(
        &self,
        c: &mut dyn Cpu,
        ctx: &VpmuCtx<'_>,
        level: bool,
    ) -> Result<(), AccessFault> {
        let pending = self.ovs & ctx.mask();
        if ctx.direct() && !level && pending != 0 {
            c.write(SysReg::PMOVSSET_EL0, pending)?;
        }
        Ok(())
    }

    /// The virtual interrupt level while the state is live: PMCR_EL0.E and
    /// PMINTENSET_EL1 come from the hardware (read only when a flag is set).
    pub fn live_irq_level(&self, c: &mut dyn Cpu, ctx: &VpmuCtx<'_>) -> Result<bool, AccessFault> {
        if self.ovs & ctx.mask() == 0 {
            return Ok(false);
        }
        let e = pmcr_el0::E.is_set(self.pmcr_now(c, ctx)?);
        let inten = c.read(SysReg::PMINTENSET_EL1)?;
        Ok(e && self.ovs & inten & ctx.mask() != 0)
    }

    /// Guest entry: PMSELR_EL0 switched late, only when the hardware's
    /// (`hw_selr`, which the hypervisor tracks per CPU) differs. Returns the
    /// value the hardware now holds.
    pub fn enter(
        &self,
        c: &mut dyn Cpu,
        ctx: &VpmuCtx<'_>,
        hw_selr: u64,
    ) -> Result<u64, AccessFault> {
        if ctx.direct() && self.selr != hw_selr {
            c.write(SysReg::PMSELR_EL0, self.selr)?;
            return Ok(self.selr);
        }
        Ok(hw_selr)
    }

    /// nVHE guest entry (the hypervisor at EL2, the state live): the
    /// host's guest-excluding counters `events_host` stopped, the guest's
    /// PMCR_EL0 and PMUSERENR_EL0 written where they differ from the
    /// host's (`host_pmuserenr` is what the host told the hypervisor; its
    /// PMCR_EL0 is read), the guest's enabled counters started. Returns
    /// what the exit must undo.
    pub fn switch_to_guest(
        &self,
        c: &mut dyn Cpu,
        ctx: &VpmuCtx<'_>,
        events_host: u64,
        host_pmuserenr: u64,
    ) -> Result<PmuSwitch, AccessFault> {
        let mut sw = PmuSwitch::host_only(c, events_host)?;
        let host_pmcr = c.read(SysReg::PMCR_EL0)? & PMCR_STATE;
        if host_pmcr != self.pmcr {
            c.write(SysReg::PMCR_EL0, self.pmcr)?;
            sw.host_pmcr = Some(host_pmcr);
        }
        if host_pmuserenr != self.userenr {
            c.write(SysReg::PMUSERENR_EL0, self.userenr)?;
            sw.host_pmuserenr = Some(host_pmuserenr);
        }
        sw.events_guest = self.cnten & ctx.mask();
        if sw.events_guest != 0 {
            c.write(SysReg::PMCNTENSET_EL0, sw.events_guest)?;
        }
        Ok(sw)
    }

    /// Emulates a trapped guest access (`write` `None` for a read) made at
    /// `el`, with the state live on `c` (the hypervisor at EL2). The guest
    /// sees what a PMU with `ctx.nr` counters shows: UNDEFINED for counters
    /// it does not have, bitmaps masked to its counters, its N in
    /// PMCR_EL0, the host's counters invisible.
    pub fn emulate(
        &mut self,
        c: &mut dyn Cpu,
        ctx: &VpmuCtx<'_>,
        reg: SysReg,
        write: Option<u64>,
        el: ExceptionLevel,
    ) -> Result<u64, AccessFault> {
        const UNDEF: Result<u64, AccessFault> = Err(AccessFault::Undefined);
        let mask = ctx.mask();
        let nr = ctx.nr;
        let indirect = matches!(reg, SysReg::PMXEVTYPER_EL0 | SysReg::PMXEVCNTR_EL0);
        let sel = if indirect {
            let raw = pmselr_el0::SEL.get(self.selr_now(c, ctx));
            u8::try_from(raw).unwrap_or(pm_counter_bits::CYCLE_COUNTER)
        } else {
            0
        };
        let reg = match reg {
            SysReg::PMXEVTYPER_EL0 => match sel {
                pm_counter_bits::CYCLE_COUNTER => SysReg::PMCCFILTR_EL0,
                s if s < nr => {
                    SysReg::PMEVTYPER_EL0(EventCounter::new(s).ok_or(AccessFault::Undefined)?)
                }
                _ => return UNDEF,
            },
            SysReg::PMXEVCNTR_EL0 => match sel {
                s if s < nr => {
                    SysReg::PMEVCNTR_EL0(EventCounter::new(s).ok_or(AccessFault::Undefined)?)
                }
                _ => return UNDEF,
            },
            r => r,
        };
        let hw = |c: &mut dyn Cpu| match write {
            Some(v) => c.write(reg, v).map(|()| 0),
            None => c.read(reg),
        };
        match (reg, write) {
            (SysReg::PMCR_EL0, None) => {
                let v = self.pmcr_now(c, ctx)?;
                Ok(pmcr_el0::N.set(v, u64::from(nr)))
            }
            (SysReg::PMCR_EL0, Some(v)) if ctx.nvhe => {
                self.pmcr = ctx.pmcr_stored(v);
                if pmcr_el0::C.is_set(v) {
                    c.write(SysReg::PMCCNTR_EL0, 0)?;
                }
                if pmcr_el0::P.is_set(v) {
                    for i in 0..nr {
                        c.write(evcntr(i)?, 0)?;
                    }
                }
                Ok(0)
            }
            (SysReg::PMCR_EL0, Some(v)) => {
                // P from EL2 would reset the host's counters too: the
                // guest's are reset one by one.
                let keep = v & !(pmcr_el0::P.mask() | pmcr_el0::N.mask());
                c.write(SysReg::PMCR_EL0, keep)?;
                if pmcr_el0::P.is_set(v) {
                    for i in 0..nr {
                        c.write(evcntr(i)?, 0)?;
                    }
                }
                Ok(0)
            }
            (SysReg::PMCNTENSET_EL0 | SysReg::PMCNTENCLR_EL0, None) if ctx.nvhe => {
                Ok(self.cnten & mask)
            }
            (SysReg::PMCNTENSET_EL0, Some(v)) if ctx.nvhe => {
                self.cnten |= v & mask;
                Ok(0)
            }
            (SysReg::PMCNTENCLR_EL0, Some(v)) if ctx.nvhe => {
                self.cnten &= !(v & mask);
                Ok(0)
            }
            (SysReg::PMUSERENR_EL0, None) if ctx.nvhe => Ok(self.userenr),
            (SysReg::PMUSERENR_EL0, Some(v)) if ctx.nvhe => {
                self.userenr = v & !pmuserenr_el0::RES0;
                Ok(0)
            }
            (SysReg::PMCNTENSET_EL0 | SysReg::PMINTENSET_EL1, None)
            | (SysReg::PMCNTENCLR_EL0 | SysReg::PMINTENCLR_EL1, None) => Ok(c.read(reg)? & mask),
            (SysReg::PMCNTENSET_EL0 | SysReg::PMCNTENCLR_EL0, Some(v))
            | (SysReg::PMINTENSET_EL1 | SysReg::PMINTENCLR_EL1, Some(v)) => {
                c.write(reg, v & mask).map(|()| 0)
            }
            (SysReg::PMOVSSET_EL0 | SysReg::PMOVSCLR_EL0, None) => {
                self.fold_overflow(c, ctx)?;
                Ok(self.ovs & mask)
            }
            (SysReg::PMOVSSET_EL0, Some(v)) => {
                self.fold_overflow(c, ctx)?;
                self.ovs |= v & mask;
                Ok(0)
            }
            (SysReg::PMOVSCLR_EL0, Some(v)) => {
                self.fold_overflow(c, ctx)?;
                self.ovs &= !(v & mask);
                Ok(0)
            }
            (SysReg::PMSWINC_EL0, Some(v)) => {
                self.software_increment(c, ctx, v & ctx.events_mask(), el)?;
                Ok(0)
            }
            (SysReg::PMSELR_EL0, None) if !ctx.direct() => Ok(self.selr),
            (SysReg::PMSELR_EL0, Some(v)) if !ctx.direct() => {
                self.selr = v & pmselr_el0::SEL.mask();
                Ok(0)
            }
            (SysReg::PMEVCNTR_EL0(n), _) if n.index() >= nr => UNDEF,
            (SysReg::PMEVTYPER_EL0(n), _) if n.index() >= nr => UNDEF,
            (SysReg::PMEVTYPER_EL0(n), None) => Ok(self.evtyper[usize::from(n.index())]),
            (SysReg::PMEVTYPER_EL0(n), Some(v)) => {
                let stored = v & ctx.evtyper_writable();
                self.evtyper[usize::from(n.index())] = stored;
                c.write(reg, ctx.hw_evtyper(stored))?;
                Ok(0)
            }
            (SysReg::PMCCFILTR_EL0, None) => Ok(self.ccfiltr),
            (SysReg::PMCCFILTR_EL0, Some(v)) => {
                self.ccfiltr = v & !pmccfiltr_el0::RES0;
                c.write(reg, ctx.hw_ccfiltr(self.ccfiltr))?;
                Ok(0)
            }
            (SysReg::PMCEID0_EL0 | SysReg::PMCEID1_EL0, None) => {
                let base: u16 = if reg == SysReg::PMCEID0_EL0 { 0 } else { 0x20 };
                let mut v = c.read(reg)?;
                for bit in 0..32u16 {
                    if v & (1 << bit) != 0 && !(ctx.allowed)(base + bit) {
                        v &= !(1 << bit);
                    }
                }
                Ok(v)
            }
            (SysReg::PMUSERENR_EL0, Some(v)) => c.write(reg, v & !pmuserenr_el0::RES0).map(|()| 0),
            (
                SysReg::PMEVCNTR_EL0(_)
                | SysReg::PMCCNTR_EL0
                | SysReg::PMUSERENR_EL0
                | SysReg::PMMIR_EL1
                | SysReg::PMSELR_EL0,
                _,
            ) => hw(c),
            // Writes of read-only registers, reads of PMSWINC_EL0, and
            // anything that is not a PMU register.
            _ => UNDEF,
        }
    }

    /// PMCR_EL0 as the guest sees it (without N): the vCPU's on an nVHE
    /// host, else the hardware's.
    fn pmcr_now(&self, c: &mut dyn Cpu, ctx: &VpmuCtx<'_>) -> Result<u64, AccessFault> {
        if ctx.nvhe {
            Ok(self.pmcr)
        } else {
            c.read(SysReg::PMCR_EL0)
        }
    }

    /// PMSELR_EL0 as the guest last set it: the hardware's in direct mode.
    fn selr_now(&self, c: &mut dyn Cpu, ctx: &VpmuCtx<'_>) -> u64 {
        if ctx.direct() {
            c.read(SysReg::PMSELR_EL0).unwrap_or(self.selr)
        } else {
            self.selr
        }
    }

    /// PMSWINC_EL0 emulated: the hardware cannot do it for the guest (from
    /// EL2 the guest's counters, which exclude EL2, would not count), so
    /// each selected counter that is enabled, counts SW_INCR and counts at
    /// the guest's `el` is incremented here, with overflow and CHAIN as the
    /// architecture has them.
    fn software_increment(
        &mut self,
        c: &mut dyn Cpu,
        ctx: &VpmuCtx<'_>,
        bits: u64,
        el: ExceptionLevel,
    ) -> Result<(), AccessFault> {
        if bits == 0 {
            return Ok(());
        }
        let pmcr = self.pmcr_now(c, ctx)?;
        if !pmcr_el0::E.is_set(pmcr) {
            return Ok(());
        }
        let cnten = if ctx.nvhe {
            self.cnten
        } else {
            c.read(SysReg::PMCNTENSET_EL0)?
        };
        let wide = ctx.wide(pmcr);
        let counts = |typer: u64, i: u8, want: u16| {
            cnten & (1 << i) != 0
                && pmevtyper_el0::EVTCOUNT.get(typer) == u64::from(want)
                && counts_at(typer, el)
        };
        for i in 0..ctx.nr {
            let typer = self.evtyper[usize::from(i)];
            if bits & (1 << i) == 0 || !counts(typer, i, SW_INCR) {
                continue;
            }
            if !self.increment(c, ctx, i, wide)? {
                continue;
            }
            // An overflow of an even counter at 32 bits is a CHAIN event for
            // the odd one above it.
            let odd = i + 1;
            if i % 2 == 0 && !wide && odd < ctx.nr {
                let t = self.evtyper[usize::from(odd)];
                if counts(t, odd, CHAIN) {
                    self.increment(c, ctx, odd, wide)?;
                }
            }
        }
        Ok(())
    }

    /// Adds 1 to the hardware counter `i`; on overflow sets the guest's
    /// flag and says so.
    fn increment(
        &mut self,
        c: &mut dyn Cpu,
        ctx: &VpmuCtx<'_>,
        i: u8,
        wide: bool,
    ) -> Result<bool, AccessFault> {
        let reg = evcntr(i)?;
        let v = c.read(reg)?;
        let (new, overflow) = if wide {
            let n = v.wrapping_add(1);
            (n, n == 0)
        } else if ctx.version.has_lp() {
            // FEAT_PMUv3p5: a 64-bit counter that overflows at 32 bits (a
            // carry out of bit 31) while bits [63:32] keep counting, as the
            // hardware counts (kvm-unit-tests pmu-sw-incr expects
            // PRE_OVERFLOW_32 + 100 = 0x1_0000_0054). Dropping the carry
            // made an emulated PMSWINC_EL0 differ from a counted event.
            let n = v.wrapping_add(1);
            (n, n & 0xFFFF_FFFF == 0)
        } else {
            let low = (v as u32).wrapping_add(1);
            ((v & !0xFFFF_FFFF) | u64::from(low), low == 0)
        };
        c.write(reg, new)?;
        if overflow {
            self.ovs |= 1 << i;
        }
        Ok(overflow)
    }
}

/// The PMCR_EL0 bits a vCPU keeps: E, D, X, DP, LC, LP.
const PMCR_STATE: u64 = pmcr_el0::E.mask()
    | pmcr_el0::D.mask()
    | pmcr_el0::X.mask()
    | pmcr_el0::DP.mask()
    | pmcr_el0::LC.mask()
    | pmcr_el0::LP.mask();

/// The fine-grained trap values of partitioned mode: reads of PMOVS,
/// PMEVTYPERn, PMCCFILTR, PMCEIDn and PMMIR trap; writes of PMOVS,
/// PMEVTYPERn and PMCCFILTR trap; nothing else of the PMU does. `spe_rd`
/// are the SPE read traps to keep.
pub fn partitioned_fgt(spe_rd: u64) -> (u64, u64) {
    use hyperprof_arch::{hdfgrtr_el2 as rd, hdfgwtr_el2 as wr};
    let rd_traps = rd::PMOVS.mask()
        | rd::PMEVTYPERn_EL0.mask()
        | rd::PMCCFILTR_EL0.mask()
        | rd::PMCEIDn_EL0.mask()
        | rd::PMMIR_EL1.mask();
    let wr_traps = wr::PMOVS.mask() | wr::PMEVTYPERn_EL0.mask() | wr::PMCCFILTR_EL0.mask();
    (
        rd::value_trapping(rd_traps | spe_rd),
        wr::value_trapping(wr_traps),
    )
}

/// Whether a guest access to a PMU register still traps once the state is
/// live in `ctx`'s mode (so the hypervisor must emulate it rather than let
/// the hardware complete it).
pub fn traps_when_live(ctx: &VpmuCtx<'_>, reg: SysReg, write: bool) -> bool {
    if !ctx.direct() {
        return true;
    }
    let (rd, wr) = partitioned_fgt(0);
    if write {
        hyperprof_arch::hdfgwtr_el2::traps_reg(wr, reg)
    } else {
        hyperprof_arch::hdfgrtr_el2::traps_reg(rd, reg)
    }
}
