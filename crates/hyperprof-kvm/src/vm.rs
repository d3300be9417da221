//! The hypervisor: the machine, its host, VMs and vCPUs, in KVM's shape.
//!
//! [`Kvm`] owns the simulated machine and every VM and vCPU; callers name
//! them by index, as a VMM names them by file descriptor. A vCPU runs a
//! [`GuestProgram`] (the guest kernel) through a [`GuestCpu`]: the guest's
//! view of the physical CPU, where untrapped accesses reach the hardware
//! and trapped ones exit to the hypervisor, which emulates them between the
//! exit and entry halves of the world switch ([`crate::switch`]).
//!
//! VHE only for now: the host runs at EL2 with E2H and TGE; the guest at EL1
//! with E2H, VM set and TGE clear.

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

mod pmu;
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
}

/// How a VM is created.
#[derive(Clone, Copy, Debug)]
pub struct VmConfig {
    /// Guest RAM in bytes (page multiple), at [`GUEST_RAM_IPA`].
    pub ram_bytes: u64,
    /// RLIMIT_MEMLOCK of the VMM, in bytes.
    pub memlock_limit: u64,
}

/// A stage-2 fault on the guest's buffer is the hypervisor's business, not
/// the guest's: the guest sees an external abort (its buffer is not in its
/// RAM). Rewrites the saved PMBSR_EL1 and says whether it did.
fn stage2_fault_as_external_abort(buffer: &mut switch::BufferRegs) -> bool {
    let pmbsr = buffer.pmbsr_el1;
    let s2_fault = pmbsr_el1::S.is_set(pmbsr)
        && hyperprof_arch::PmbsrEc::from_bits(pmbsr_el1::EC.get(pmbsr))
            == Some(hyperprof_arch::PmbsrEc::FAULT_S2);
    if s2_fault {
        buffer.pmbsr_el1 = pmbsr_el1::EA.set(pmbsr_el1::S.set(0, 1), 1);
    }
    s2_fault
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
    /// switched late; overflow flags moved at interrupt exits).
    pub pmu_switch: AccessStats,
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
    /// The VMM holds the perfmon capability: the guest may use physical
    /// timestamps (PMSCR_EL2.PCT = 0b01 while it runs).
    perfmon: bool,
    /// CNTVOFF_EL2 while the VM runs (KVM_ARM_SET_COUNTER_OFFSET).
    cntvoff: u64,
    /// Torn down: its vCPUs no longer run.
    destroyed: bool,
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
                let ok = c.write(SysReg::HCR_EL2, hcr).is_ok()
                    && c.write(SysReg::MDCR_EL2, mdcr_el2::E2PB.set(mdcr, e2pb))
                        .is_ok();
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

    /// The host's boot parameter: event counters the host keeps for itself
    /// on every PMU (the top ones); guests in partitioned mode get the rest.
    /// Only before any VM exists (EBUSY), and at most each PMU's N (EINVAL).
    pub fn set_host_pmu_reserve(&mut self, counters: u8) -> Result<(), Errno> {
        if !self.vms.is_empty() {
            return Err(Errno::EBUSY);
        }
        if self.host_pmus.iter().any(|h| counters > h.n()) {
            return Err(Errno::EINVAL);
        }
        for h in &mut self.host_pmus {
            h.reserved_for_host = counters;
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
            perfmon: false,
            cntvoff: 0,
            destroyed: false,
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
            vcpus[i].pins.unpin(&mut vms[vm].memlock);
        }
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

    /// KVM_GET_REG_LIST, for the SPE part: the registers a VMM saves to
    /// migrate vCPU `vcpu` (none without the SPE feature).
    pub fn spe_reg_list(&self, vcpu: usize) -> Result<Vec<SysReg>, Errno> {
        let v = self.vcpus.get(vcpu).ok_or(Errno::ENODEV)?;
        if !v.features.spe {
            return Ok(Vec::new());
        }
        let f = self.spe_features(vcpu);
        let mut regs = vec![SysReg::PMSCR_EL1];
        if f.fne {
            regs.push(SysReg::PMSNEVFR_EL1);
        }
        regs.extend([
            SysReg::PMSICR_EL1,
            SysReg::PMSIRR_EL1,
            SysReg::PMSFCR_EL1,
            SysReg::PMSEVFR_EL1,
            SysReg::PMSLATFR_EL1,
        ]);
        if f.fds {
            regs.push(SysReg::PMSDSFR_EL1);
        }
        regs.extend([
            SysReg::PMBLIMITR_EL1,
            SysReg::PMBPTR_EL1,
            SysReg::PMBSR_EL1,
            SysReg::TTBR0_EL1,
            SysReg::CONTEXTIDR_EL1,
        ]);
        Ok(regs)
    }

    fn one_reg_slot(v: &mut VcpuState, reg: SysReg) -> Option<&mut u64> {
        let (s, b) = (&mut v.spe.sampling, &mut v.spe.buffer);
        Some(match reg {
            SysReg::PMSCR_EL1 => &mut s.pmscr_el1,
            SysReg::PMSNEVFR_EL1 => &mut s.pmsnevfr_el1,
            SysReg::PMSICR_EL1 => &mut s.pmsicr_el1,
            SysReg::PMSIRR_EL1 => &mut s.pmsirr_el1,
            SysReg::PMSFCR_EL1 => &mut s.pmsfcr_el1,
            SysReg::PMSEVFR_EL1 => &mut s.pmsevfr_el1,
            SysReg::PMSLATFR_EL1 => &mut s.pmslatfr_el1,
            SysReg::PMSDSFR_EL1 => &mut s.pmsdsfr_el1,
            SysReg::PMBLIMITR_EL1 => &mut b.pmblimitr_el1,
            SysReg::PMBPTR_EL1 => &mut b.pmbptr_el1,
            SysReg::PMBSR_EL1 => &mut b.pmbsr_el1,
            SysReg::TTBR0_EL1 => &mut v.ttbr0_el1,
            SysReg::CONTEXTIDR_EL1 => &mut v.contextidr_el1,
            _ => return None,
        })
    }

    /// KVM_GET_ONE_REG for one of [`Kvm::spe_reg_list`]'s registers. The
    /// vCPU must not be loaded (its state is then all in memory): EBUSY.
    pub fn get_one_reg(&mut self, vcpu: usize, reg: SysReg) -> Result<u64, Errno> {
        if !self.spe_reg_list(vcpu)?.contains(&reg) {
            return Err(Errno::ENOENT);
        }
        let v = &mut self.vcpus[vcpu];
        if v.loaded_on.is_some() {
            return Err(Errno::EBUSY);
        }
        Kvm::one_reg_slot(v, reg).map(|r| *r).ok_or(Errno::ENOENT)
    }

    /// KVM_SET_ONE_REG for one of [`Kvm::spe_reg_list`]'s registers; the
    /// buffer registers go through the same checks as a guest write (RES0
    /// cleared). The vCPU must not be loaded: EBUSY. Restoring SPE state
    /// makes it live, so the next load switches it in.
    pub fn set_one_reg(&mut self, vcpu: usize, reg: SysReg, val: u64) -> Result<(), Errno> {
        if !self.spe_reg_list(vcpu)?.contains(&reg) {
            return Err(Errno::ENOENT);
        }
        let v = &mut self.vcpus[vcpu];
        if v.loaded_on.is_some() {
            return Err(Errno::EBUSY);
        }
        let val = match reg {
            SysReg::PMBLIMITR_EL1 => val & !pmblimitr_el1::RES0,
            SysReg::PMBSR_EL1 => val & !pmbsr_el1::RES0,
            SysReg::CONTEXTIDR_EL1 => val & 0xFFFF_FFFF,
            _ => val,
        };
        *Kvm::one_reg_slot(v, reg).ok_or(Errno::ENOENT)? = val;
        if !matches!(reg, SysReg::TTBR0_EL1 | SysReg::CONTEXTIDR_EL1) {
            v.spe_live = true;
        }
        // A restored enabled buffer is pinned before it reaches the hardware.
        if reg == SysReg::PMBLIMITR_EL1 || reg == SysReg::PMBPTR_EL1 {
            v.needs_repin = v.spe.buffer.enabled();
        }
        Ok(())
    }

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
        // The guest PMU is switched by a VHE host's load and put; an nVHE
        // host kernel at EL1 cannot leave counters to guests (its own
        // accesses are limited to MDCR_EL2.HPMN), so it offers no vPMU.
        if features.pmu_v3 && self.mode == HostMode::Nvhe {
            return Err(Errno::EINVAL);
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

    /// vcpu_load on physical CPU `cpu`: SPE state switched (seed 000), the
    /// buffer handed to EL1 with its accesses trapped (MDCR_EL2.E2PB =
    /// 0b10), ID registers trapped by fine-grained traps.
    pub fn load(&mut self, vcpu: usize, cpu: usize) -> Result<(), String> {
        let v = self.vcpus.get(vcpu).ok_or("no such vCPU")?;
        if let Some(on) = v.loaded_on {
            return Err(format!("vCPU {vcpu} is already loaded on CPU {on}"));
        }
        if let Some(other) = self.vcpus.iter().position(|o| o.loaded_on == Some(cpu)) {
            return Err(format!("CPU {cpu} already has vCPU {other} loaded"));
        }
        let vm = v.vm;
        // SPE state is switched only on a CPU that has the VM's SPU; on any
        // other CPU the load completes and KVM_RUN fails entry.
        let spu = self.vms[vm].spe.spu();
        let spu_here = self
            .spus
            .iter()
            .any(|s| Some(s.id) == spu && s.cpus.contains(&cpu));
        let unsupported = v.features.spe && !spu_here;
        let spe = v.features.spe && spu_here;
        let cntvoff = self.vms[vm].cntvoff;
        // Lazy switching needs the first SPE access to trap; without FGT
        // the ID registers cannot trap (a lazy guest would read PMBIDR_EL1.P
        // set), so the state goes live at load there.
        let fgt = self.machine.pe(cpu).is_some_and(Pe::has_fgt);
        if self.machine.pe(cpu).is_none() {
            return Err(format!("no CPU {cpu}"));
        }
        if self.mode == HostMode::Nvhe {
            // The host kernel at EL1 cannot touch EL2 state: everything is
            // switched by the hypervisor at each entry and exit.
            let v = &mut self.vcpus[vcpu];
            if spe && !fgt {
                v.spe_live = true;
            }
            v.stats.loads += 1;
            v.loaded_on = Some(cpu);
            v.unsupported_cpu = unsupported;
            return Ok(());
        }
        let live = spe && (self.vcpus[vcpu].spe_live || !fgt);
        let host_mdcr = {
            let mut c = self.machine.cpu(cpu).ok_or("no such CPU")?;
            c.read(SysReg::MDCR_EL2).map_err(access(SysReg::MDCR_EL2))?
        };
        let v = &mut self.vcpus[vcpu];
        v.stats.loads += 1;
        v.host_spe = None;
        v.host_mdcr = host_mdcr;
        v.loaded_on = Some(cpu);
        v.unsupported_cpu = unsupported;
        // A guest that has used its PMU gets its state back at load; one
        // that has not keeps trapping (lazy) and costs nothing here.
        if self.vcpus[vcpu].pmu_live {
            self.pmu_load(vcpu, cpu)?;
        }
        // SPE untouched (or absent): the sampling registers trap (TPMS) and
        // the buffer stays the host's, its EL1 accesses trapped (E2PB =
        // 0b00); no SPE register is switched. SPE live: spe_activate
        // writes MDCR_EL2.
        let mdcr = (!live).then(|| {
            let spe_bits = mdcr_el2::TPMS.set(mdcr_el2::E2PB.set(host_mdcr, mdcr_el2::E2PB_EL2), 1);
            self.pmu_mdcr(vcpu, cpu, spe_bits)
        });
        // The SPE ID registers always trap: sanitised for an SPE vCPU,
        // UNDEFINED for one without (the VM does not have SPE); a live
        // partitioned PMU adds its trapped registers.
        let (rd_traps, wr_traps) = self.fgt_values(vcpu, cpu);
        let pmu_fgt = wr_traps != hyperprof_arch::hdfgwtr_el2::TRAP_NOTHING;
        let (ttbr, ctx) = (self.vcpus[vcpu].ttbr0_el1, self.vcpus[vcpu].contextidr_el1);
        let mut c = self.machine.cpu(cpu).ok_or("no such CPU")?;
        if let Some(mdcr) = mdcr {
            c.write(SysReg::MDCR_EL2, mdcr)
                .map_err(access(SysReg::MDCR_EL2))?;
        }
        c.write(SysReg::CNTVOFF_EL2, cntvoff)
            .map_err(access(SysReg::CNTVOFF_EL2))?;
        c.write(SysReg::HDFGRTR_EL2, rd_traps)
            .map_err(access(SysReg::HDFGRTR_EL2))?;
        if pmu_fgt {
            c.write(SysReg::HDFGWTR_EL2, wr_traps)
                .map_err(access(SysReg::HDFGWTR_EL2))?;
        }
        c.write(SysReg::TTBR0_EL12, ttbr)
            .map_err(access(SysReg::TTBR0_EL12))?;
        c.write(SysReg::CONTEXTIDR_EL12, ctx)
            .map_err(access(SysReg::CONTEXTIDR_EL12))?;
        if live {
            self.spe_activate(vcpu, cpu)?;
        }
        Ok(())
    }

    /// Without FEAT_FGT PMBIDR_EL1 and PMSIDR_EL1 cannot be trapped: the
    /// guest reads the hardware's values. Guest SPE is then allowed only
    /// when those are already what the guest must see (seed 002's review:
    /// an unlimited MaxBuffSize is a valid value that needs no trap).
    fn ids_visible_without_fgt(&self, vcpu: usize, cpu: usize) -> Result<(), String> {
        let v = &self.vcpus[vcpu];
        if !v.features.spe || self.machine.pe(cpu).is_none_or(Pe::has_fgt) {
            return Ok(());
        }
        let vm = &self.vms[v.vm].spe;
        let Some(spu) = vm.spu_in(&self.spus) else {
            return Ok(());
        };
        let (pmbidr, pmsidr) = (vm.guest_pmbidr(spu), vm.guest_pmsidr(spu));
        if pmbidr == spu.pmbidr && pmsidr == spu.pmsidr {
            return Ok(());
        }
        Err(format!(
            "CPU {cpu} has no FEAT_FGT, so PMBIDR_EL1/PMSIDR_EL1 cannot be trapped, and the hardware's \
             {:#x}/{:#x} differ from what the VM must see, {pmbidr:#x}/{pmsidr:#x} \
             (set SPE_MAX_BUFFER_SIZE to the SPU's own maximum)",
            spu.pmbidr, spu.pmsidr
        ))
    }

    /// Makes a vCPU's SPE state live on `cpu` (at load, or at the guest's
    /// first SPE access): host profiling stopped and drained and the
    /// sampling registers switched (seed 000), then the buffer handed to
    /// EL1 with its accesses trapped (MDCR_EL2.E2PB = 0b10, TPMS clear),
    /// with the ISB that synchronizes the change of owning regime.
    fn spe_activate(&mut self, vcpu: usize, cpu: usize) -> Result<(), String> {
        if self.mode == HostMode::Nvhe {
            // The next entry switches the state in.
            self.vcpus[vcpu].spe_live = true;
            return Ok(());
        }
        let f = self.spe_features(vcpu);
        let v = &self.vcpus[vcpu];
        let (guest, host_mdcr, vm) = (v.spe, v.host_mdcr, v.vm);
        let perfmon = self.vms[vm].perfmon;
        let spe_bits =
            mdcr_el2::TPMS.set(mdcr_el2::E2PB.set(host_mdcr, mdcr_el2::E2PB_EL1_TRAP), 0);
        let mdcr = self.pmu_mdcr(vcpu, cpu, spe_bits);
        let mut c = self.machine.cpu(cpu).ok_or("no such CPU")?;
        let before = c.pe().access_stats();
        let host = switch::load(&mut c, &guest, f).map_err(|e| format!("SPE load: {e}"))?;
        c.write(SysReg::MDCR_EL2, mdcr)
            .map_err(access(SysReg::MDCR_EL2))?;
        if perfmon {
            // PCT = 0b01: the guest's PMSCR_EL1.PCT may pick the physical counter.
            let pct = hyperprof_arch::pmscr_el2::PCT.set(0, hyperprof_arch::pct::PHYS);
            c.write(SysReg::PMSCR_EL2, pct)
                .map_err(access(SysReg::PMSCR_EL2))?;
        }
        c.isb();
        let after = c.pe().access_stats();
        let v = &mut self.vcpus[vcpu];
        add_stats(&mut v.stats.spe_load_put, diff(after, before));
        v.host_spe = Some(host);
        v.spe_live = true;
        Ok(())
    }

    /// vcpu_put: the host's MDCR_EL2 back (owning regime EL2), then the host
    /// SPE session resumed (seed 000).
    pub fn put(&mut self, vcpu: usize) -> Result<(), String> {
        let v = self.vcpus.get(vcpu).ok_or("no such vCPU")?;
        let cpu = v
            .loaded_on
            .ok_or_else(|| format!("vCPU {vcpu} is not loaded"))?;
        if self.mode == HostMode::Nvhe {
            let v = &mut self.vcpus[vcpu];
            v.loaded_on = None;
            v.unsupported_cpu = false;
            return Ok(());
        }
        let f = self.spe_features(vcpu);
        let pmu_fgt = self.fgt_values(vcpu, cpu).1 != hyperprof_arch::hdfgwtr_el2::TRAP_NOTHING;
        self.pmu_put(vcpu, cpu)?;
        let v = &self.vcpus[vcpu];
        let (host_mdcr, host_spe) = (v.host_mdcr, v.host_spe);
        let measured_mdcr = host_spe.is_some();
        let mut guest = v.spe;
        let mut c = self.machine.cpu(cpu).ok_or("no such CPU")?;
        if pmu_fgt {
            c.write(
                SysReg::HDFGWTR_EL2,
                hyperprof_arch::hdfgwtr_el2::TRAP_NOTHING,
            )
            .map_err(access(SysReg::HDFGWTR_EL2))?;
        }
        let ttbr = c
            .read(SysReg::TTBR0_EL12)
            .map_err(access(SysReg::TTBR0_EL12))?;
        let ctx = c
            .read(SysReg::CONTEXTIDR_EL12)
            .map_err(access(SysReg::CONTEXTIDR_EL12))?;
        c.write(
            SysReg::HDFGRTR_EL2,
            hyperprof_arch::hdfgrtr_el2::TRAP_NOTHING,
        )
        .map_err(access(SysReg::HDFGRTR_EL2))?;
        c.write(SysReg::CNTVOFF_EL2, 0)
            .map_err(access(SysReg::CNTVOFF_EL2))?;
        let before = c.pe().access_stats();
        c.write(SysReg::MDCR_EL2, host_mdcr)
            .map_err(access(SysReg::MDCR_EL2))?;
        if let Some(host) = host_spe {
            c.isb();
            switch::put(&mut c, &mut guest, &host, f).map_err(|e| format!("SPE put: {e}"))?;
        }
        let after = c.pe().access_stats();
        let v = &mut self.vcpus[vcpu];
        v.spe = guest;
        v.ttbr0_el1 = ttbr;
        v.contextidr_el1 = ctx;
        if measured_mdcr {
            add_stats(&mut v.stats.spe_load_put, diff(after, before));
        }
        v.host_spe = None;
        v.loaded_on = None;
        v.unsupported_cpu = false;
        Ok(())
    }

    /// KVM_RUN: enters the guest on the CPU the vCPU is loaded on and runs
    /// `program` until it stops or an exit needs the VMM.
    pub fn run(&mut self, vcpu: usize, program: &mut dyn GuestProgram) -> Exit {
        let Some(v) = self.vcpus.get(vcpu) else {
            return Exit::FailEntry(format!("no vCPU {vcpu}"));
        };
        let Some(cpu) = v.loaded_on else {
            return Exit::FailEntry(format!("vCPU {vcpu} is not loaded on a CPU"));
        };
        if v.features.spe {
            let ctx = crate::spe_attr::AttrCtx {
                features: v.features,
                host_spus: &self.spus,
                host_supports_spe: !self.spus.is_empty(),
            };
            if let Err(why) = self.vms[v.vm].spe.check_ready(&v.spe_cfg, &ctx) {
                return Exit::FailEntry(format!("vCPU {vcpu}: SPE not ready: {why}"));
            }
        }
        if self.vms[v.vm].destroyed {
            return Exit::FailEntry(format!("vCPU {vcpu}: its VM was destroyed"));
        }
        if let Err(why) = self.ids_visible_without_fgt(vcpu, cpu) {
            return Exit::FailEntry(why);
        }
        let v = &self.vcpus[vcpu];
        if v.unsupported_cpu {
            let spu = self.vms[v.vm].spe.spu().unwrap_or(u32::MAX);
            return Exit::FailEntry(format!(
                "KVM_EXIT_FAIL_ENTRY_CPU_UNSUPPORTED: vCPU {vcpu} is on CPU {cpu}, which has no SPU {spu}"
            ));
        }
        if v.features.pmu_v3 {
            let ready = self.pmu_ctx(vcpu).and_then(|(vm, ctx)| {
                self.vms[vm]
                    .pmu
                    .check_ready(&self.vcpus[vcpu].pmu_cfg, &ctx)
            });
            if let Err(e) = ready {
                return Exit::FailEntry(format!(
                    "vCPU {vcpu}: PMU not initialised (KVM_ARM_VCPU_PMU_V3_INIT): {e}"
                ));
            }
        }
        let v = &self.vcpus[vcpu];
        let vm = v.vm;
        self.vms[vm].spe.mark_ran();
        self.vms[vm].pmu.mark_ran();
        let mut g = GuestCpu {
            kvm: self,
            vcpu,
            vm,
            cpu,
            exit: None,
            buffer_live: false,
        };
        if let Err(e) = g.enter(ExceptionLevel::EL1) {
            return Exit::FailEntry(e);
        }
        let step = program.run(&mut g);
        let pending = g.exit.take();
        if let Err(e) = g.leave() {
            return Exit::FailEntry(e);
        }
        match (pending, step) {
            (Some(exit), _) => exit,
            (None, GuestStep::Done) => Exit::Halt,
            (None, GuestStep::More) => Exit::Yield,
        }
    }
}

fn diff(a: AccessStats, b: AccessStats) -> AccessStats {
    AccessStats {
        reads: a.reads - b.reads,
        writes: a.writes - b.writes,
        isb: a.isb - b.isb,
        dsb: a.dsb - b.dsb,
        psb: a.psb - b.psb,
    }
}

fn add_stats(to: &mut AccessStats, d: AccessStats) {
    to.reads += d.reads;
    to.writes += d.writes;
    to.isb += d.isb;
    to.dsb += d.dsb;
    to.psb += d.psb;
}

/// The guest's view of the physical CPU while its vCPU runs.
pub struct GuestCpu<'a> {
    kvm: &'a mut Kvm,
    vcpu: usize,
    vm: usize,
    cpu: usize,
    exit: Option<Exit>,
    /// The guest's buffer registers are on the hardware (entry restored
    /// them), so the exit half must drain and save them.
    buffer_live: bool,
}

impl GuestCpu<'_> {
    fn pe(&mut self) -> &mut Pe {
        self.kvm
            .machine
            .pe_mut(self.cpu)
            .expect("loaded on an existing CPU")
    }

    /// Whether the hypervisor is waiting to return to the VMM.
    pub fn exiting(&self) -> bool {
        self.exit.is_some()
    }

    /// Entry: guest HCR_EL2 and stage 2, the SPE entry half, ERET to the
    /// guest's `to` (EL1 at KVM_RUN; the level an exit interrupted when
    /// the guest resumes after it).
    fn enter(&mut self, to: ExceptionLevel) -> Result<(), String> {
        if self.kvm.mode == HostMode::Nvhe {
            return self.enter_nvhe(to);
        }
        let vttbr = {
            let vm = &self.kvm.vms[self.vm];
            vm.s2.root | vm.vmid << 48
        };
        let spe = self.kvm.vcpus[self.vcpu].features.spe;
        {
            let mut c = self.kvm.machine.cpu(self.cpu).ok_or("no such CPU")?;
            c.write(SysReg::VTTBR_EL2, vttbr)
                .map_err(access(SysReg::VTTBR_EL2))?;
            let hcr = hcr_el2::E2H.set(HCR_VM, 1);
            c.write(SysReg::HCR_EL2, hcr)
                .map_err(access(SysReg::HCR_EL2))?;
        }
        // After an MMU-notifier event the buffer goes back to the hardware
        // only once it is pinned again.
        if spe {
            self.repin_if_needed();
        }
        let v = &self.kvm.vcpus[self.vcpu];
        let live = spe && !v.needs_repin && v.spe.buffer.enabled();
        let guest = v.spe;
        let mut c = self.kvm.machine.cpu(self.cpu).ok_or("no such CPU")?;
        let before = c.pe().access_stats();
        if live {
            switch::enter(&mut c, &guest).map_err(|e| format!("SPE entry: {e}"))?;
        }
        let after = c.pe().access_stats();
        let v = &mut self.kvm.vcpus[self.vcpu];
        v.stats.entries += 1;
        v.stats.live_trips += live as u64;
        add_stats(&mut v.stats.spe_switch, diff(after, before));
        if live {
            add_stats(&mut v.stats.spe_switch_live, diff(after, before));
        }
        self.buffer_live = live;
        self.pmu_enter()?;
        self.pe().eret(to);
        Ok(())
    }

    /// Exit: exception entry to EL2, the SPE exit half, host HCR_EL2.
    fn leave(&mut self) -> Result<(), String> {
        if self.kvm.mode == HostMode::Nvhe {
            return self.leave_nvhe();
        }
        self.pe().exception_entry(ExceptionLevel::EL2);
        let live = std::mem::take(&mut self.buffer_live);
        let mut guest = self.kvm.vcpus[self.vcpu].spe;
        let mut c = self.kvm.machine.cpu(self.cpu).ok_or("no such CPU")?;
        let before = c.pe().access_stats();
        if live {
            switch::exit(&mut c, &mut guest).map_err(|e| format!("SPE exit: {e}"))?;
        }
        let after = c.pe().access_stats();
        if stage2_fault_as_external_abort(&mut guest.buffer) {
            self.kvm.vcpus[self.vcpu].stats.stage2_aborts += 1;
        }
        let hcr = hcr_el2::E2H.set(hcr_el2::TGE.set(0, 1), 1);
        c.write(SysReg::HCR_EL2, hcr)
            .map_err(access(SysReg::HCR_EL2))?;
        c.isb();
        let v = &mut self.kvm.vcpus[self.vcpu];
        v.spe = guest;
        add_stats(&mut v.stats.spe_switch, diff(after, before));
        if live {
            add_stats(&mut v.stats.spe_switch_live, diff(after, before));
        }
        Ok(())
    }

    /// nVHE entry: the hypervisor at EL2 stops and drains the host's EL1
    /// profiling session and disables its buffer (seed 003, and what the
    /// series noted nVHE still needed), switches the EL1 context to the
    /// guest's, hands the buffer to EL1 for the guest (or keeps SPE trapped
    /// while the vCPU's SPE state is lazy), restores the guest's sampling
    /// and buffer registers.
    fn enter_nvhe(&mut self, to: ExceptionLevel) -> Result<(), String> {
        self.pe().exception_entry(ExceptionLevel::EL2);
        let (vcpu, vm) = (self.vcpu, self.vm);
        let f = self.kvm.spe_features(vcpu);
        let (vttbr, cntvoff, perfmon) = {
            let v = &self.kvm.vms[vm];
            (v.s2.root | v.vmid << 48, v.cntvoff, v.perfmon)
        };
        let v = &self.kvm.vcpus[vcpu];
        let spe_state = v.features.spe && !v.unsupported_cpu && v.spe_live;
        let (g_ttbr, g_ctx) = (v.ttbr0_el1, v.contextidr_el1);
        let mut cost = AccessStats::default();
        let mut c = self.kvm.machine.cpu(self.cpu).ok_or("no such CPU")?;
        let t0 = c.pe().access_stats();
        let host_spe =
            switch::nvhe_save_host(&mut c).map_err(|e| format!("nVHE host save: {e}"))?;
        add_stats(&mut cost, diff(c.pe().access_stats(), t0));
        let h_ttbr = c
            .read(SysReg::TTBR0_EL1)
            .map_err(access(SysReg::TTBR0_EL1))?;
        let h_ctx = c
            .read(SysReg::CONTEXTIDR_EL1)
            .map_err(access(SysReg::CONTEXTIDR_EL1))?;
        let h_mdcr = c.read(SysReg::MDCR_EL2).map_err(access(SysReg::MDCR_EL2))?;
        for (reg, val) in [
            (SysReg::TTBR0_EL1, g_ttbr),
            (SysReg::CONTEXTIDR_EL1, g_ctx),
            (SysReg::VTTBR_EL2, vttbr),
            (SysReg::HCR_EL2, HCR_VM),
            (SysReg::CNTVOFF_EL2, cntvoff),
            (
                SysReg::HDFGRTR_EL2,
                hyperprof_arch::hdfgrtr_el2::value_trapping(
                    hyperprof_arch::hdfgrtr_el2::PMBIDR_EL1.mask()
                        | hyperprof_arch::hdfgrtr_el2::PMSIDR_EL1.mask(),
                ),
            ),
        ] {
            c.write(reg, val).map_err(access(reg))?;
        }
        let t1 = c.pe().access_stats();
        let mdcr = if spe_state {
            mdcr_el2::TPMS.set(mdcr_el2::E2PB.set(h_mdcr, mdcr_el2::E2PB_EL1_TRAP), 0)
        } else {
            // Lazy or without SPE: EL2 owns the buffer, EL1 accesses trap.
            mdcr_el2::TPMS.set(mdcr_el2::E2PB.set(h_mdcr, mdcr_el2::E2PB_EL2), 1)
        };
        // No vPMU under nVHE: every PMU access traps and is UNDEFINED.
        let mdcr = mdcr_el2::TPMCR.set(mdcr_el2::TPM.set(mdcr, 1), 1);
        c.write(SysReg::MDCR_EL2, mdcr)
            .map_err(access(SysReg::MDCR_EL2))?;
        if spe_state {
            let pct = if perfmon {
                hyperprof_arch::pct::PHYS
            } else {
                hyperprof_arch::pct::VIRT
            };
            c.write(
                SysReg::PMSCR_EL2,
                hyperprof_arch::pmscr_el2::PCT.set(0, pct),
            )
            .map_err(access(SysReg::PMSCR_EL2))?;
        }
        c.isb();
        if spe_state {
            let sampling = self.kvm.vcpus[vcpu].spe.sampling;
            let mut c = self.kvm.machine.cpu(self.cpu).ok_or("no such CPU")?;
            switch::restore_sampling(&mut c, &sampling, f)
                .map_err(|e| format!("sampling restore: {e}"))?;
        }
        let mut c = self.kvm.machine.cpu(self.cpu).ok_or("no such CPU")?;
        add_stats(&mut cost, diff(c.pe().access_stats(), t1));
        self.kvm.vcpus[vcpu].nvhe_host = Some(NvheHost {
            spe: host_spe,
            ttbr0_el1: h_ttbr,
            contextidr_el1: h_ctx,
            mdcr_el2: h_mdcr,
        });
        if spe_state {
            self.repin_if_needed();
        }
        let v = &self.kvm.vcpus[vcpu];
        let live = spe_state && !v.needs_repin && v.spe.buffer.enabled();
        let guest = v.spe;
        let mut c = self.kvm.machine.cpu(self.cpu).ok_or("no such CPU")?;
        let t2 = c.pe().access_stats();
        if live {
            switch::enter(&mut c, &guest).map_err(|e| format!("SPE entry: {e}"))?;
        }
        add_stats(&mut cost, diff(c.pe().access_stats(), t2));
        let v = &mut self.kvm.vcpus[vcpu];
        v.stats.entries += 1;
        v.stats.live_trips += live as u64;
        add_stats(&mut v.stats.spe_switch, cost);
        if live {
            add_stats(&mut v.stats.spe_switch_live, cost);
        }
        self.buffer_live = live;
        self.pe().eret(to);
        Ok(())
    }

    /// nVHE exit: the guest's buffer drained and saved, its sampling
    /// registers saved, the host's EL1 context and profiling session back;
    /// the host kernel resumes at EL1.
    fn leave_nvhe(&mut self) -> Result<(), String> {
        self.pe().exception_entry(ExceptionLevel::EL2);
        let vcpu = self.vcpu;
        let f = self.kvm.spe_features(vcpu);
        let live = std::mem::take(&mut self.buffer_live);
        let v = &self.kvm.vcpus[vcpu];
        let spe_state = v.features.spe && !v.unsupported_cpu && v.spe_live;
        let host = v.nvhe_host.ok_or("exit without a saved host")?;
        let mut guest = v.spe;
        let mut cost = AccessStats::default();
        let mut c = self.kvm.machine.cpu(self.cpu).ok_or("no such CPU")?;
        let t0 = c.pe().access_stats();
        if live {
            switch::exit(&mut c, &mut guest).map_err(|e| format!("SPE exit: {e}"))?;
        }
        if spe_state {
            guest.sampling =
                switch::save_sampling(&mut c, f).map_err(|e| format!("sampling save: {e}"))?;
        }
        add_stats(&mut cost, diff(c.pe().access_stats(), t0));
        let g_ttbr = c
            .read(SysReg::TTBR0_EL1)
            .map_err(access(SysReg::TTBR0_EL1))?;
        let g_ctx = c
            .read(SysReg::CONTEXTIDR_EL1)
            .map_err(access(SysReg::CONTEXTIDR_EL1))?;
        for (reg, val) in [
            (SysReg::TTBR0_EL1, host.ttbr0_el1),
            (SysReg::CONTEXTIDR_EL1, host.contextidr_el1),
            (SysReg::HCR_EL2, 0),
            (SysReg::CNTVOFF_EL2, 0),
            (
                SysReg::HDFGRTR_EL2,
                hyperprof_arch::hdfgrtr_el2::TRAP_NOTHING,
            ),
        ] {
            c.write(reg, val).map_err(access(reg))?;
        }
        let t1 = c.pe().access_stats();
        c.write(SysReg::MDCR_EL2, host.mdcr_el2)
            .map_err(access(SysReg::MDCR_EL2))?;
        c.isb();
        switch::nvhe_restore_host(&mut c, &host.spe)
            .map_err(|e| format!("nVHE host restore: {e}"))?;
        add_stats(&mut cost, diff(c.pe().access_stats(), t1));
        let v = &mut self.kvm.vcpus[vcpu];
        if stage2_fault_as_external_abort(&mut guest.buffer) {
            v.stats.stage2_aborts += 1;
        }
        v.spe = guest;
        v.ttbr0_el1 = g_ttbr;
        v.contextidr_el1 = g_ctx;
        v.nvhe_host = None;
        add_stats(&mut v.stats.spe_switch, cost);
        if live {
            add_stats(&mut v.stats.spe_switch_live, cost);
        }
        self.pe().eret(ExceptionLevel::EL1);
        Ok(())
    }

    /// After an MMU-notifier event the buffer goes back to the hardware
    /// only once it is pinned again (the entry halves call this).
    fn repin_if_needed(&mut self) {
        if !self.kvm.vcpus[self.vcpu].needs_repin {
            return;
        }
        let buffer = self.kvm.vcpus[self.vcpu].spe.buffer;
        if self.repin(buffer).is_ok() && self.kvm.vcpus[self.vcpu].pins.is_pinned() {
            self.kvm.vcpus[self.vcpu].needs_repin = false;
        }
    }

    /// A trapped access: exit, emulate, enter.
    fn trap(&mut self, reg: SysReg, write: Option<u64>) -> Result<u64, AccessFault> {
        let fail = |_| AccessFault::Trapped {
            to: ExceptionLevel::EL2,
        };
        self.kvm.vcpus[self.vcpu].stats.trap_exits += 1;
        let el = self.pe().el();
        self.leave().map_err(fail)?;
        // The guest's first SPE access makes its SPE state live.
        let v = &self.kvm.vcpus[self.vcpu];
        let lazy = v.features.spe && !v.spe_live && !v.unsupported_cpu && reg.is_spe_el1();
        if lazy {
            self.kvm.spe_activate(self.vcpu, self.cpu).map_err(fail)?;
        }
        let r = if reg.unit() == Unit::Pmu {
            self.pmu_trap(reg, write, el)
        } else {
            (!(lazy && reg.unit() == Unit::SpeSampling)).then(|| self.emulate(reg, write))
        };
        // Back to the Exception level that trapped (EL0 PMU accesses too).
        self.enter(el).map_err(fail)?;
        match r {
            Some(r) => r,
            // A sampling register, or an untrapped PMU register, is the
            // guest's own on the hardware now: the access is re-executed
            // there. (Through `access`, so that an EL0 PMU access that only
            // made the PMU state live meets the guest's PMUSERENR_EL0 and,
            // if that allows it, traps again to be emulated, rather than
            // leaking the hardware's trap to EL2.)
            None => self.access(reg, write),
        }
    }

    /// The VM's ID_AA64DFR0_EL1: the hardware's, with PMSVer the VM's SPE
    /// level (the SPU's unless the VMM lowered it; 0 without the SPE feature).
    fn guest_id_aa64dfr0(&mut self, spu: Option<&Spu>) -> u64 {
        use hyperprof_arch::{id_aa64dfr0_el1 as id, PmsVer};
        let hw = self
            .kvm
            .machine
            .cpu(self.cpu)
            .and_then(|mut c| c.read(SysReg::ID_AA64DFR0_EL1).ok())
            .unwrap_or(0);
        let v = &self.kvm.vcpus[self.vcpu];
        let level = match (v.features.spe, spu) {
            (true, Some(_)) => self.kvm.vms[self.vm].spe.guest_pmsver().unwrap_or_else(|| {
                PmsVer::from_field(id::PMSVer.get(hw)).unwrap_or(PmsVer::NotImplemented)
            }),
            _ => PmsVer::NotImplemented,
        };
        // A vCPU without the PMU feature has no PMU.
        let hw = if v.features.pmu_v3 {
            hw
        } else {
            id::PMUVer.set(hw, 0)
        };
        id::PMSVer.set(hw, level.to_field())
    }

    fn emulate(&mut self, reg: SysReg, write: Option<u64>) -> Result<u64, AccessFault> {
        let undef = Err(AccessFault::Undefined);
        let vcpu = self.vcpu;
        let vm = self.vm;
        let spu = {
            let id = self.kvm.vms[vm].spe.spu();
            self.kvm.spus.iter().find(|s| Some(s.id) == id).cloned()
        };
        if (reg, write) == (SysReg::ID_AA64DFR0_EL1, None) {
            return Ok(self.guest_id_aa64dfr0(spu.as_ref()));
        }
        let Some(spu) = spu else { return undef };
        match (reg, write) {
            (SysReg::PMBIDR_EL1, None) => Ok(self.kvm.vms[vm].spe.guest_pmbidr(&spu)),
            (SysReg::PMSIDR_EL1, None) => Ok(self.kvm.vms[vm].spe.guest_pmsidr(&spu)),
            // Read-only ID registers: a write is UNDEFINED.
            (SysReg::PMBIDR_EL1 | SysReg::PMSIDR_EL1, Some(_)) => undef,
            (SysReg::PMBLIMITR_EL1, None) => Ok(self.kvm.vcpus[vcpu].spe.buffer.pmblimitr_el1),
            (SysReg::PMBPTR_EL1, None) => Ok(self.kvm.vcpus[vcpu].spe.buffer.pmbptr_el1),
            (SysReg::PMBSR_EL1, None) => Ok(self.kvm.vcpus[vcpu].spe.buffer.pmbsr_el1),
            (SysReg::PMBSR_EL1, Some(v)) => {
                self.kvm.vcpus[vcpu].spe.buffer.pmbsr_el1 = v & !pmbsr_el1::RES0;
                Ok(0)
            }
            (SysReg::PMBPTR_EL1 | SysReg::PMBLIMITR_EL1, Some(v)) => {
                let mut next = self.kvm.vcpus[vcpu].spe.buffer;
                if reg == SysReg::PMBPTR_EL1 {
                    next.pmbptr_el1 = v;
                } else {
                    next.pmblimitr_el1 = v & !pmblimitr_el1::RES0;
                }
                self.repin(next)?;
                // repin may have raised an event in PMBSR: keep it.
                let b = &mut self.kvm.vcpus[vcpu].spe.buffer;
                b.pmbptr_el1 = next.pmbptr_el1;
                b.pmblimitr_el1 = next.pmblimitr_el1;
                Ok(0)
            }
            _ => undef,
        }
    }

    /// Pins what the guest's buffer needs when it is (still) enabled, or
    /// unpins; an Rlimit makes the access wait for the VMM.
    fn repin(&mut self, next: switch::BufferRegs) -> Result<(), AccessFault> {
        let vcpu = self.vcpu;
        let vm = self.vm;
        let cpu = self.cpu;
        let k = &mut *self.kvm;
        let enabled = pmblimitr_el1::E.is_set(next.pmblimitr_el1);
        let limit = pmblimitr_el1::limit_address(next.pmblimitr_el1);
        let span = if enabled {
            buffer_span(next.pmbptr_el1, limit)
        } else {
            None
        };
        let Some((start, len)) = span else {
            // Disabled, or no room left: nothing to keep pinned.
            k.vcpus[vcpu].pins.unpin(&mut k.vms[vm].memlock);
            return Ok(());
        };
        let max = k.vms[vm].spe.max_buffer_size().unwrap_or(0);
        let s1_root = k.guest_ttbr0_el1(vcpu, cpu);
        let s2 = k.vms[vm].s2.params();
        let outcome = collect_within(&k.machine.mem, s1_root, &s2, start, len, max);
        let (v, memlock) = (&mut k.vcpus[vcpu], &mut k.vms[vm].memlock);
        match outcome {
            Ok(set) => match v.pins.pin(set, memlock) {
                Ok(()) => Ok(()),
                Err(r) => {
                    self.exit = Some(Exit::Rlimit {
                        needed: r.needed,
                        used: r.used,
                        limit: r.limit,
                    });
                    Err(AccessFault::Trapped {
                        to: ExceptionLevel::EL2,
                    })
                }
            },
            // Larger than PMBIDR_EL1.MaxBuffSize advertised: a buffer
            // management event, size error, before anything is walked.
            Err(PinError::TooLarge { .. }) => {
                v.pins.unpin(memlock);
                let ev = pmbsr_el1::MSS.set(pmbsr_el1::S.set(0, 1), pmbsr_el1::BSC_SIZE);
                v.spe.buffer.pmbsr_el1 = ev;
                Ok(())
            }
            // The guest's own tables do not map the buffer: the unit will
            // report the stage-1 fault to the guest when it writes there.
            Err(PinError::Fault(f)) if f.stage == 1 => {
                v.pins.unpin(memlock);
                Ok(())
            }
            // The buffer is not in guest RAM: an external abort, and a warning.
            Err(_) => {
                v.pins.unpin(memlock);
                v.stats.stage2_aborts += 1;
                let mut pmbsr = pmbsr_el1::S.set(v.spe.buffer.pmbsr_el1, 1);
                pmbsr = pmbsr_el1::EA.set(pmbsr, 1);
                v.spe.buffer.pmbsr_el1 = pmbsr;
                Ok(())
            }
        }
    }
}

impl GuestEnv for GuestCpu<'_> {
    /// The guest's virtual PMBIRQ level: its PMBSR_EL1.S.
    fn virq_pending(&self) -> bool {
        let v = &self.kvm.vcpus[self.vcpu];
        v.features.spe && pmbsr_el1::S.is_set(v.spe.buffer.pmbsr_el1)
    }

    fn execute(&mut self, workload: &mut dyn Workload, budget: u64) -> (u64, ExecStop) {
        if self.exit.is_some() {
            return (0, ExecStop::Exit);
        }
        let mut total = 0;
        while total < budget {
            if self.virq_pending() || self.pmu_level() {
                return (total, ExecStop::VirtualIrq);
            }
            let mut done = 0;
            let r = self
                .kvm
                .machine
                .run(self.cpu, workload, budget - total, &mut done);
            total += done;
            match r {
                Some(RunExit::Interrupt(_)) => {
                    // A physical interrupt: exit to the hypervisor, which
                    // moves a guest buffer event into the guest's PMBSR.
                    let back = self.pe().el();
                    self.kvm.vcpus[self.vcpu].stats.irq_exits += 1;
                    if self.leave().is_err() {
                        return (total, ExecStop::Exit);
                    }
                    self.pmu_interrupt_exit();
                    if self.enter(back).is_err() {
                        return (total, ExecStop::Exit);
                    }
                    // The guest's PMU flags have left the hardware, and
                    // its buffer event is back only as its own PMBSR: what
                    // is still asserted is the host's.
                    let lines = self.pe().irq_lines();
                    if lines.pmuirq || (lines.pmbirq && !self.virq_pending()) {
                        self.exit = Some(Exit::Yield);
                        return (total, ExecStop::Exit);
                    }
                }
                Some(RunExit::Completed) => {}
                None => return (total, ExecStop::Exit),
            }
        }
        (total, ExecStop::Completed)
    }

    fn to_el0(&mut self) {
        self.pe().eret(ExceptionLevel::EL0);
    }

    fn to_el1(&mut self) {
        self.pe().exception_entry(ExceptionLevel::EL1);
    }

    fn pmu_virq_pending(&self) -> bool {
        self.pmu_level()
    }

    fn take_virq(&mut self) {
        let (spe, pmu) = (self.virq_pending(), self.pmu_level());
        let stats = &mut self.kvm.vcpus[self.vcpu].stats;
        stats.virqs += u64::from(spe || !pmu);
        stats.pmu_virqs += u64::from(pmu);
        self.to_el1();
    }
}

impl Kvm {
    /// The guest's TTBR0_EL1: under VHE read through the EL12 alias, as the
    /// hypervisor would at EL2; under nVHE the value the last exit saved
    /// (the host's own is on the hardware while the host emulates).
    fn guest_ttbr0_el1(&mut self, vcpu: usize, cpu: usize) -> u64 {
        let v = match self.mode {
            HostMode::Vhe => self
                .machine
                .cpu(cpu)
                .and_then(|mut c| c.read(SysReg::TTBR0_EL12).ok())
                .unwrap_or(0),
            HostMode::Nvhe => self.vcpus[vcpu].ttbr0_el1,
        };
        v & 0x0000_FFFF_FFFF_FFFE
    }
}

impl GuestCpu<'_> {
    /// An MRS (`write` None) or MSR: on the hardware, or, if it traps to
    /// EL2, through the hypervisor. Nothing executes while an exit to the
    /// VMM is pending.
    fn access(&mut self, reg: SysReg, write: Option<u64>) -> Result<u64, AccessFault> {
        let to_el2 = AccessFault::Trapped {
            to: ExceptionLevel::EL2,
        };
        if self.exit.is_some() {
            return Err(to_el2);
        }
        let mut c = self
            .kvm
            .machine
            .cpu(self.cpu)
            .ok_or(AccessFault::Undefined)?;
        let r = match write {
            Some(val) => c.write(reg, val).map(|()| 0),
            None => c.read(reg),
        };
        match r {
            Err(f) if f == to_el2 => self.trap(reg, write),
            r => r,
        }
    }
}

impl Cpu for GuestCpu<'_> {
    fn read(&mut self, reg: SysReg) -> Result<u64, AccessFault> {
        self.access(reg, None)
    }
    fn write(&mut self, reg: SysReg, val: u64) -> Result<(), AccessFault> {
        self.access(reg, Some(val)).map(|_| ())
    }
    fn isb(&mut self) {
        if let Some(mut c) = self.kvm.machine.cpu(self.cpu) {
            c.isb();
        }
    }
    fn dsb_nsh(&mut self) {
        if let Some(mut c) = self.kvm.machine.cpu(self.cpu) {
            c.dsb_nsh();
        }
    }
    fn psb_csync(&mut self) {
        if let Some(mut c) = self.kvm.machine.cpu(self.cpu) {
            c.psb_csync();
        }
    }
    fn current_el(&self) -> ExceptionLevel {
        self.kvm
            .machine
            .pe(self.cpu)
            .map_or(ExceptionLevel::EL1, Pe::el)
    }
    fn load(&mut self, va: u64, buf: &mut [u8]) -> Result<(), MemoryFault> {
        match self.kvm.machine.cpu(self.cpu) {
            Some(mut c) => c.load(va, buf),
            None => Err(MemoryFault { va }),
        }
    }
}
