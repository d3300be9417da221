//! The hypervisor: the machine, its host, VMs and vCPUs, in KVM's shape.
//!
//! [`Kvm`] owns the simulated machine and every VM and vCPU; callers name
//! them by index, as a VMM names them by file descriptor. A vCPU runs a
//! [`GuestProgram`] (the guest kernel) through a [`GuestCpu`]: the guest's
//! view of the physical CPU, where untrapped accesses reach the hardware
//! and trapped ones exit to the hypervisor, which emulates them between the
//! exit and entry halves of the world switch ([`crate::switch`]).
//!
//! A VHE host runs at EL2 with E2H and TGE, the guest at EL1 with E2H, VM
//! set and TGE clear; an nVHE host kernel runs at EL1 ([`Kvm::new_nvhe`]).
//!
//! The files follow KVM's own split: `arm` (load, put and the run loop),
//! `hyp` (the entry and exit halves of the world switch), `sys_regs`
//! (trapped accesses), `spe` (pinning and the buffer's faults), `pmu` (the
//! guest PMU's hooks), `one_reg` (migration) and `guest_cpu` (the guest's
//! view of the CPU).

use hyperprof_arch::{
    hcr_el2, mdcr_el2, pmblimitr_el1, pmbsr_el1, AccessFault, Cpu, ExceptionLevel, MemoryFault,
    SysReg, Unit,
};
use hyperprof_sim::machine::Machine;
use hyperprof_sim::memory::FrameAllocator;
use hyperprof_sim::memory::PAGE_SIZE;
use hyperprof_sim::mmu::{GuestPhysMem, Perm, S2Perm, Stage1Tables, Stage2Params, Stage2Tables};
use hyperprof_sim::pe::{AccessStats, Pe, RunExit};
use hyperprof_sim::translate::STAGE2_START_LEVEL;
use hyperprof_sim::workload::Workload;

use hyperprof_guest::guest::{ExecStop, GuestEnv, GuestProgram, GuestStep};

use crate::pin::{buffer_span, collect_within, Memlock, PinError, VcpuPins};
use crate::pmu_attr::{HostPmu, PmuAttrCtx, VcpuPmu, VmPmu};
use crate::spe_attr::{Spu, VcpuSpe, VmSpe};
use crate::switch::{self, Features, GuestSpe, HostSpe};
use crate::uapi::{Errno, UserPtr, VcpuFeatures, KVM_ARM_VCPU_PMU_V3_CTRL, KVM_ARM_VCPU_SPE_CTRL};
use crate::vpmu::{GuestPmu, HostPmuRegs};

mod arch_timer;
mod arm;
mod code;
mod guest_cpu;
mod hyp;
mod irqchip;
mod one_reg;
mod pin_policy;
mod pmu;
mod spe;
mod sys_regs;
pub use arch_timer::{VcpuTimer, PTIMER_INTID, VTIMER_INTID};
pub use code::Mmio;
pub use guest_cpu::GuestCpu;
pub use pin_policy::{PinCostModel, PinPolicy, PinStats};
pub use pmu::PmuSetup;

/// HCR_EL2 for a guest: VM (stage 2 on) and TID3 (ID register reads trap,
/// so the hypervisor describes the VM).
const HCR_VM: u64 = 1 | 1 << 18;

/// Guest RAM: where it starts in the guest's IPA space.
pub const GUEST_RAM_IPA: u64 = 0x4000_0000;

/// Why a vCPU stopped running ([`Kvm::run`]), as KVM_RUN reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Exit {
    /// The guest program finished.
    Halt,
    /// The guest program gave the CPU back (it has more to do).
    Yield,
    /// Pinning the guest's buffer would pass RLIMIT_MEMLOCK
    /// (KVM_EXIT_RLIMIT): the figures, in bytes.
    Rlimit {
        /// Bytes the pin needed.
        needed: u64,
        /// Bytes pinned already.
        used: u64,
        /// The limit.
        limit: u64,
    },
    /// The vCPU cannot run as set up (KVM_RUN fails): why.
    FailEntry(String),
    /// A code vCPU made a hypervisor call (HVC #imm, or SMC #imm, which has
    /// no EL3 to go to): X0-X17 carry the SMCCC arguments; the VMM serves
    /// it (PSCI) and writes the results, and the guest resumes past it.
    Hypercall {
        /// The instruction's immediate.
        imm: u16,
    },
    /// A code vCPU accessed memory outside its RAM (KVM_EXIT_MMIO): the
    /// VMM emulates the device; for a read it gives the value with
    /// [`Kvm::set_mmio_data`] before the next [`Kvm::run_code`].
    Mmio(Mmio),
    /// A code vCPU waits for an interrupt with none pending.
    Idle,
}

/// How a VM is created.
#[derive(Clone, Copy, Debug)]
pub struct VmConfig {
    /// Guest RAM in bytes (page multiple), at [`GUEST_RAM_IPA`].
    pub ram_bytes: u64,
    /// RLIMIT_MEMLOCK of the VMM, in bytes.
    pub memlock_limit: u64,
}

/// What an nVHE entry saved of the host.
#[derive(Clone, Copy, Debug, Default)]
struct NvheHost {
    spe: switch::HostSpeNvhe,
    ttbr0_el1: u64,
    contextidr_el1: u64,
    mdcr_el2: u64,
}

/// Hypervisor-wide costs and events of one vCPU.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VcpuStats {
    /// Guest entries.
    pub entries: u64,
    /// Entries with the guest's buffer on the hardware (round trips while
    /// the guest profiles).
    pub live_trips: u64,
    /// Exits taken for trapped register accesses.
    pub trap_exits: u64,
    /// Exits taken for physical interrupts.
    pub irq_exits: u64,
    /// Register accesses and barriers of the SPE entry and exit halves.
    pub spe_switch: AccessStats,
    /// The part of `spe_switch` spent on the live round trips.
    pub spe_switch_live: AccessStats,
    /// Register accesses and barriers of SPE load and put.
    pub spe_load_put: AccessStats,
    /// Loads (and puts).
    pub loads: u64,
    /// Virtual PMBIRQ deliveries the guest took.
    pub virqs: u64,
    /// Stage-2 faults of the guest's buffer turned into external aborts.
    pub stage2_aborts: u64,
    /// Pins dropped by host MMU-notifier events.
    pub invalidations: u64,
    /// Exits for trapped PMU accesses (part of `trap_exits`).
    pub pmu_trap_exits: u64,
    /// Virtual PMU overflow interrupts the guest took.
    pub pmu_virqs: u64,
    /// Guest counter overflows moved from the hardware to the vCPU.
    pub pmu_overflows: u64,
    /// Loads with the guest's PMU state live (each with a put).
    pub pmu_live_loads: u64,
    /// Register accesses and barriers of the PMU parts of load and put.
    pub pmu_load_put: AccessStats,
    /// Register accesses of the PMU parts of entry and exit (PMSELR_EL0
    /// switched late; overflow flags moved at interrupt exits; on an nVHE
    /// host the enables, PMCR_EL0 and PMUSERENR_EL0 switched).
    pub pmu_switch: AccessStats,
    /// Register accesses of the emulation of trapped PMU accesses.
    pub pmu_emulate: AccessStats,
    /// Code vCPUs: exits for trapped MRS/MSR (part of `trap_exits` when
    /// the register is one the hypervisor emulates).
    pub sysreg_exits: u64,
    /// Code vCPUs: HVC and SMC calls handed to the VMM.
    pub hvc_exits: u64,
    /// Code vCPUs: MMIO accesses handed to the VMM.
    pub mmio_exits: u64,
    /// Code vCPUs: WFI with nothing pending.
    pub wfi_exits: u64,
    /// Register accesses of the timer's switch: its parts of load and put
    /// on a VHE host, of entry and exit on an nVHE host.
    pub timer_switch: AccessStats,
    /// Code vCPUs: physical interrupt exits the guest's virtual timer
    /// caused (each raised the guest's virtual timer line).
    pub timer_irqs: u64,
}

impl std::ops::AddAssign for VcpuStats {
    /// Adds the counts of `o` (another vCPU, or one the vCPU was before a
    /// migration).
    fn add_assign(&mut self, o: VcpuStats) {
        self.entries += o.entries;
        self.live_trips += o.live_trips;
        self.trap_exits += o.trap_exits;
        self.irq_exits += o.irq_exits;
        self.spe_switch += o.spe_switch;
        self.spe_switch_live += o.spe_switch_live;
        self.spe_load_put += o.spe_load_put;
        self.loads += o.loads;
        self.virqs += o.virqs;
        self.stage2_aborts += o.stage2_aborts;
        self.invalidations += o.invalidations;
        self.pmu_trap_exits += o.pmu_trap_exits;
        self.pmu_virqs += o.pmu_virqs;
        self.pmu_overflows += o.pmu_overflows;
        self.pmu_live_loads += o.pmu_live_loads;
        self.pmu_load_put += o.pmu_load_put;
        self.pmu_switch += o.pmu_switch;
        self.pmu_emulate += o.pmu_emulate;
        self.sysreg_exits += o.sysreg_exits;
        self.hvc_exits += o.hvc_exits;
        self.mmio_exits += o.mmio_exits;
        self.wfi_exits += o.wfi_exits;
        self.timer_switch += o.timer_switch;
        self.timer_irqs += o.timer_irqs;
    }
}

impl std::iter::Sum for VcpuStats {
    /// The counts of several vCPUs together.
    fn sum<I: Iterator<Item = VcpuStats>>(iter: I) -> VcpuStats {
        iter.fold(VcpuStats::default(), |mut t, s| {
            t += s;
            t
        })
    }
}

struct VmState {
    s2: Stage2Tables,
    /// Frames of guest RAM the guest's boot code builds its page tables in.
    guest_frames: FrameAllocator,
    guest_s1: Option<Stage1Tables>,
    vmid: u64,
    spe: VmSpe,
    pmu: VmPmu,
    memlock: Memlock,
    /// How guest buffers are pinned, and what pinning did.
    pinning: pin_policy::Pinning,
    /// The VMM holds the perfmon capability: the guest may use physical
    /// timestamps (PMSCR_EL2.PCT = 0b01 while it runs).
    perfmon: bool,
    /// CNTVOFF_EL2 while the VM runs (KVM_ARM_SET_COUNTER_OFFSET).
    cntvoff: u64,
    /// Torn down: its vCPUs no longer run.
    destroyed: bool,
    /// Bytes of guest RAM at [`GUEST_RAM_IPA`].
    ram_bytes: u64,
    /// The in-kernel irqchip (KVM_DEV_TYPE_ARM_VGIC_V3), once created.
    vgic: Option<crate::vgic::VgicV3>,
}

struct VcpuState {
    vm: usize,
    features: VcpuFeatures,
    spe_cfg: VcpuSpe,
    pmu_cfg: VcpuPmu,
    spe: GuestSpe,
    /// Guest EL1 registers the hypervisor keeps while the vCPU is not loaded.
    ttbr0_el1: u64,
    contextidr_el1: u64,
    host_spe: Option<HostSpe>,
    /// nVHE: the host's EL1 session and registers, saved at entry.
    nvhe_host: Option<NvheHost>,
    host_mdcr: u64,
    loaded_on: Option<usize>,
    /// Loaded on a CPU without the VM's SPU: KVM_RUN fails entry.
    unsupported_cpu: bool,
    /// The guest has touched SPE: its state is switched at load and put.
    /// Until then its SPE accesses trap and load and put leave SPE alone.
    spe_live: bool,
    /// A host MMU-notifier event dropped the pin: re-pin before the buffer
    /// goes back to the hardware.
    needs_repin: bool,
    pins: VcpuPins,
    /// The guest's PMU registers (the hardware holds part of them while
    /// `pmu_host` is set).
    pmu: GuestPmu,
    /// The guest has touched its PMU: its state goes to the hardware at
    /// load. Until then every PMU access traps and load and put leave the
    /// PMU alone.
    pmu_live: bool,
    /// The state is on the hardware of the CPU the vCPU is loaded on; what
    /// put restores of the host.
    pmu_host: Option<HostPmuRegs>,
    /// The guest's virtual PMU interrupt level.
    pmu_virq: bool,
    /// nVHE: what the last entry switched of the PMU, for the exit.
    pmu_switched: Option<crate::vpmu::PmuSwitch>,
    /// An MMIO access of a code vCPU the VMM has not completed yet.
    mmio: Option<code::Mmio>,
    /// The guest's timers (the virtual one is on the hardware while loaded).
    timer: VcpuTimer,
    stats: VcpuStats,
}

/// What the hypervisor knows of one physical CPU's PMU.
#[derive(Clone, Copy, Debug, Default)]
struct CpuPmu {
    /// The vCPU whose event types are in the hardware's guest counters.
    types_of: Option<usize>,
    /// PMSELR_EL0 in the hardware.
    pmselr: u64,
    /// The host's PMUSERENR_EL0 (the host tells the hypervisor when it
    /// changes it, as Linux's perf calls `kvm_set_pmuserenr()`).
    host_pmuserenr: u64,
    /// The host's counters that exclude guests (`kvm_set_pmu_events`):
    /// an nVHE entry stops them, the exit starts them again.
    events_host: u64,
}

/// The hypervisor and what it runs.
pub struct Kvm {
    machine: Machine,
    spus: Vec<Spu>,
    host_pmus: Vec<HostPmu>,
    vms: Vec<VmState>,
    vcpus: Vec<VcpuState>,
    mode: HostMode,
    cpu_pmu: Vec<CpuPmu>,
}

/// How the host runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HostMode {
    /// The host kernel runs at EL2 with HCR_EL2.E2H and TGE (FEAT_VHE).
    Vhe,
    /// The host kernel runs at EL1; only the hypervisor's world switch runs
    /// at EL2, and the host owns an EL1&0 profiling buffer that every guest
    /// entry must drain and disable (seed 003).
    Nvhe,
}

fn access(reg: SysReg) -> impl Fn(AccessFault) -> String {
    move |f| format!("{reg}: {f}")
}

impl Kvm {
    /// A hypervisor on `machine`, whose CPUs run a VHE host (HCR_EL2.E2H
    /// and TGE set, the profiling buffer owned by EL2). The host's SPE
    /// instances are found by probing every CPU (one SPU per distinct
    /// PMSIDR/PMBIDR pair).
    pub fn new(machine: Machine) -> Kvm {
        Kvm::with_mode(machine, HostMode::Vhe)
    }

    /// A hypervisor on `machine` whose host kernel runs at EL1 (nVHE): each
    /// CPU drops to EL1 with the profiling buffer owned by EL1 and its
    /// accesses untrapped (MDCR_EL2.E2PB = 0b11).
    pub fn new_nvhe(machine: Machine) -> Kvm {
        Kvm::with_mode(machine, HostMode::Nvhe)
    }

    /// The host mode.
    pub fn mode(&self) -> HostMode {
        self.mode
    }

    fn with_mode(mut machine: Machine, mode: HostMode) -> Kvm {
        let mut cpu_pmu = vec![CpuPmu::default(); machine.pes().len()];
        for (cpu, hw) in cpu_pmu.iter_mut().enumerate() {
            let has_spe = machine.pe(cpu).is_some_and(Pe::has_spe);
            if let Some(mut c) = machine.cpu(cpu) {
                hw.host_pmuserenr = c.read(SysReg::PMUSERENR_EL0).unwrap_or(0);
                let (hcr, e2pb) = match mode {
                    HostMode::Vhe => (
                        hcr_el2::E2H.set(hcr_el2::TGE.set(0, 1), 1),
                        mdcr_el2::E2PB_EL2,
                    ),
                    HostMode::Nvhe => (0, mdcr_el2::E2PB_EL1),
                };
                let mdcr = c.read(SysReg::MDCR_EL2).unwrap_or(0);
                let mut ok = c.write(SysReg::HCR_EL2, hcr).is_ok()
                    && c.write(SysReg::MDCR_EL2, mdcr_el2::E2PB.set(mdcr, e2pb))
                        .is_ok();
                if mode == HostMode::Nvhe && has_spe {
                    // Linux's EL2 init: an EL1 host may collect physical
                    // addresses and physical timestamps (PMSCR_EL2.PA, PCT).
                    let pmscr_el2 = hyperprof_arch::pmscr_el2::PA.set(
                        hyperprof_arch::pmscr_el2::PCT.set(0, hyperprof_arch::pct::PHYS),
                        1,
                    );
                    ok &= c.write(SysReg::PMSCR_EL2, pmscr_el2).is_ok();
                }
                debug_assert!(ok, "a PE boots at EL2");
                c.isb();
            }
        }
        let mut spus: Vec<Spu> = Vec::new();
        for cpu in 0..machine.pes().len() {
            if !machine.pe(cpu).is_some_and(Pe::has_spe) {
                continue;
            }
            let Some(mut c) = machine.cpu(cpu) else {
                continue;
            };
            let (Ok(pmsidr), Ok(pmbidr)) = (c.read(SysReg::PMSIDR_EL1), c.read(SysReg::PMBIDR_EL1))
            else {
                continue;
            };
            match spus
                .iter_mut()
                .find(|s| s.pmsidr == pmsidr && s.pmbidr == pmbidr)
            {
                Some(s) => s.cpus.push(cpu),
                None => spus.push(Spu {
                    id: spus.len() as u32,
                    pmsidr,
                    pmbidr,
                    cpus: vec![cpu],
                }),
            }
        }
        if mode == HostMode::Nvhe {
            for cpu in 0..machine.pes().len() {
                if let Some(pe) = machine.pe_mut(cpu) {
                    pe.eret(ExceptionLevel::EL1);
                }
            }
        }
        // One host PMU per distinct PMU implementation, like perf's PMUs.
        let mut host_pmus: Vec<HostPmu> = Vec::new();
        for (cpu, pe) in machine.pes().iter().enumerate() {
            let c = pe.pmu().config();
            let same = |h: &&mut HostPmu| {
                h.counters == c.counters && h.version == c.version && h.hpmn0 == c.hpmn0
            };
            match host_pmus.iter_mut().find(same) {
                Some(h) => h.cpus.push(cpu),
                None => host_pmus.push(HostPmu {
                    id: host_pmus.len() as u32,
                    counters: c.counters,
                    version: c.version,
                    cpus: vec![cpu],
                    reserved_for_host: 0,
                    hpmn0: c.hpmn0,
                    partitioned: false,
                }),
            }
        }
        Kvm {
            machine,
            spus,
            host_pmus,
            vms: Vec::new(),
            vcpus: Vec::new(),
            mode,
            cpu_pmu,
        }
    }

    /// The machine (the host kernel runs on it between vCPU runs).
    pub fn machine(&mut self) -> &mut Machine {
        &mut self.machine
    }

    /// The host's SPE instances.
    pub fn spus(&self) -> &[Spu] {
        &self.spus
    }

    /// The host's PMUs (one per distinct implementation).
    pub fn host_pmus(&self) -> &[HostPmu] {
        &self.host_pmus
    }

    /// The host's boot parameter (the series' `reserved_host_counters`):
    /// event counters the host keeps for itself on every PMU (the top
    /// ones); guests get the rest, in either mode. Without it the host
    /// keeps no counter from guests and does not partition. On a VHE host
    /// it partitions the PMU (MDCR_EL2.HPMN = N - reserved); an nVHE host
    /// keeps HPMN = N (its kernel at EL1 reaches only the counters below
    /// HPMN), so its guests are emulated. Only before any VM exists
    /// (EBUSY), and at most each PMU's N (EINVAL).
    pub fn set_host_pmu_reserve(&mut self, counters: u8) -> Result<(), Errno> {
        if !self.vms.is_empty() {
            return Err(Errno::EBUSY);
        }
        if self.host_pmus.iter().any(|h| counters > h.n()) {
            return Err(Errno::EINVAL);
        }
        let vhe = self.mode == HostMode::Vhe;
        for h in &mut self.host_pmus {
            h.reserved_for_host = counters;
            h.partitioned = vhe;
        }
        self.apply_host_hpmn();
        Ok(())
    }

    fn pmu_ctx(&self, vcpu: usize) -> Result<(usize, PmuAttrCtx<'_>), Errno> {
        let v = self.vcpus.get(vcpu).ok_or(Errno::ENODEV)?;
        let others = self.vcpus.iter().filter(|o| o.vm == v.vm).count() > 1;
        Ok((
            v.vm,
            PmuAttrCtx {
                features: v.features,
                host_pmus: &self.host_pmus,
                irqchip_in_kernel: true,
                vgic_initialized: true,
                other_vcpus_exist: others,
            },
        ))
    }

    /// KVM_CREATE_VM: guest RAM backed by host frames and mapped at stage 2.
    pub fn create_vm(&mut self, cfg: VmConfig) -> Result<usize, Errno> {
        if cfg.ram_bytes == 0 || cfg.ram_bytes % PAGE_SIZE != 0 {
            return Err(Errno::EINVAL);
        }
        let m = &mut self.machine;
        let s2 = Stage2Tables::new(&mut m.mem, &mut m.alloc, STAGE2_START_LEVEL)
            .map_err(|_| Errno::ENOMEM)?;
        let pages = cfg.ram_bytes / PAGE_SIZE;
        let pa = m
            .alloc
            .alloc_contiguous(&mut m.mem, pages)
            .map_err(|_| Errno::ENOMEM)?;
        s2.map(
            &mut m.mem,
            &mut m.alloc,
            GUEST_RAM_IPA,
            pa,
            cfg.ram_bytes,
            S2Perm::RW,
        )
        .map_err(|_| Errno::ENOMEM)?;
        let vmid = self.vms.len() as u64 + 1;
        // The top eighth of guest RAM holds the guest's page tables.
        let table_bytes = (cfg.ram_bytes / 8).max(PAGE_SIZE) & !(PAGE_SIZE - 1);
        let guest_frames =
            FrameAllocator::new(GUEST_RAM_IPA + cfg.ram_bytes - table_bytes, table_bytes)
                .map_err(|_| Errno::EINVAL)?;
        self.vms.push(VmState {
            s2,
            guest_frames,
            guest_s1: None,
            vmid,
            spe: VmSpe::new(cfg.memlock_limit),
            pmu: VmPmu::new(),
            memlock: Memlock::new(cfg.memlock_limit),
            pinning: pin_policy::Pinning::new(cfg.ram_bytes),
            perfmon: false,
            cntvoff: 0,
            destroyed: false,
            ram_bytes: cfg.ram_bytes,
            vgic: None,
        });
        Ok(self.vms.len() - 1)
    }

    /// The host physical address backing guest IPA `ipa` of VM `vm` (a
    /// stage-2 walk: the host may have moved pages).
    pub fn guest_pa(&self, vm: usize, ipa: u64) -> Option<u64> {
        let v = self.vms.get(vm)?;
        v.s2.params()
            .walk(&self.machine.mem, ipa, false)
            .ok()
            .map(|w| w.oa)
    }

    /// Grants or withdraws the perfmon capability of VM `vm`'s VMM: with it
    /// the guest may choose physical timestamps; without it PMSCR_EL2.PCT
    /// forces the virtual counter.
    pub fn set_perfmon_capability(&mut self, vm: usize, on: bool) -> Result<(), Errno> {
        self.vms.get_mut(vm).ok_or(Errno::ENODEV)?.perfmon = on;
        Ok(())
    }

    /// KVM_ARM_SET_COUNTER_OFFSET: the VM's virtual counter is the physical
    /// one minus `offset` (CNTVOFF_EL2 while it runs).
    pub fn set_counter_offset(&mut self, vm: usize, offset: u64) -> Result<(), Errno> {
        let v = self.vms.get_mut(vm).ok_or(Errno::ENODEV)?;
        if v.spe.has_run() {
            return Err(Errno::EBUSY);
        }
        v.cntvoff = offset;
        Ok(())
    }

    /// Tears VM `vm` down (its VMM closed it): every vCPU put and every pin
    /// released, so the VM's memlock account returns to zero.
    pub fn destroy_vm(&mut self, vm: usize) -> Result<(), Errno> {
        if self.vms.get(vm).is_none_or(|v| v.destroyed) {
            return Err(Errno::ENODEV);
        }
        for i in 0..self.vcpus.len() {
            if self.vcpus[i].vm != vm {
                continue;
            }
            if self.vcpus[i].loaded_on.is_some() {
                self.put(i).map_err(|_| Errno::EBUSY)?;
            }
            let (vcpus, vms) = (&mut self.vcpus, &mut self.vms);
            let v = &mut vms[vm];
            v.pinning.release(i, &mut vcpus[i].pins, &mut v.memlock);
        }
        let v = &mut self.vms[vm];
        v.pinning.teardown(&mut v.memlock);
        self.vms[vm].destroyed = true;
        Ok(())
    }

    /// The host moves the page backing guest IPA `ipa` of VM `vm` to another
    /// frame (migration, compaction): an MMU-notifier event. Every pin on
    /// the old frame is dropped and uncharged; the vCPUs affected re-pin at
    /// their next entry, and until then their buffer stays off the hardware,
    /// so no record is written to a page the guest no longer owns. Returns
    /// the new frame.
    pub fn host_move_page(&mut self, vm: usize, ipa: u64) -> Result<u64, Errno> {
        let ipa = ipa & !(PAGE_SIZE - 1);
        let old = self.guest_pa(vm, ipa).ok_or(Errno::EFAULT)?;
        if self
            .vcpus
            .iter()
            .any(|v| v.vm == vm && v.loaded_on.is_some())
        {
            // KVM would kick the vCPUs out first; here the caller puts them.
            return Err(Errno::EBUSY);
        }
        {
            // Pin-all holds every guest page: it cannot move.
            let v = &mut self.vms[vm];
            if v.pinning.invalidate(old..old + PAGE_SIZE, &mut v.memlock) {
                return Err(Errno::EBUSY);
            }
        }
        let m = &mut self.machine;
        let mut page = vec![0u8; PAGE_SIZE as usize];
        m.mem.read(old, &mut page).map_err(|_| Errno::EFAULT)?;
        let new = m.alloc.alloc(&mut m.mem).map_err(|_| Errno::ENOMEM)?;
        m.mem.write(new, &page).map_err(|_| Errno::EFAULT)?;
        let v = &mut self.vms[vm];
        v.s2.unmap(&mut m.mem, ipa, PAGE_SIZE)
            .map_err(|_| Errno::EFAULT)?;
        v.s2.map(&mut m.mem, &mut m.alloc, ipa, new, PAGE_SIZE, S2Perm::RW)
            .map_err(|_| Errno::ENOMEM)?;
        // kvm_tlb_flush_vmid_ipa(): every CPU's cached walks of the VM
        // (the SPE units' among them) go with the old mapping.
        self.machine.invalidate_buffer_tlbs(Some(v.vmid as u16));
        for c in self.vcpus.iter_mut().filter(|c| c.vm == vm) {
            if c.pins
                .invalidate(old..old + PAGE_SIZE, &mut self.vms[vm].memlock)
            {
                c.needs_repin = true;
                c.stats.invalidations += 1;
            }
        }
        Ok(new)
    }

    /// Maps guest virtual `va..va + size` to guest IPA `ipa..` in the
    /// guest's stage-1 tables (built in guest RAM, as the guest's boot code
    /// would); returns the tables' root IPA, the guest's TTBR0_EL1. An `ipa`
    /// outside guest RAM is accepted: the guest may map anything.
    pub fn guest_map(&mut self, vm: usize, va: u64, ipa: u64, size: u64) -> Result<u64, Errno> {
        let v = self.vms.get_mut(vm).ok_or(Errno::ENODEV)?;
        let mut gmem = GuestPhysMem::new(&mut self.machine.mem, v.s2.params());
        let tables = match v.guest_s1 {
            Some(t) => t,
            None => {
                let t =
                    Stage1Tables::new(&mut gmem, &mut v.guest_frames).map_err(|_| Errno::ENOMEM)?;
                v.guest_s1 = Some(t);
                t
            }
        };
        tables
            .map(&mut gmem, &mut v.guest_frames, va, ipa, size, Perm::RW)
            .map_err(|_| Errno::EINVAL)?;
        Ok(tables.root)
    }

    /// Sets VM `vm`'s RLIMIT_MEMLOCK (the VMM raising it after an Rlimit exit).
    pub fn set_memlock_limit(&mut self, vm: usize, limit: u64) -> Result<(), Errno> {
        let v = self.vms.get_mut(vm).ok_or(Errno::ENODEV)?;
        // Below what is pinned already: refused, as lowering an rlimit
        // under the locked amount would be; below the max buffer size
        // already set: refused as that attribute would be (ENOMEM).
        if limit < v.memlock.used() {
            return Err(Errno::EINVAL);
        }
        v.spe.set_memlock_limit(limit)?;
        v.memlock.set_limit(limit).map_err(|_| Errno::EINVAL)
    }
}

impl Kvm {
    /// Copies guest memory at `ipa` out (the VMM's mapping of its memslots).
    pub fn read_guest(&self, vm: usize, ipa: u64, buf: &mut [u8]) -> Result<(), Errno> {
        let mut done = 0;
        while done < buf.len() {
            let at = ipa + done as u64;
            let n = ((PAGE_SIZE - (at & (PAGE_SIZE - 1))) as usize).min(buf.len() - done);
            let pa = self.guest_pa(vm, at).ok_or(Errno::EFAULT)?;
            self.machine
                .mem
                .read(pa, &mut buf[done..done + n])
                .map_err(|_| Errno::EFAULT)?;
            done += n;
        }
        Ok(())
    }

    /// Copies `data` into guest memory at `ipa`.
    pub fn write_guest(&mut self, vm: usize, ipa: u64, data: &[u8]) -> Result<(), Errno> {
        let mut done = 0;
        while done < data.len() {
            let at = ipa + done as u64;
            let n = ((PAGE_SIZE - (at & (PAGE_SIZE - 1))) as usize).min(data.len() - done);
            let pa = self.guest_pa(vm, at).ok_or(Errno::EFAULT)?;
            self.machine
                .mem
                .write(pa, &data[done..done + n])
                .map_err(|_| Errno::EFAULT)?;
            done += n;
        }
        Ok(())
    }

    /// Stage-2 walk parameters of VM `vm`.
    pub fn stage2(&self, vm: usize) -> Option<Stage2Params> {
        self.vms.get(vm).map(|v| v.s2.params())
    }

    /// KVM_CREATE_VCPU with KVM_ARM_VCPU_INIT's features.
    pub fn create_vcpu(&mut self, vm: usize, features: VcpuFeatures) -> Result<usize, Errno> {
        let v = self.vms.get(vm).ok_or(Errno::ENODEV)?;
        if v.spe.has_run() {
            return Err(Errno::EBUSY);
        }
        if features.spe && self.spus.is_empty() {
            return Err(Errno::EINVAL);
        }
        // The vGIC has a redistributor for each vCPU it was initialised with.
        if v.vgic
            .as_ref()
            .is_some_and(crate::vgic::VgicV3::initialized)
        {
            return Err(Errno::EBUSY);
        }
        self.vcpus.push(VcpuState {
            vm,
            features,
            spe_cfg: VcpuSpe::default(),
            pmu_cfg: VcpuPmu::default(),
            spe: GuestSpe::default(),
            ttbr0_el1: 0,
            contextidr_el1: 0,
            host_spe: None,
            nvhe_host: None,
            host_mdcr: 0,
            loaded_on: None,
            unsupported_cpu: false,
            spe_live: false,
            needs_repin: false,
            pins: VcpuPins::default(),
            pmu: GuestPmu::reset(),
            pmu_live: false,
            pmu_host: None,
            pmu_virq: false,
            pmu_switched: None,
            mmio: None,
            timer: VcpuTimer::default(),
            stats: VcpuStats::default(),
        });
        Ok(self.vcpus.len() - 1)
    }

    fn attr_ctx(&self, vcpu: usize) -> Result<(usize, crate::spe_attr::AttrCtx<'_>), Errno> {
        let v = self.vcpus.get(vcpu).ok_or(Errno::ENODEV)?;
        Ok((
            v.vm,
            crate::spe_attr::AttrCtx {
                features: v.features,
                host_spus: &self.spus,
                host_supports_spe: !self.spus.is_empty(),
            },
        ))
    }

    /// KVM_SET_DEVICE_ATTR on a vCPU.
    pub fn set_device_attr(
        &mut self,
        vcpu: usize,
        group: u32,
        attr: u64,
        arg: UserPtr<u64>,
    ) -> Result<(), Errno> {
        if group == KVM_ARM_VCPU_PMU_V3_CTRL {
            let (vm, ctx) = self.pmu_ctx(vcpu)?;
            let mut vm_pmu = self.vms[vm].pmu.clone();
            let mut vc = self.vcpus[vcpu].pmu_cfg;
            vm_pmu.set_attr(&mut vc, &ctx, attr, arg)?;
            self.vms[vm].pmu = vm_pmu;
            self.vcpus[vcpu].pmu_cfg = vc;
            return Ok(());
        }
        if group != KVM_ARM_VCPU_SPE_CTRL {
            return Err(Errno::ENXIO);
        }
        let v = self.vcpus.get(vcpu).ok_or(Errno::ENODEV)?;
        let ctx = crate::spe_attr::AttrCtx {
            features: v.features,
            host_spus: &self.spus,
            host_supports_spe: !self.spus.is_empty(),
        };
        let vm = &mut self.vms[v.vm].spe;
        let vc = &mut self.vcpus[vcpu].spe_cfg;
        vm.set_attr(vc, &ctx, attr, arg)
    }

    /// What a VMM does to give a vCPU guest SPE: KVM_SET_DEVICE_ATTR of
    /// SPE_SPU, SPE_IRQ, SPE_MAX_BUFFER_SIZE, then SPE_INIT; the first error
    /// and the attribute that gave it.
    pub fn configure_spe(
        &mut self,
        vcpu: usize,
        spu: u32,
        irq: u32,
        max_buffer_size: u64,
    ) -> Result<(), (u64, Errno)> {
        use crate::uapi::{
            KVM_ARM_VCPU_SPE_INIT, KVM_ARM_VCPU_SPE_IRQ, KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE,
            KVM_ARM_VCPU_SPE_SPU,
        };
        for (attr, v) in [
            (KVM_ARM_VCPU_SPE_SPU, spu as u64),
            (KVM_ARM_VCPU_SPE_IRQ, irq as u64),
            (KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE, max_buffer_size),
            (KVM_ARM_VCPU_SPE_INIT, 0),
        ] {
            self.set_device_attr(vcpu, KVM_ARM_VCPU_SPE_CTRL, attr, UserPtr::Value(v))
                .map_err(|e| (attr, e))?;
        }
        Ok(())
    }

    /// KVM_GET_DEVICE_ATTR on a vCPU.
    pub fn get_device_attr(&self, vcpu: usize, group: u32, attr: u64) -> Result<u64, Errno> {
        if group == KVM_ARM_VCPU_PMU_V3_CTRL {
            let (vm, ctx) = self.pmu_ctx(vcpu)?;
            return self.vms[vm]
                .pmu
                .get_attr(&self.vcpus[vcpu].pmu_cfg, &ctx, attr);
        }
        if group != KVM_ARM_VCPU_SPE_CTRL {
            return Err(Errno::ENXIO);
        }
        let (vm, ctx) = self.attr_ctx(vcpu)?;
        self.vms[vm]
            .spe
            .get_attr(&self.vcpus[vcpu].spe_cfg, &ctx, attr)
    }

    /// KVM_HAS_DEVICE_ATTR on a vCPU.
    pub fn has_device_attr(&self, vcpu: usize, group: u32, attr: u64) -> Result<(), Errno> {
        if group == KVM_ARM_VCPU_PMU_V3_CTRL {
            let (vm, ctx) = self.pmu_ctx(vcpu)?;
            return self.vms[vm].pmu.has_attr(&ctx, attr);
        }
        if group != KVM_ARM_VCPU_SPE_CTRL {
            return Err(Errno::ENXIO);
        }
        let (vm, ctx) = self.attr_ctx(vcpu)?;
        self.vms[vm].spe.has_attr(&ctx, attr)
    }

    /// What a vCPU's world switches cost, and its exits.
    pub fn vcpu_stats(&self, vcpu: usize) -> Option<VcpuStats> {
        self.vcpus.get(vcpu).map(|v| v.stats)
    }

    /// The guest's SPE registers as the hypervisor holds them (meaningful
    /// while the vCPU is not running).
    pub fn guest_spe(&self, vcpu: usize) -> Option<GuestSpe> {
        self.vcpus.get(vcpu).map(|v| v.spe)
    }

    /// Bytes pinned for VM `vm`.
    pub fn pinned_bytes(&self, vm: usize) -> Option<u64> {
        self.vms.get(vm).map(|v| v.memlock.used())
    }

    fn spe_features(&self, vcpu: usize) -> Features {
        let v = &self.vcpus[vcpu];
        let vm = &self.vms[v.vm];
        match vm
            .spe
            .spu()
            .and_then(|id| self.spus.iter().find(|s| s.id == id))
        {
            Some(spu) => Features {
                fne: vm.spe.guest_has_fne(spu),
                fds: vm.spe.guest_has_fds(spu),
                nvhe: self.mode == HostMode::Nvhe,
            },
            None => Features {
                nvhe: self.mode == HostMode::Nvhe,
                ..Features::default()
            },
        }
    }
}
