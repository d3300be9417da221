//! Shared helpers for the PMU integration tests: a bare-metal "CPU" that
//! runs at one Exception level and drives a `Pmu` the way a PE would
//! (`MRS`/`MSR` -> read/write, `ISB` -> sync, operations -> count).
//!
//! Included by the `pmu_*.rs` tests with `#[path = "pmu_common.rs"] mod
//! common;`; as a test target of its own it has no tests.
#![allow(dead_code)]

use hyperprof_arch::{mdcr_el2, ExceptionLevel, PmuVer, SysReg};
use hyperprof_sim::event::EventCounts;
use hyperprof_sim::op::{Op, OpKind};
use hyperprof_sim::pmu::{Pmu, PmuConfig, View};

pub const EL0: ExceptionLevel = ExceptionLevel::EL0;
pub const EL1: ExceptionLevel = ExceptionLevel::EL1;
pub const EL2: ExceptionLevel = ExceptionLevel::EL2;

/// PMEVTYPER bit 31: do not count at EL1.
pub const EXCLUDE_EL1: u64 = 1 << 31;
/// PMEVTYPER bit 30: do not count at EL0.
pub const EXCLUDE_EL0: u64 = 1 << 30;
/// PMEVTYPER bit 27: count at EL2.
pub const INCLUDE_EL2: u64 = 1 << 27;

pub const SW_INCR: u64 = 0x00;
pub const INST_RETIRED: u64 = 0x08;
pub const CPU_CYCLES: u64 = 0x11;
pub const MEM_ACCESS: u64 = 0x13;
pub const CHAIN: u64 = 0x1E;

pub const PRE_OVERFLOW_32: u64 = 0xFFFF_FFF0;
pub const PRE_OVERFLOW2_32: u64 = 0xFFFF_FFDC;
pub const PRE_OVERFLOW_64: u64 = 0xFFFF_FFFF_FFFF_FFF0;
pub const ALL_SET_32: u64 = 0xFFFF_FFFF;

pub const E: u64 = 1 << 0;
pub const P: u64 = 1 << 1;
pub const C: u64 = 1 << 2;
pub const DP: u64 = 1 << 5;
pub const LC: u64 = 1 << 6;
pub const LP: u64 = 1 << 7;

pub fn evcntr(n: u8) -> SysReg {
    SysReg::pmevcntr_el0(n).expect("counter index")
}

pub fn evtyper(n: u8) -> SysReg {
    SysReg::pmevtyper_el0(n).expect("counter index")
}

/// A PE with a PMU, running code at `el` with MDCR_EL2 = `mdcr`.
pub struct Cpu {
    pub pmu: Pmu,
    pub el: ExceptionLevel,
    pub mdcr: u64,
    pc: u64,
}

impl Cpu {
    /// EL1 on a machine with EL2 whose hypervisor gives EL1 all `counters`
    /// counters (MDCR_EL2.HPMN = N).
    pub fn el1(counters: u8, version: PmuVer) -> Cpu {
        let cfg = PmuConfig {
            counters,
            version,
            hpmn0: true,
            el2_implemented: true,
        };
        let mut cpu = Cpu {
            pmu: Pmu::new(cfg),
            el: EL1,
            mdcr: mdcr_el2::HPMN.value(u64::from(counters)),
            pc: 0x40_0000,
        };
        cpu.isb();
        cpu
    }

    /// A PE with `cfg`, at `el`, MDCR_EL2 = `mdcr`.
    pub fn with(cfg: PmuConfig, el: ExceptionLevel, mdcr: u64) -> Cpu {
        let mut cpu = Cpu {
            pmu: Pmu::new(cfg),
            el,
            mdcr,
            pc: 0x40_0000,
        };
        cpu.isb();
        cpu
    }

    pub fn view(&self) -> View {
        View::new(self.el, self.mdcr)
    }

    /// `MRS`; panics (test failure) on an exception.
    pub fn r(&self, reg: SysReg) -> u64 {
        match self.pmu.read(reg, self.view()) {
            Ok(v) => v,
            Err(f) => panic!("MRS {reg} at {}: {f}", self.el),
        }
    }

    /// `MSR`; panics (test failure) on an exception.
    pub fn w(&mut self, reg: SysReg, val: u64) {
        if let Err(f) = self.pmu.write(reg, val, self.view()) {
            panic!("MSR {reg}, {val:#x} at {}: {f}", self.el);
        }
    }

    /// `ISB`: a context synchronization event.
    pub fn isb(&mut self) {
        self.pmu.sync(self.mdcr);
    }

    /// An exception return to / entry at `el` (also a context
    /// synchronization event).
    pub fn switch_to(&mut self, el: ExceptionLevel) {
        self.el = el;
        self.isb();
    }

    /// Executes `op` at the current EL: its events go to the PMU.
    pub fn exec(&mut self, mut op: Op) {
        op.pc = self.pc;
        self.pc += 4;
        let mut counts = EventCounts::default();
        op.add_events(&mut counts);
        self.pmu.count(&counts, self.el);
    }

    /// `n` one-cycle instructions that are not memory accesses.
    pub fn instrs(&mut self, n: u64) {
        for _ in 0..n {
            self.exec(other());
        }
    }

    /// The kvm-unit-tests `mem_access_loop`: `MSR PMCR_EL0, pmcr; ISB`,
    /// `n` iterations of (sub, ldr, cmp, b.gt), `MSR PMCR_EL0, xzr; ISB`.
    pub fn mem_access_loop(&mut self, n: u64, pmcr: u64) {
        self.w(SysReg::PMCR_EL0, pmcr);
        self.isb();
        for i in 0..n {
            self.exec(other());
            self.exec(load());
            self.exec(other());
            self.exec(branch(i + 1 < n));
        }
        self.w(SysReg::PMCR_EL0, 0);
        self.isb();
    }

    /// The kvm-unit-tests `precise_instrs_loop`: `MSR PMCR_EL0, pmcr; ISB`,
    /// `loops` iterations of (subs, b.gt), `MSR PMCR_EL0, xzr; ISB`.
    /// Counted between the two `MSR`s: the ISB and 2 * loops instructions.
    pub fn precise_instrs_loop(&mut self, loops: u64, pmcr: u64) {
        self.w(SysReg::PMCR_EL0, pmcr);
        self.isb();
        self.exec(other()); // the ISB itself
        for i in 0..loops {
            self.exec(other());
            self.exec(branch(i + 1 < loops));
        }
        self.w(SysReg::PMCR_EL0, 0);
        self.isb();
    }

    /// kvm-unit-tests `pmu_reset`: reset counters with counting disabled,
    /// disable all counters, clear overflows and interrupt enables.
    pub fn pmu_reset(&mut self) {
        self.w(SysReg::PMCR_EL0, LC | C | P);
        self.w(SysReg::PMCNTENCLR_EL0, ALL_SET_32);
        self.w(SysReg::PMOVSCLR_EL0, ALL_SET_32);
        self.w(SysReg::PMINTENCLR_EL1, ALL_SET_32);
        self.isb();
    }
}

pub fn op(kind: OpKind) -> Op {
    Op {
        pc: 0,
        kind,
        data_va: 0x10_0000,
        target: 0,
        issue_latency: 1,
        total_latency: 1,
        translation_latency: 0,
        outcome: 0,
        data_source: 0,
        ldst_subclass: 0,
        cycles: 1,
    }
}

pub fn other() -> Op {
    op(OpKind::Other)
}

pub fn load() -> Op {
    op(OpKind::Load)
}

pub fn branch(taken: bool) -> Op {
    op(OpKind::Branch {
        conditional: true,
        indirect: false,
        taken,
    })
}
