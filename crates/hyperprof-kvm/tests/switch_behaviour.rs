//! Behaviour of the world switch and the vPMU's switch that cargo-mutants
//! found untested (issue 12, scripts/cargo-mutants-survivors.md): each test
//! checks what the guest or the host sees, not what the switch costs.

use hyperprof_arch::{pmbidr_el1, Cpu, PmsVer, PmuVer, SysReg};
use hyperprof_guest::guest::GuestEnv;
use hyperprof_kvm::vm::{Exit, Kvm};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::pe::PeConfig;
use hyperprof_sim::pmu::PmuConfig;
use hyperprof_sim::spe::SpeConfig;
mod spe_vcpu;
use spe_vcpu::{run_to_halt, Once};

/// Two PEs with FGT, a six-counter PMUv3p5 and an SPEv1p4 unit (FnE, FDS).
fn v1p4_machine() -> Machine {
    v1p4_machine_fgt(true)
}

fn v1p4_machine_fgt(fgt: bool) -> Machine {
    let pe = PeConfig {
        pmu: PmuConfig {
            counters: 6,
            version: PmuVer::V3p5,
            hpmn0: false,
            el2_implemented: true,
        },
        spe: Some(SpeConfig {
            pms_ver: PmsVer::V1p4,
            ..SpeConfig::default()
        }),
        fgt,
        uarch: Default::default(),
    };
    Machine::new(&MachineConfig {
        pes: vec![pe; 2],
        ram_base: 0x8000_0000,
        ram_size: 512 << 20,
    })
    .unwrap()
}

/// The sampling registers an SPEv1p2 guest has (PMSDSFR_EL1 is FDS's, v1p4),
/// with a value each that the unit keeps as written.
const SAMPLING: [(SysReg, u64); 7] = [
    (SysReg::PMSCR_EL1, 0x1),
    (SysReg::PMSNEVFR_EL1, 0x2),
    (SysReg::PMSICR_EL1, 0x55),
    (SysReg::PMSIRR_EL1, 0x300),
    (SysReg::PMSFCR_EL1, 0xF),
    (SysReg::PMSEVFR_EL1, 0x20),
    (SysReg::PMSLATFR_EL1, 0x40),
];

fn host_sampling(kvm: &mut Kvm) -> Vec<u64> {
    let mut c = kvm.machine().cpu(0).unwrap();
    SAMPLING.iter().map(|&(r, _)| c.read(r).unwrap()).collect()
}

/// An nVHE guest whose VM hides FEAT_SPE_FDS (SPEv1p2 on v1p4 hardware)
/// has every sampling register trapped (MDCR_EL2.TPMS) and emulated from
/// the vCPU's copy: each one it has reads back what it wrote, in the same
/// run and after put and load, while the host's stay the host's.
#[test]
fn an_nvhe_guests_trapped_sampling_registers_keep_its_values() {
    let mut kvm = Kvm::new_nvhe(v1p4_machine());
    let (vm, vcpu) = spe_vcpu::spe_vcpu(&mut kvm, 64 << 20, u64::MAX, 0);
    kvm.set_guest_pmsver(vm, PmsVer::V1p2).unwrap();
    {
        let mut c = kvm.machine().cpu(0).unwrap();
        c.write(SysReg::PMSNEVFR_EL1, 0x4).unwrap();
        c.write(SysReg::PMSEVFR_EL1, 0x8).unwrap();
        c.write(SysReg::PMSLATFR_EL1, 0x7).unwrap();
        c.isb();
    }
    let host = host_sampling(&mut kvm);
    kvm.load(vcpu, 0).unwrap();
    let mut first = Vec::new();
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| {
            for &(r, v) in &SAMPLING {
                env.write(r, v).unwrap();
            }
            first = SAMPLING.iter().map(|&(r, _)| env.read(r)).collect();
        }),
    );
    kvm.put(vcpu).unwrap();
    assert_eq!(host_sampling(&mut kvm), host, "the host's, between runs");
    kvm.load(vcpu, 0).unwrap();
    let mut again = Vec::new();
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| {
            again = SAMPLING.iter().map(|&(r, _)| env.read(r)).collect();
        }),
    );
    let written: Vec<_> = SAMPLING.iter().map(|&(_, v)| Ok(v)).collect();
    assert_eq!(first, written, "{SAMPLING:x?}");
    assert_eq!(again, written, "after put and load");
    kvm.put(vcpu).unwrap();
    assert_eq!(host_sampling(&mut kvm), host);
}

/// An nVHE guest whose SPE state is still lazy (FGT: nothing switched until
/// its first SPE access) leaves the host's sampling registers on the
/// hardware while it runs; the exits must not take them for the guest's.
/// Its first sampling-register read sees its own reset values, not the
/// host kernel's interval and event filter.
#[test]
fn a_lazy_nvhe_guest_never_inherits_the_hosts_sampling_registers() {
    let mut kvm = Kvm::new_nvhe(v1p4_machine());
    let (_, vcpu) = spe_vcpu::spe_vcpu(&mut kvm, 64 << 20, u64::MAX, 0);
    {
        let mut c = kvm.machine().cpu(0).unwrap();
        c.write(SysReg::PMSIRR_EL1, 0x1000).unwrap();
        c.write(SysReg::PMSEVFR_EL1, 0x8).unwrap();
        c.isb();
    }
    kvm.load(vcpu, 0).unwrap();
    let mut seen = Vec::new();
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| {
            seen = vec![env.read(SysReg::PMSIRR_EL1), env.read(SysReg::PMSEVFR_EL1)];
        }),
    );
    assert_eq!(seen, vec![Ok(0), Ok(0)]);
    kvm.put(vcpu).unwrap();
    let mut c = kvm.machine().cpu(0).unwrap();
    assert_eq!(c.read(SysReg::PMSIRR_EL1), Ok(0x1000), "the host's, back");
}

/// Records the VMIDs (bits 63:48) of the VTTBR_EL2 values software writes.
struct VttbrWrites(std::sync::Mutex<Vec<u64>>);

impl hyperprof_sim::probe::Probe for VttbrWrites {
    fn before(
        &self,
        _: &mut hyperprof_sim::pe::PeCpu<'_>,
        access: hyperprof_sim::probe::ProbeAccess,
    ) -> hyperprof_sim::probe::ProbeVerdict {
        if let hyperprof_sim::probe::ProbeAccess::Write(SysReg::VTTBR_EL2, v) = access {
            self.0.lock().unwrap().push(v >> 48);
        }
        hyperprof_sim::probe::ProbeVerdict::Proceed
    }
}

/// The VMID VTTBR_EL2 held while a guest of each VM ran (the one its entry
/// wrote), and VTTBR_EL2.VMID read at EL2 after each guest's exit.
fn vmids_of_two_vms(nvhe: bool) -> ((u64, u64), (u64, u64)) {
    let mut kvm = if nvhe {
        Kvm::new_nvhe(v1p4_machine())
    } else {
        Kvm::new(v1p4_machine())
    };
    let vmid = |kvm: &mut Kvm| {
        let (_, vcpu) = spe_vcpu::spe_vcpu(kvm, 16 << 20, u64::MAX, 0);
        kvm.load(vcpu, 0).unwrap();
        let writes = std::sync::Arc::new(VttbrWrites(Default::default()));
        let handle = hyperprof_sim::probe::ProbeHandle(writes.clone());
        kvm.machine().pe_mut(0).unwrap().set_probe(Some(handle));
        run_to_halt(kvm, vcpu, &mut Once(|_: &mut dyn GuestEnv| {}));
        kvm.machine().pe_mut(0).unwrap().set_probe(None);
        let pe = kvm.machine().pe_mut(0).unwrap();
        let el = pe.el();
        pe.exception_entry(hyperprof_arch::ExceptionLevel::EL2);
        let after = kvm.machine().cpu(0).unwrap().read(SysReg::VTTBR_EL2);
        kvm.machine().pe_mut(0).unwrap().eret(el);
        kvm.put(vcpu).unwrap();
        let entered = writes.0.lock().unwrap().first().copied();
        (
            entered.expect("entry writes VTTBR_EL2"),
            after.unwrap() >> 48,
        )
    };
    let a = vmid(&mut kvm);
    let b = vmid(&mut kvm);
    ((a.0, b.0), (a.1, b.1))
}

/// Each VM's guest runs with its own VMID in VTTBR_EL2, VHE and nVHE: the
/// VMID tags its translations in the TLBs (the SPE unit's cache among
/// them), so two VMs sharing one would see each other's cached
/// translations. An nVHE host runs with VMID 0 again after every exit (the
/// host's EL1&0 walks would be tagged as the guest's otherwise:
/// spe_unit_tlb shows what follows); a VHE host's EL2&0 regime has no VMID
/// and the register keeps the guest's.
#[test]
fn each_vm_runs_with_its_own_vmid() {
    for nvhe in [false, true] {
        let ((a, b), (after_a, after_b)) = vmids_of_two_vms(nvhe);
        assert!(a != 0 && b != 0 && a != b, "nVHE {nvhe}: VMIDs {a} and {b}");
        if nvhe {
            assert_eq!((after_a, after_b), (0, 0), "the nVHE host's VMID");
        } else {
            assert_eq!((after_a, after_b), (a, b));
        }
    }
}

/// Without FEAT_FGT PMBIDR_EL1 cannot be trapped, so an nVHE vCPU's SPE
/// state goes live at load (not lazily at its first access): the guest's
/// very first read of PMBIDR_EL1 finds the buffer its own (P clear), as it
/// will be when it uses it.
#[test]
fn without_fgt_an_nvhe_guest_first_reads_its_buffer_as_allowed() {
    let mut kvm = Kvm::new_nvhe(v1p4_machine_fgt(false));
    let (_, vcpu) = spe_vcpu::spe_vcpu(&mut kvm, 64 << 20, u64::MAX, 0);
    kvm.load(vcpu, 0).unwrap();
    let mut pmbidr = Err(hyperprof_arch::AccessFault::Undefined);
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| pmbidr = env.read(SysReg::PMBIDR_EL1)),
    );
    let pmbidr = pmbidr.unwrap();
    assert!(!pmbidr_el1::P.is_set(pmbidr), "PMBIDR_EL1 {pmbidr:#x}");
}

/// A vCPU whose SPE state is live, moved to a CPU outside its SPU (here one
/// with no SPE unit at all): the load completes without touching SPE (the
/// CPU has none to switch), KVM_RUN fails entry as CPU unsupported, and
/// back on its SPU's CPU the guest finds its sampling registers as it left
/// them.
#[test]
fn a_live_spe_vcpu_loaded_outside_its_spu_fails_entry_and_keeps_its_state() {
    let pe = |spe: bool| PeConfig {
        pmu: PmuConfig {
            counters: 6,
            version: PmuVer::V3p5,
            hpmn0: false,
            el2_implemented: true,
        },
        spe: spe.then(SpeConfig::default),
        fgt: true,
        uarch: Default::default(),
    };
    let machine = Machine::new(&MachineConfig {
        pes: vec![pe(true), pe(false)],
        ram_base: 0x8000_0000,
        ram_size: 256 << 20,
    })
    .unwrap();
    let mut kvm = Kvm::new(machine);
    let (_, vcpu) = spe_vcpu::spe_vcpu(&mut kvm, 16 << 20, u64::MAX, 1 << 20);
    kvm.load(vcpu, 0).unwrap();
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| env.write(SysReg::PMSIRR_EL1, 0x300).unwrap()),
    );
    kvm.put(vcpu).unwrap();
    kvm.load(vcpu, 1).unwrap();
    let Exit::FailEntry(why) = kvm.run(vcpu, &mut Once(|_: &mut dyn GuestEnv| {})) else {
        panic!("entered on a CPU without the SPU")
    };
    assert!(why.contains("CPU_UNSUPPORTED"), "{why}");
    kvm.put(vcpu).unwrap();
    kvm.load(vcpu, 0).unwrap();
    let mut seen = Ok(0);
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| seen = env.read(SysReg::PMSIRR_EL1)),
    );
    assert_eq!(seen, Ok(0x300));
}
