//! The set-up shared by the guest PMU tests (`guest_pmu`, `guest_pmu_fuzz`,
//! `guest_pmu_kut`, `vpmu_counter_access`): the machine, a hypervisor with
//! PMU vCPUs, running a vCPU on a CPU, and a workload's true counts.
//!
//! Items a test file does not use carry `#[allow(dead_code)]`.

use hyperprof_arch::{EventCounter, PmuVer, SysReg};
use hyperprof_guest::drivers::pmu::{EventSpec, Filter, PmuDriver, Range};
use hyperprof_guest::guest::{GuestEnv, GuestProgram, GuestStep};
use hyperprof_kvm::pmu_attr::EventFilter;
use hyperprof_kvm::uapi::{
    Errno, UserPtr, VcpuFeatures, KVM_ARM_VCPU_PMU_V3_CTRL, KVM_ARM_VCPU_PMU_V3_SET_PMU,
};
use hyperprof_kvm::vm::{Exit, HostMode, Kvm, PmuSetup, VmConfig};
use hyperprof_sim::event::{Event, EventCounts};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::pe::PeConfig;
use hyperprof_sim::pmu::PmuConfig;
use hyperprof_sim::workload::by_name;

/// The hardware's PMCR_EL0.N.
pub const COUNTERS: u8 = 8;
/// Counters the host keeps for itself (the top two).
pub const HOST_RESERVED: u8 = 2;

/// The hardware: two PEs with EL2, no SPE, and a PMU of [`COUNTERS`]
/// counters.
#[derive(Clone, Copy, Debug)]
pub struct Hw {
    pub fgt: bool,
    pub version: PmuVer,
    pub hpmn0: bool,
    pub ram_size: u64,
    /// The host kernel runs at EL1 (nVHE).
    pub nvhe: bool,
}

impl Default for Hw {
    /// FEAT_FGT, PMUv3p5 without FEAT_HPMN0, 64 MiB of RAM.
    fn default() -> Hw {
        Hw {
            fgt: true,
            version: PmuVer::V3p5,
            hpmn0: false,
            ram_size: 64 << 20,
            nvhe: false,
        }
    }
}

impl Hw {
    pub fn machine(self) -> Machine {
        let pe = PeConfig {
            pmu: PmuConfig {
                counters: COUNTERS,
                version: self.version,
                hpmn0: self.hpmn0,
                el2_implemented: true,
            },
            spe: None,
            fgt: self.fgt,
            uarch: Default::default(),
        };
        Machine::new(&MachineConfig {
            pes: vec![pe; 2],
            ram_base: 0x8000_0000,
            ram_size: self.ram_size,
        })
        .unwrap()
    }

    /// A hypervisor on this hardware whose host reserves `reserve`
    /// counters. An nVHE host counts at once on its reserved counters
    /// ([`start_host_pmu`]), so that [`enter`] can check that guests leave
    /// them alone.
    pub fn kvm(self, reserve: u8) -> Kvm {
        let mut kvm = if self.nvhe {
            Kvm::new_nvhe(self.machine())
        } else {
            Kvm::new(self.machine())
        };
        kvm.set_host_pmu_reserve(reserve).unwrap();
        if self.nvhe && reserve >= 2 {
            for cpu in 0..2 {
                start_host_pmu(&mut kvm, cpu, 1 << 30);
            }
        }
        kvm
    }
}

/// A VM of `ram_bytes`.
pub fn new_vm(kvm: &mut Kvm, ram_bytes: u64) -> usize {
    kvm.create_vm(VmConfig {
        ram_bytes,
        memlock_limit: u64::MAX,
    })
    .unwrap()
}

/// The PMU set-up, with the overflow interrupt on PPI 23.
pub fn pmu_setup(
    partitioned: bool,
    nr_counters: Option<u8>,
    filters: Vec<EventFilter>,
) -> PmuSetup {
    PmuSetup {
        irq: 23,
        partitioned,
        nr_counters,
        filters,
    }
}

/// A vCPU of `vm` with a PMU (no SPE) set up as `setup`, or the error of
/// the set-up. With a number of counters the PMU is chosen explicitly
/// first: SET_NR_COUNTERS needs that (as KVM).
pub fn pmu_vcpu(kvm: &mut Kvm, vm: usize, setup: &PmuSetup) -> Result<usize, (u64, Errno)> {
    let vcpu = kvm
        .create_vcpu(
            vm,
            VcpuFeatures {
                pmu_v3: true,
                spe: false,
            },
        )
        .unwrap();
    if setup.nr_counters.is_some() {
        kvm.set_device_attr(
            vcpu,
            KVM_ARM_VCPU_PMU_V3_CTRL,
            KVM_ARM_VCPU_PMU_V3_SET_PMU,
            UserPtr::Value(0),
        )
        .unwrap();
    }
    kvm.configure_pmu(vcpu, setup)?;
    Ok(vcpu)
}

/// A hypervisor on `hw` whose host reserves [`HOST_RESERVED`] counters,
/// with one 16 MiB VM and its one vCPU, whose PMU is set up as `setup`.
#[allow(dead_code)] // guest_pmu_fuzz builds two VMs
pub fn pmu_vm(hw: Hw, setup: &PmuSetup) -> (Kvm, usize) {
    let mut kvm = hw.kvm(HOST_RESERVED);
    let vm = new_vm(&mut kvm, 16 << 20);
    let vcpu = pmu_vcpu(&mut kvm, vm, setup).unwrap();
    (kvm, vcpu)
}

/// The four ways a vCPU's PMU is set up.
#[allow(dead_code)] // not in guest_pmu_fuzz
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Partitioned, on CPUs with FEAT_FGT (the untrapped registers are
    /// the guest's own).
    PartitionedFgt,
    /// Partitioned, on CPUs without FEAT_FGT (MDCR_EL2.TPM traps all).
    PartitionedNoFgt,
    /// Emulated: everything trapped and emulated.
    Emulated,
    /// Emulated on an nVHE host, whose kernel counts at EL1 beside it.
    EmulatedNvhe,
}

#[allow(dead_code)] // not in guest_pmu_fuzz
pub const MODES: [Mode; 4] = [
    Mode::PartitionedFgt,
    Mode::PartitionedNoFgt,
    Mode::Emulated,
    Mode::EmulatedNvhe,
];

#[allow(dead_code)] // not in guest_pmu_fuzz
impl Mode {
    pub fn partitioned(self) -> bool {
        matches!(self, Mode::PartitionedFgt | Mode::PartitionedNoFgt)
    }
    pub fn nvhe(self) -> bool {
        self == Mode::EmulatedNvhe
    }
    pub fn fgt(self) -> bool {
        self != Mode::PartitionedNoFgt
    }
}

/// Loads `vcpu` on `cpu`, runs `p` until KVM_RUN returns, puts the vCPU:
/// how it returned. On an nVHE host the host's counters (which count at
/// EL0 and EL1, as the guest runs) must not move while the guest runs.
pub fn enter(kvm: &mut Kvm, vcpu: usize, cpu: usize, p: &mut dyn GuestProgram) -> Exit {
    let host = |kvm: &mut Kvm| -> Vec<u64> {
        let pmu = kvm.machine().pe(cpu).unwrap().pmu();
        (COUNTERS - HOST_RESERVED..COUNTERS)
            .map(|i| pmu.counter(i))
            .collect()
    };
    let before = host(kvm);
    kvm.load(vcpu, cpu).unwrap();
    let exit = kvm.run(vcpu, p);
    kvm.put(vcpu).unwrap();
    if kvm.mode() == HostMode::Nvhe {
        assert_eq!(host(kvm), before, "the nVHE host's counters saw the guest");
    }
    exit
}

/// A guest program made of a closure, run once.
struct Once<F: FnMut(&mut dyn GuestEnv)>(F);

impl<F: FnMut(&mut dyn GuestEnv)> GuestProgram for Once<F> {
    fn run(&mut self, env: &mut dyn GuestEnv) -> GuestStep {
        (self.0)(env);
        GuestStep::Done
    }
}

/// Runs `f` as the whole guest kernel of `vcpu` on `cpu`; it must halt.
#[allow(dead_code)] // not in guest_pmu, guest_pmu_fuzz
pub fn run_on(kvm: &mut Kvm, vcpu: usize, cpu: usize, f: impl FnMut(&mut dyn GuestEnv)) {
    assert_eq!(enter(kvm, vcpu, cpu, &mut Once(f)), Exit::Halt);
}

/// The events of `ops` operations of workload `name` seeded `seed`: the
/// ground truth, from an independent copy.
#[allow(dead_code)] // not in vpmu_counter_access
pub fn events_of(name: &str, seed: u64, ops: u64) -> EventCounts {
    let mut w = by_name(name, seed).unwrap();
    let mut c = EventCounts::default();
    w.skip(ops, &mut c);
    c
}

pub fn evcntr(i: u8) -> SysReg {
    SysReg::PMEVCNTR_EL0(EventCounter::new(i).unwrap())
}

pub fn evtyper(i: u8) -> SysReg {
    SysReg::PMEVTYPER_EL0(EventCounter::new(i).unwrap())
}

/// Every PMU register a guest can name.
#[allow(dead_code)] // not in guest_pmu, guest_pmu_kut
pub fn pmu_regs() -> Vec<SysReg> {
    let mut regs = vec![
        SysReg::PMCR_EL0,
        SysReg::PMCNTENSET_EL0,
        SysReg::PMCNTENCLR_EL0,
        SysReg::PMINTENSET_EL1,
        SysReg::PMINTENCLR_EL1,
        SysReg::PMOVSSET_EL0,
        SysReg::PMOVSCLR_EL0,
        SysReg::PMSWINC_EL0,
        SysReg::PMSELR_EL0,
        SysReg::PMCEID0_EL0,
        SysReg::PMCEID1_EL0,
        SysReg::PMCCNTR_EL0,
        SysReg::PMXEVTYPER_EL0,
        SysReg::PMXEVCNTR_EL0,
        SysReg::PMCCFILTR_EL0,
        SysReg::PMUSERENR_EL0,
        SysReg::PMMIR_EL1,
    ];
    for i in 0..31 {
        regs.push(evcntr(i));
        regs.push(evtyper(i));
    }
    regs
}

/// The host's PMU driver on `cpu`, on its reserved counters, started:
/// counter 0 counts the host kernel's instructions, counter 1 its cycles
/// with an overflow interrupt every `cycles_period`. A VHE host's kernel
/// is at EL2 (its high range, filtered to EL2); an nVHE host's at EL1 (its
/// top counters, filtered to EL0 and EL1 like the guest's, and told to the
/// hypervisor, which switches them off while guests run).
pub fn start_host_pmu(kvm: &mut Kvm, cpu: usize, cycles_period: u32) -> PmuDriver {
    let nvhe = kvm.mode() == HostMode::Nvhe;
    let mut c = kvm.machine().cpu(cpu).unwrap();
    let range = if nvhe {
        Range::Top(HOST_RESERVED)
    } else {
        Range::High
    };
    let mut d = PmuDriver::probe(&mut c, range).unwrap();
    let el2 = Filter {
        el0: nvhe,
        el1: nvhe,
        el2: !nvhe,
    };
    for (event, period) in [
        (Event::INST_RETIRED, None),
        (Event::CPU_CYCLES, Some(cycles_period)),
    ] {
        d.add(EventSpec {
            event: event.number(),
            filter: el2,
            period,
        })
        .unwrap();
    }
    d.start(&mut c).unwrap();
    if nvhe {
        kvm.set_host_pmu_events(cpu, d.slot_mask()).unwrap();
    }
    d
}
