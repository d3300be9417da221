//! Guest SPE with an nVHE host (seed 003): the host kernel runs at EL1 and
//! owns an EL1&0 profiling buffer, so every guest entry drains and disables
//! it and every exit restores it.

use hyperprof_arch::{Cpu, PmuVer, SysReg};
use hyperprof_guest::drivers::spe::{Buffer, SpeDriver, SpeSessionConfig};
use hyperprof_guest::guest::{GuestEnv, GuestKernel, GuestProgram, GuestStep};
use hyperprof_kvm::uapi::*;
use hyperprof_kvm::vm::{Exit, HostMode, Kvm, VmConfig, GUEST_RAM_IPA};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::memory::PAGE_SIZE;

use hyperprof_sim::pe::PeConfig;
use hyperprof_sim::pmu::PmuConfig;
use hyperprof_sim::spe::SpeConfig;
use hyperprof_sim::workload::by_name;
use hyperprof_spe::RecordDecoder;

const BUF_VA: u64 = 0x0000_0040_0000_0000;
const BUF_IPA: u64 = GUEST_RAM_IPA + (16 << 20);
const HOST_VA: u64 = 0x0000_7000_0000_0000;

fn kvm_nvhe() -> Kvm {
    let pe = PeConfig {
        pmu: PmuConfig {
            counters: 6,
            version: PmuVer::V3p5,
            hpmn0: false,
            el2_implemented: true,
        },
        spe: Some(SpeConfig::default()),
        fgt: true,
        uarch: Default::default(),
    };
    let m = Machine::new(&MachineConfig {
        pes: vec![pe; 2],
        ram_base: 0x8000_0000,
        ram_size: 512 << 20,
    })
    .unwrap();
    Kvm::new_nvhe(m)
}

fn session() -> SpeSessionConfig {
    SpeSessionConfig {
        interval: 256,
        jitter: false,
        ..SpeSessionConfig::default()
    }
}

/// A VM with an SPE vCPU (or not), loaded on CPU 0; returns its guest TTBR.
fn vm(kvm: &mut Kvm, spe: bool, pages: u64) -> (usize, u64) {
    let vm = kvm
        .create_vm(VmConfig {
            ram_bytes: 64 << 20,
            memlock_limit: u64::MAX,
        })
        .unwrap();
    let vcpu = kvm
        .create_vcpu(vm, VcpuFeatures { spe, pmu_v3: false })
        .unwrap();
    if spe {
        kvm.configure_spe(vcpu, 0, 21, 1 << 20).unwrap();
    }
    let ttbr = kvm.guest_map(vm, BUF_VA, BUF_IPA, pages * 4096).unwrap();
    kvm.load(vcpu, 0).unwrap();
    (vcpu, ttbr)
}

/// The host kernel's own session at EL1 on CPU 0, through its EL1&0 tables.
fn host_session(kvm: &mut Kvm) -> SpeDriver {
    host_session_with(kvm, session())
}

fn host_session_with(kvm: &mut Kvm, cfg: SpeSessionConfig) -> SpeDriver {
    let el = kvm.machine().pe(0).unwrap().el();
    assert_eq!(
        el,
        hyperprof_arch::ExceptionLevel::EL1,
        "an nVHE host runs at EL1"
    );
    hyperprof_guest::host::start_session(
        kvm.machine(),
        0,
        SysReg::TTBR0_EL1,
        HOST_VA,
        64 * PAGE_SIZE,
        cfg,
    )
    .unwrap()
}

fn run_to_halt(kvm: &mut Kvm, vcpu: usize, p: &mut dyn GuestProgram) {
    for _ in 0..10_000 {
        match kvm.run(vcpu, p) {
            Exit::Halt => return,
            Exit::Yield => continue,
            e => panic!("unexpected exit {e:?}"),
        }
    }
    panic!("the guest never halted");
}

struct Work(u64);
impl GuestProgram for Work {
    fn run(&mut self, env: &mut dyn GuestEnv) -> GuestStep {
        let mut w = by_name("mix", 2).unwrap();
        env.to_el0();
        env.execute(w.as_mut(), self.0);
        env.to_el1();
        GuestStep::Done
    }
}

#[test]
fn an_nvhe_guest_profiles_itself_with_virtual_pmbirqs() {
    let mut kvm = kvm_nvhe();
    assert_eq!(kvm.mode(), HostMode::Nvhe);
    let (vcpu, ttbr) = vm(&mut kvm, true, 4);
    let buf = Buffer {
        va: BUF_VA,
        size: 4 * 4096,
    };
    let mut k = GuestKernel::new(
        ttbr,
        session(),
        buf,
        by_name("pointer-chase", 1).unwrap(),
        200_000,
    );
    run_to_halt(&mut kvm, vcpu, &mut k);
    assert_eq!(k.error(), None);
    let d = k.driver_stats().unwrap();
    assert!(d.buffer_full >= 1, "{d:?}");
    assert_eq!(kvm.vcpu_stats(vcpu).unwrap().virqs, d.irqs);
    let recs: Vec<_> = RecordDecoder::new(k.data())
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(recs.len() > 600, "{}", recs.len());
    assert!(recs.iter().all(|(_, r)| r.pc.is_some_and(|pc| pc.el == 0)));
}

#[test]
fn the_nvhe_host_session_stops_at_every_entry_and_resumes_at_every_exit() {
    let mut kvm = kvm_nvhe();
    let (vcpu, ttbr) = vm(&mut kvm, true, 64);
    let mut host = host_session(&mut kvm);
    let mut host_work = by_name("kernel-array-sum", 9).unwrap();
    let mut done = 0;
    kvm.machine()
        .run(0, host_work.as_mut(), 100_000, &mut done)
        .unwrap();
    let buf = Buffer {
        va: BUF_VA,
        size: 64 * 4096,
    };
    let mut k = GuestKernel::new(ttbr, session(), buf, by_name("mix", 3).unwrap(), 100_000)
        .with_slices(20_000);
    run_to_halt(&mut kvm, vcpu, &mut k);
    kvm.machine()
        .run(0, host_work.as_mut(), 100_000, &mut done)
        .unwrap();
    let mut c = kvm.machine().cpu(0).unwrap();
    host.stop(&mut c).unwrap();
    let host_recs: Vec<_> = RecordDecoder::new(&host.take_data())
        .collect::<Result<_, _>>()
        .unwrap();
    let guest_recs: Vec<_> = RecordDecoder::new(k.data())
        .collect::<Result<_, _>>()
        .unwrap();
    // 200 000 host operations at one sample per 257, all the host kernel's.
    assert!(
        (770..=790).contains(&host_recs.len()),
        "{}",
        host_recs.len()
    );
    assert!(host_recs
        .iter()
        .all(|(_, r)| r.pc.is_some_and(|pc| pc.el == 1)));
    assert!(guest_recs
        .iter()
        .all(|(_, r)| r.pc.is_some_and(|pc| pc.el == 0)));
    let unit = kvm.machine().pe(0).unwrap().spe().unwrap().stats();
    assert_eq!(unit.written as usize, host_recs.len() + guest_recs.len());
    assert_eq!(unit.discarded, 0);
    // The brakes (seed 003): with the host profiling, an nVHE round trip
    // costs more than VHE's 10.
    let s = kvm.vcpu_stats(vcpu).unwrap();
    let per_trip = s.spe_switch.total() as f64 / s.entries as f64;
    assert!(per_trip > 10.0, "{per_trip}");
}

#[test]
fn a_guest_without_spe_stops_the_nvhe_host_session_at_the_boundary_too() {
    let mut kvm = kvm_nvhe();
    let (vcpu, _) = vm(&mut kvm, false, 4);
    let mut host = host_session(&mut kvm);
    run_to_halt(&mut kvm, vcpu, &mut Work(100_000));
    let mut c = kvm.machine().cpu(0).unwrap();
    host.stop(&mut c).unwrap();
    let host_recs: Vec<_> = RecordDecoder::new(&host.take_data())
        .collect::<Result<_, _>>()
        .unwrap();
    // The guest's operations are not sampled into the host's buffer: the
    // buffer was disabled while the guest ran.
    assert!(
        host_recs.is_empty(),
        "{} host records from guest time",
        host_recs.len()
    );
    let unit = kvm.machine().pe(0).unwrap().spe().unwrap().stats();
    assert_eq!(unit.sampled, 0);
}

/// The host's EL1&0 tables on CPU 0 also map the data of the user
/// workloads (their first 40 MiB), so that its loads have physical addresses.
fn map_host_workload_data(kvm: &mut Kvm) {
    use hyperprof_sim::mmu::{Perm, Stage1Tables};
    let root = {
        let mut c = kvm.machine().cpu(0).unwrap();
        c.read(SysReg::TTBR0_EL1).unwrap()
    };
    let size = 40 << 20;
    let m = kvm.machine();
    let pa = m
        .alloc
        .alloc_contiguous(&mut m.mem, size / PAGE_SIZE)
        .unwrap();
    let va = hyperprof_sim::workload::Space::User.data_base();
    Stage1Tables { root }
        .map(&mut m.mem, &mut m.alloc, va, pa, size, Perm::RW)
        .unwrap();
}

#[test]
fn an_nvhe_guest_session_leaves_the_hosts_sampling_registers_and_physical_addresses_alone() {
    let mut kvm = kvm_nvhe();
    let (vcpu, ttbr) = vm(&mut kvm, true, 64);
    // The host samples every 4096 operations (PMSIRR_EL1 = 0x1000) with
    // physical addresses; the guest every 256 (0x100).
    let mut host = host_session_with(
        &mut kvm,
        SpeSessionConfig {
            interval: 4096,
            ..session()
        },
    );
    map_host_workload_data(&mut kvm);
    let pmsirr = |kvm: &mut Kvm| {
        let mut c = kvm.machine().cpu(0).unwrap();
        c.read(SysReg::PMSIRR_EL1).unwrap()
    };
    assert_eq!(pmsirr(&mut kvm), 0x1000);
    let mut host_work = by_name("array-sum", 4).unwrap();
    let mut done = 0;
    kvm.machine()
        .run(0, host_work.as_mut(), 200_000, &mut done)
        .unwrap();
    let buf = Buffer {
        va: BUF_VA,
        size: 64 * 4096,
    };
    let mut k = GuestKernel::new(ttbr, session(), buf, by_name("mix", 3).unwrap(), 60_000)
        .with_slices(20_000);
    run_to_halt(&mut kvm, vcpu, &mut k);
    assert!(k.error().is_none() && !k.data().is_empty());
    assert_eq!(
        pmsirr(&mut kvm),
        0x1000,
        "the guest's interval stayed behind"
    );
    kvm.machine()
        .run(0, host_work.as_mut(), 200_000, &mut done)
        .unwrap();
    let mut c = kvm.machine().cpu(0).unwrap();
    host.stop(&mut c).unwrap();
    let host_recs: Vec<_> = RecordDecoder::new(&host.take_data())
        .collect::<Result<_, _>>()
        .unwrap();
    // 400 000 host operations at one sample per 4097: the host's interval.
    assert!((90..=100).contains(&host_recs.len()), "{}", host_recs.len());
    let loads = host_recs.iter().filter(|(_, r)| r.data_va.is_some());
    let (n, with_pa) = loads.fold((0, 0), |(n, p), (_, r)| {
        (n + 1, p + usize::from(r.data_pa.is_some()))
    });
    assert!(n >= 10, "{n}");
    assert_eq!(with_pa, n, "every host load carries its physical address");
}
