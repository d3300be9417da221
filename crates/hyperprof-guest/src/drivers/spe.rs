//! The SPE driver: what Linux's `arm_spe_pmu` does for one perf AUX session
//! on one CPU. Program the sampling controls and the buffer, take PMBIRQ for
//! buffer management events (collect the data, re-arm), stop and drain.
//!
//! The same code runs at EL2 in a VHE host (`PMSCR_EL1` accesses are
//! redirected to `PMSCR_EL2`, whose E2SPE/E0HSPE bits sit where E1SPE/E0SPE
//! are) and at EL1 in a guest.

use hyperprof_arch::{
    pmbidr_el1, pmblimitr_el1, pmbsr_el1, pmscr_el1, pmsfcr_el1, pmsidr_el1, pmsirr_el1, Cpu,
    PmbsrEc, SysReg,
};

use super::{rd, wr, DriverError};

/// What probing the hardware found (PMSIDR_EL1, PMBIDR_EL1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpeCaps {
    /// Smallest sampling interval the implementation recommends.
    pub min_interval: u32,
    /// Largest record, in bytes.
    pub max_record_size: u64,
    /// Required PMBPTR alignment, in bytes.
    pub align: u64,
    /// Largest buffer the implementation accepts (0: no limit).
    pub max_buff_size: u64,
    /// PMSIDR_EL1, as read.
    pub pmsidr: u64,
    /// PMBIDR_EL1, as read.
    pub pmbidr: u64,
}

/// A perf-like SPE session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpeSessionConfig {
    /// Sampling interval in operations (raised to the minimum if below).
    pub interval: u32,
    /// Random perturbation of the interval (PMSIRR_EL1.RND).
    pub jitter: bool,
    /// Sample EL0.
    pub user: bool,
    /// Sample the kernel (EL1, or EL2 in a VHE host).
    pub kernel: bool,
    /// Timestamp packets.
    pub timestamps: bool,
    /// Physical rather than virtual timestamps (PCT).
    pub physical_time: bool,
    /// Physical address packets.
    pub physical_addresses: bool,
    /// Context packets.
    pub context: bool,
    /// Keep only records with all these events (PMSFCR.FE, PMSEVFR).
    pub event_filter: Option<u64>,
    /// Keep only loads, stores and branches of these kinds (PMSFCR.FT).
    pub type_filter: Option<TypeFilter>,
    /// Keep only records with at least this total latency (PMSFCR.FL).
    pub min_latency: Option<u16>,
    /// DISCARD mode: sample and filter, write nothing (PMBLIMITR.FM).
    pub discard: bool,
}

impl Default for SpeSessionConfig {
    fn default() -> Self {
        SpeSessionConfig {
            interval: 1024,
            jitter: true,
            user: true,
            kernel: true,
            timestamps: true,
            physical_time: true,
            physical_addresses: true,
            context: true,
            event_filter: None,
            type_filter: None,
            min_latency: None,
            discard: false,
        }
    }
}

/// Operation types kept by a type filter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TypeFilter {
    /// Branches.
    pub branches: bool,
    /// Loads.
    pub loads: bool,
    /// Stores.
    pub stores: bool,
}

/// Mistakes the driver can be told to make, so tests can show that the
/// strict machine catches them. A correct driver uses `Default` (none).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Mistakes {
    /// Leave out the ISB after enabling sampling.
    pub no_isb_after_enable: bool,
    /// Leave out PSB CSYNC; DSB before reading PMBPTR and the data.
    pub no_drain_before_read: bool,
}

/// The driver's record of what happened.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpeDriverStats {
    /// Interrupts taken.
    pub irqs: u64,
    /// Buffer-full events handled.
    pub buffer_full: u64,
    /// Fault events (stage 1, stage 2, external abort): the session stops.
    pub faults: u64,
    /// Interrupts with PMBSR_EL1.S clear.
    pub spurious: u64,
    /// Events with PMBSR_EL1.DL (last record may be partial).
    pub truncated: u64,
    /// Bytes collected.
    pub bytes: u64,
}

/// The profiling buffer: a virtually contiguous, mapped region.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffer {
    /// Virtual address of the first byte.
    pub va: u64,
    /// Size in bytes.
    pub size: u64,
}

/// What an interrupt turned out to be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IrqOutcome {
    /// PMBSR_EL1.S was clear.
    Spurious,
    /// The buffer filled; data collected, sampling re-armed.
    BufferFull,
    /// A fault stopped profiling (EC and MSS as read).
    Fault {
        /// PMBSR_EL1.EC.
        ec: u64,
        /// PMBSR_EL1.MSS.
        mss: u64,
        /// PMBSR_EL1.EA.
        external_abort: bool,
    },
}

/// One SPE session on one CPU.
#[derive(Clone, Debug)]
pub struct SpeDriver {
    cfg: SpeSessionConfig,
    caps: SpeCaps,
    buf: Buffer,
    mistakes: Mistakes,
    data: Vec<u8>,
    stats: SpeDriverStats,
    running: bool,
}

/// Reads the SPE identification registers and checks the buffer is usable.
pub fn probe(cpu: &mut impl Cpu) -> Result<SpeCaps, DriverError> {
    let pmbidr = rd(cpu, SysReg::PMBIDR_EL1)?;
    if pmbidr_el1::P.is_set(pmbidr) {
        return Err(DriverError::Unsupported(
            "PMBIDR_EL1.P: the buffer is owned by a higher Exception level",
        ));
    }
    let pmsidr = rd(cpu, SysReg::PMSIDR_EL1)?;
    let min_interval = pmsidr_el1::interval_from_field(pmsidr_el1::INTERVAL.get(pmsidr))
        .ok_or(DriverError::Unsupported("reserved PMSIDR_EL1.INTERVAL"))?;
    Ok(SpeCaps {
        min_interval,
        max_record_size: pmsidr_el1::max_record_size(pmsidr),
        align: 1 << pmbidr_el1::ALIGN.get(pmbidr),
        max_buff_size: hyperprof_arch::maxbuffsize::size(pmbidr),
        pmsidr,
        pmbidr,
    })
}

impl SpeDriver {
    /// A session over `buf` (mapped by the kernel) with the hardware `caps`.
    pub fn new(cfg: SpeSessionConfig, caps: SpeCaps, buf: Buffer) -> Result<Self, DriverError> {
        if buf.va % caps.align.max(4096) != 0 || buf.size % 4096 != 0 || buf.size == 0 {
            return Err(DriverError::BadConfig(
                "buffer must be page aligned and non-empty",
            ));
        }
        if caps.max_buff_size != 0 && buf.size > caps.max_buff_size {
            return Err(DriverError::BadConfig(
                "buffer larger than PMBIDR_EL1.MaxBuffSize",
            ));
        }
        if buf.size < 2 * caps.max_record_size {
            return Err(DriverError::BadConfig("buffer smaller than two records"));
        }
        if cfg.event_filter.is_some() && !pmsidr_el1::FE.is_set(caps.pmsidr)
            || cfg.type_filter.is_some() && !pmsidr_el1::FT.is_set(caps.pmsidr)
            || cfg.min_latency.is_some() && !pmsidr_el1::FL.is_set(caps.pmsidr)
        {
            return Err(DriverError::BadConfig(
                "filter not implemented (PMSIDR_EL1)",
            ));
        }
        Ok(SpeDriver {
            cfg,
            caps,
            buf,
            mistakes: Mistakes::default(),
            data: Vec::new(),
            stats: SpeDriverStats::default(),
            running: false,
        })
    }

    /// Makes the driver commit `mistakes` (for tests of the strict machine).
    pub fn with_mistakes(mut self, mistakes: Mistakes) -> Self {
        self.mistakes = mistakes;
        self
    }

    /// What the driver saw.
    pub fn stats(&self) -> SpeDriverStats {
        self.stats
    }

    /// Whether sampling is armed.
    pub fn running(&self) -> bool {
        self.running
    }

    /// Takes the data collected so far (raw SPE records, in order).
    pub fn take_data(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.data)
    }

    fn pmscr(&self) -> u64 {
        let c = &self.cfg;
        let mut v = 0;
        v = pmscr_el1::E0SPE.set(v, c.user as u64);
        v = pmscr_el1::E1SPE.set(v, c.kernel as u64);
        v = pmscr_el1::TS.set(v, c.timestamps as u64);
        v = pmscr_el1::PA.set(v, c.physical_addresses as u64);
        v = pmscr_el1::CX.set(v, c.context as u64);
        let pct = if c.physical_time {
            hyperprof_arch::pct::PHYS
        } else {
            hyperprof_arch::pct::VIRT
        };
        pmscr_el1::PCT.set(v, pct)
    }

    fn pmsfcr(&self) -> u64 {
        let c = &self.cfg;
        let mut v = 0;
        if c.event_filter.is_some() {
            v = pmsfcr_el1::FE.set(v, 1);
        }
        if let Some(t) = c.type_filter {
            v = pmsfcr_el1::FT.set(v, 1);
            v = pmsfcr_el1::B.set(v, t.branches as u64);
            v = pmsfcr_el1::LD.set(v, t.loads as u64);
            v = pmsfcr_el1::ST.set(v, t.stores as u64);
        }
        if c.min_latency.is_some() {
            v = pmsfcr_el1::FL.set(v, 1);
        }
        v
    }

    fn limit(&self) -> u64 {
        let mut v = pmblimitr_el1::LIMIT.set(0, (self.buf.va + self.buf.size) >> 12);
        if self.cfg.discard {
            v = pmblimitr_el1::FM.set(v, pmblimitr_el1::FM_DISCARD);
        }
        pmblimitr_el1::E.set(v, 1)
    }

    /// Arms the buffer at its start: PMBPTR_EL1 then PMBLIMITR_EL1.
    fn arm_buffer(&mut self, cpu: &mut impl Cpu) -> Result<(), DriverError> {
        wr(cpu, SysReg::PMBPTR_EL1, self.buf.va)?;
        wr(cpu, SysReg::PMBLIMITR_EL1, self.limit())
    }

    /// Programs the filters, the interval and the buffer, then enables
    /// sampling (`arm_spe_pmu_start`).
    pub fn start(&mut self, cpu: &mut impl Cpu) -> Result<(), DriverError> {
        self.arm_buffer(cpu)?;
        wr(cpu, SysReg::PMSFCR_EL1, self.pmsfcr())?;
        wr(cpu, SysReg::PMSEVFR_EL1, self.cfg.event_filter.unwrap_or(0))?;
        wr(
            cpu,
            SysReg::PMSLATFR_EL1,
            self.cfg.min_latency.unwrap_or(0) as u64,
        )?;
        let interval = self.cfg.interval.max(self.caps.min_interval) as u64;
        let irr = pmsirr_el1::RND.set(
            pmsirr_el1::INTERVAL.set(0, interval >> 8),
            self.cfg.jitter as u64,
        );
        wr(cpu, SysReg::PMSIRR_EL1, irr)?;
        cpu.isb();
        wr(cpu, SysReg::PMSICR_EL1, 0)?;
        cpu.isb();
        wr(cpu, SysReg::PMSCR_EL1, self.pmscr())?;
        if !self.mistakes.no_isb_after_enable {
            cpu.isb();
        }
        self.running = true;
        Ok(())
    }

    /// Makes every record the unit holds architecturally written and
    /// visible, and the unit's update of PMBPTR_EL1 and PMBSR_EL1 too:
    /// `PSB CSYNC; DSB NSH; ISB` (Linux's `arm_spe_pmu_buf_get_fault_act`).
    fn drain(&self, cpu: &mut impl Cpu) {
        if !self.mistakes.no_drain_before_read {
            cpu.psb_csync();
            cpu.dsb_nsh();
            cpu.isb();
        }
    }

    /// Copies the records between the buffer start and PMBPTR_EL1.
    fn collect(&mut self, cpu: &mut impl Cpu) -> Result<(), DriverError> {
        let ptr = rd(cpu, SysReg::PMBPTR_EL1)?;
        let end = ptr.clamp(self.buf.va, self.buf.va + self.buf.size);
        let len = (end - self.buf.va) as usize;
        let at = self.data.len();
        self.data.resize(at + len, 0);
        cpu.load(self.buf.va, &mut self.data[at..])
            .map_err(DriverError::Memory)?;
        self.stats.bytes += len as u64;
        Ok(())
    }

    /// Stops sampling, drains the unit and collects what it wrote
    /// (`arm_spe_pmu_stop`).
    pub fn stop(&mut self, cpu: &mut impl Cpu) -> Result<(), DriverError> {
        if !self.running {
            return Ok(());
        }
        wr(cpu, SysReg::PMSCR_EL1, 0)?;
        cpu.isb();
        self.drain(cpu);
        let pmbsr = rd(cpu, SysReg::PMBSR_EL1)?;
        // A session stopped by a fault has nothing more to give.
        if !pmbsr_el1::S.is_set(pmbsr) || self.stats.faults == 0 {
            self.collect(cpu)?;
        }
        wr(cpu, SysReg::PMBLIMITR_EL1, 0)?;
        cpu.isb();
        self.running = false;
        Ok(())
    }

    /// Handles PMBIRQ (`arm_spe_pmu_irq_handler`): find out why, collect,
    /// re-arm after a buffer-full event, clear PMBSR_EL1.
    pub fn handle_irq(&mut self, cpu: &mut impl Cpu) -> Result<IrqOutcome, DriverError> {
        self.stats.irqs += 1;
        self.drain(cpu);
        let pmbsr = rd(cpu, SysReg::PMBSR_EL1)?;
        if !pmbsr_el1::S.is_set(pmbsr) {
            self.stats.spurious += 1;
            return Ok(IrqOutcome::Spurious);
        }
        if pmbsr_el1::DL.is_set(pmbsr) {
            self.stats.truncated += 1;
        }
        let ec = pmbsr_el1::EC.get(pmbsr);
        let mss = pmbsr_el1::MSS.get(pmbsr);
        let ea = pmbsr_el1::EA.is_set(pmbsr);
        let full = !ea
            && PmbsrEc::from_bits(ec) == Some(PmbsrEc::BUF)
            && pmbsr_el1::BSC.get(mss) == pmbsr_el1::BSC_FULL;
        let outcome = if full {
            self.stats.buffer_full += 1;
            self.collect(cpu)?;
            self.arm_buffer(cpu)?;
            IrqOutcome::BufferFull
        } else {
            // Faults are fatal to the session, as in Linux: stop the buffer.
            self.stats.faults += 1;
            self.collect(cpu)?;
            wr(cpu, SysReg::PMBLIMITR_EL1, 0)?;
            self.running = false;
            IrqOutcome::Fault {
                ec,
                mss,
                external_abort: ea,
            }
        };
        wr(cpu, SysReg::PMBSR_EL1, 0)?;
        cpu.isb();
        Ok(outcome)
    }
}
