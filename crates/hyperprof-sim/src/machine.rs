//! The machine: processing elements sharing physical memory and one
//! clock.
//!
//! The machine runs its PEs one at a time, and its clock is one time line:
//! the system counter (CNTPCT_EL0 on every PE) advances by every cycle any
//! PE executes through [`Machine::run`] and [`Machine::run_code`], and by
//! the idle time the machine skips ([`Machine::advance_clock`]). So a vCPU
//! that moves between PEs never sees its counter go back, and SPE
//! timestamps, CNTVCT_EL0 and the timers agree on every PE.

use crate::memory::{FrameAllocator, MemError, PhysMem};
use crate::pe::{CodeContext, CodeStop, Pe, PeConfig, PeCpu, RunExit};
use crate::uarch::{Hierarchy, UarchConfig};
use crate::workload::Workload;

/// Why a machine cannot be built.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MachineError {
    /// Its RAM cannot be set up.
    Memory(MemError),
    /// A PE's microarchitecture configuration is not buildable.
    Uarch(String),
}

impl From<MemError> for MachineError {
    fn from(e: MemError) -> Self {
        MachineError::Memory(e)
    }
}

impl std::fmt::Display for MachineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MachineError::Memory(e) => write!(f, "{e}"),
            MachineError::Uarch(why) => write!(f, "microarchitecture: {why}"),
        }
    }
}

impl std::error::Error for MachineError {}

/// How a machine is built.
#[derive(Clone, Debug)]
pub struct MachineConfig {
    /// One entry per PE, in CPU number order.
    pub pes: Vec<PeConfig>,
    /// Base of RAM.
    pub ram_base: u64,
    /// Size of RAM in bytes (page multiple).
    pub ram_size: u64,
}

/// PEs and the memory they share; the frame allocator hands out RAM pages
/// (for translation tables and buffers) to whoever builds on the machine.
#[derive(Debug)]
pub struct Machine {
    /// Physical memory.
    pub mem: PhysMem,
    /// Allocator of RAM frames.
    pub alloc: FrameAllocator,
    /// Caches, TLBs and branch predictors behind the PEs' real code.
    pub uarch: Hierarchy,
    pes: Vec<Pe>,
}

impl Machine {
    /// Builds the machine; every PE starts at EL2 in its reset state.
    pub fn new(cfg: &MachineConfig) -> Result<Machine, MachineError> {
        let mut mem = PhysMem::new();
        mem.add_ram(cfg.ram_base, cfg.ram_size)?;
        let alloc = FrameAllocator::new(cfg.ram_base, cfg.ram_size)?;
        let pes = cfg
            .pes
            .iter()
            .enumerate()
            .map(|(i, c)| Pe::new(i, c))
            .collect();
        let configs: Vec<UarchConfig> = if cfg.pes.is_empty() {
            vec![UarchConfig::default()]
        } else {
            cfg.pes.iter().map(|p| p.uarch).collect()
        };
        let uarch = Hierarchy::new(&configs).map_err(MachineError::Uarch)?;
        Ok(Machine {
            mem,
            alloc,
            uarch,
            pes,
        })
    }

    /// The PEs.
    pub fn pes(&self) -> &[Pe] {
        &self.pes
    }

    /// PE `i`.
    pub fn pe(&self, i: usize) -> Option<&Pe> {
        self.pes.get(i)
    }

    /// PE `i`, to change its state (exception entry and return).
    pub fn pe_mut(&mut self, i: usize) -> Option<&mut Pe> {
        self.pes.get_mut(i)
    }

    /// A broadcast TLB invalidation (`TLBI ...IS`) reaching every PE's SPE
    /// unit cache: VMID `vmid`'s EL1&0 entries, or with `None` all.
    pub fn invalidate_buffer_tlbs(&mut self, vmid: Option<u16>) {
        for pe in &mut self.pes {
            pe.invalidate_buffer_tlb(vmid);
        }
    }

    /// Software's view of PE `i`.
    pub fn cpu(&mut self, i: usize) -> Option<PeCpu<'_>> {
        let mem = &mut self.mem;
        self.pes.get_mut(i).map(|pe| pe.cpu(mem))
    }

    /// Runs `workload` on PE `i` at its current Exception level (see
    /// [`Pe::run`]); `None` if there is no PE `i`.
    pub fn run(
        &mut self,
        i: usize,
        workload: &mut dyn Workload,
        budget: u64,
        done: &mut u64,
    ) -> Option<RunExit> {
        let mem = &mut self.mem;
        let pe = self.pes.get_mut(i)?;
        let before = pe.cycles();
        let exit = pe.run(mem, workload, budget, done);
        let spent = pe.cycles().wrapping_sub(before);
        self.share_time(i, spent);
        Some(exit)
    }

    /// Runs `ctx`'s machine code on PE `i` (see [`Pe::run_code`]); `None`
    /// if there is no PE `i`.
    pub fn run_code(
        &mut self,
        i: usize,
        ctx: &mut CodeContext,
        budget: u64,
        done: &mut u64,
    ) -> Option<CodeStop> {
        let (mem, uarch) = (&mut self.mem, &mut self.uarch);
        let pe = self.pes.get_mut(i)?;
        let before = pe.cycles();
        let stop = pe.run_code(mem, uarch, ctx, budget, done);
        let spent = pe.cycles().wrapping_sub(before);
        self.share_time(i, spent);
        Some(stop)
    }

    /// The cycles PE `ran` spent pass on every other PE's counter too.
    fn share_time(&mut self, ran: usize, ticks: u64) {
        for (j, pe) in self.pes.iter_mut().enumerate() {
            if j != ran {
                pe.advance_counter(ticks);
            }
        }
    }

    /// The machine's clock: the system counter's count (the largest any PE
    /// reads, should a caller have run a PE directly).
    pub fn now(&self) -> u64 {
        self.pes.iter().map(Pe::cycles).max().unwrap_or(0)
    }

    /// Skips `ticks` of time in which no PE executes (every PE waits for
    /// an interrupt): the system counter advances on every PE, and no PMU
    /// counts (a waiting PE's clock is gated).
    pub fn advance_clock(&mut self, ticks: u64) {
        for pe in &mut self.pes {
            pe.advance_counter(ticks);
        }
    }

    /// Replaces the microarchitecture model (cold caches), one
    /// configuration per PE.
    pub fn set_uarch(&mut self, configs: &[UarchConfig]) -> Result<(), String> {
        if configs.len() != self.pes.len() {
            return Err(format!(
                "{} microarchitecture configurations for {} PEs",
                configs.len(),
                self.pes.len()
            ));
        }
        self.uarch = Hierarchy::new(configs)?;
        Ok(())
    }
}
