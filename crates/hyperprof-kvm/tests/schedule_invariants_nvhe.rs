//! DESIGN.md's invariants over randomized schedules with an nVHE host: the
//! host kernel at EL1 profiles itself (or not) while a guest profiles itself,
//! moving between CPUs; host work and guest slices interleave at random.

use hyperprof_arch::{ExceptionLevel, PmuVer, SysReg};
use hyperprof_guest::drivers::spe::{Buffer, SpeDriver, SpeSessionConfig};
use hyperprof_guest::guest::GuestKernel;
use hyperprof_kvm::uapi::VcpuFeatures;
use hyperprof_kvm::vm::{Exit, Kvm, VmConfig, GUEST_RAM_IPA};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::pe::{PeConfig, RunExit};
use hyperprof_sim::pmu::PmuConfig;
use hyperprof_sim::spe::SpeConfig;
use hyperprof_sim::workload::{by_name, Workload};
use hyperprof_spe::RecordDecoder;
use proptest::prelude::*;

const BUF_VA: u64 = 0x0000_0040_0000_0000;
const HOST_VA: u64 = 0x0000_7000_0000_0000;
const MEMLOCK: u64 = 1 << 20;

#[derive(Clone, Debug)]
enum Step {
    Host { cpu: usize, ops: u64 },
    Guest { cpu: usize },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0usize..2, 1_000u64..60_000).prop_map(|(cpu, ops)| Step::Host { cpu, ops }),
        (0usize..2).prop_map(|cpu| Step::Guest { cpu }),
    ]
}

fn session(interval: u32) -> SpeSessionConfig {
    SpeSessionConfig {
        interval,
        jitter: false,
        ..SpeSessionConfig::default()
    }
}

/// Host kernel work at EL1 on `cpu`, its PMBIRQs into its driver.
fn host_work(kvm: &mut Kvm, cpu: usize, w: &mut dyn Workload, d: Option<&mut SpeDriver>, ops: u64) {
    let m = kvm.machine();
    assert_eq!(
        m.pe(cpu).unwrap().el(),
        ExceptionLevel::EL1,
        "the nVHE host runs at EL1"
    );
    let mut left = ops;
    let mut d = d;
    while left > 0 {
        let mut done = 0;
        let exit = m.run(cpu, w, left, &mut done).unwrap();
        left -= done;
        if let RunExit::Interrupt(lines) = exit {
            assert!(lines.pmbirq && !lines.pmuirq, "{lines:?}");
            let driver = d.as_deref_mut().expect("a PMBIRQ only with a host session");
            m.pe_mut(cpu).unwrap().exception_entry(ExceptionLevel::EL1);
            driver.handle_irq(&mut m.cpu(cpu).unwrap()).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn nvhe_schedules_keep_isolation_conservation_interrupts_and_limits(
        steps in proptest::collection::vec(step(), 4..30),
        host_profiles in any::<bool>(),
        guest_pages in 1u64..5,
        slice in 5_000u64..50_000,
        guest_ops in 50_000u64..250_000,
        interval in prop_oneof![Just(256u32), Just(1024)],
    ) {
        let pe = PeConfig {
            pmu: PmuConfig { counters: 6, version: PmuVer::V3p5, hpmn0: false, el2_implemented: true },
            spe: Some(SpeConfig::default()),
            fgt: true,
            uarch: Default::default(),
        };
        let machine = Machine::new(&MachineConfig { pes: vec![pe; 2], ram_base: 0x8000_0000, ram_size: 256 << 20 }).unwrap();
        let mut kvm = Kvm::new_nvhe(machine);
        let vm = kvm.create_vm(VmConfig { ram_bytes: 32 << 20, memlock_limit: MEMLOCK }).unwrap();
        let vcpu = kvm.create_vcpu(vm, VcpuFeatures { spe: true, pmu_v3: false }).unwrap();
        kvm.configure_spe(vcpu, 0, 21, 64 * 1024).unwrap();
        let ttbr = kvm.guest_map(vm, BUF_VA, GUEST_RAM_IPA + (8 << 20), guest_pages * 4096).unwrap();
        let buf = Buffer { va: BUF_VA, size: guest_pages * 4096 };
        let mut guest = GuestKernel::new(ttbr, session(interval), buf, by_name("mix", 7).unwrap(), guest_ops)
            .with_slices(slice);
        let mut hosts: Vec<Option<SpeDriver>> = (0..2)
            .map(|cpu| {
                host_profiles.then(|| {
                    hyperprof_guest::host::start_session(
                        kvm.machine(), cpu, SysReg::TTBR0_EL1, HOST_VA + ((cpu as u64) << 32), 16 * 4096, session(interval),
                    )
                    .unwrap()
                })
            })
            .collect();
        let mut host_loads: Vec<Box<dyn Workload>> = (0..2).map(|c| by_name("kernel-array-sum", 3 + c).unwrap()).collect();
        let mut loaded: Option<usize> = None;
        let run_guest = |kvm: &mut Kvm, loaded: &mut Option<usize>, cpu: usize, guest: &mut GuestKernel| {
            if *loaded != Some(cpu) {
                if loaded.is_some() {
                    kvm.put(vcpu).unwrap();
                }
                kvm.load(vcpu, cpu).unwrap();
                *loaded = Some(cpu);
            }
            match kvm.run(vcpu, guest) {
                Exit::Halt | Exit::Yield => {}
                e => panic!("unexpected exit {e:?}"),
            }
        };
        for s in &steps {
            match *s {
                Step::Host { cpu, ops } => {
                    if loaded == Some(cpu) {
                        kvm.put(vcpu).unwrap();
                        loaded = None;
                    }
                    host_work(&mut kvm, cpu, host_loads[cpu].as_mut(), hosts[cpu].as_mut(), ops);
                }
                Step::Guest { cpu } => run_guest(&mut kvm, &mut loaded, cpu, &mut guest),
            }
            // Limits, at every step.
            prop_assert!(kvm.pinned_bytes(vm).unwrap() <= MEMLOCK);
        }
        // Finish the guest on CPU 0, then stop the host sessions.
        for _ in 0..10_000 {
            if guest.finished() {
                break;
            }
            run_guest(&mut kvm, &mut loaded, 0, &mut guest);
        }
        prop_assert!(guest.finished());
        prop_assert_eq!(guest.error(), None);
        if loaded.is_some() {
            kvm.put(vcpu).unwrap();
        }
        let mut host_records = 0usize;
        for (cpu, h) in hosts.iter_mut().enumerate() {
            if let Some(d) = h {
                let m = kvm.machine();
                d.stop(&mut m.cpu(cpu).unwrap()).unwrap();
                let recs: Vec<_> = RecordDecoder::new(&d.take_data()).collect::<Result<_, _>>().unwrap();
                // Isolation: the host's buffer holds only its kernel's EL1 records.
                prop_assert!(recs.iter().all(|(_, r)| r.pc.is_some_and(|pc| pc.el == 1)));
                host_records += recs.len();
            }
        }
        let guest_recs: Vec<_> = RecordDecoder::new(guest.data()).collect::<Result<_, _>>().unwrap();
        prop_assert!(!guest_recs.is_empty());
        prop_assert!(guest_recs.iter().all(|(_, r)| r.pc.is_some_and(|pc| pc.el == 0)));
        // Conservation: each unit accounts for every sample; every record
        // written was collected by its owner.
        let mut written = 0;
        for cpu in 0..2 {
            let spe = kvm.machine().pe(cpu).unwrap().spe().unwrap();
            let st = *spe.stats();
            prop_assert_eq!(st.sampled, st.written + st.filtered + st.collided + st.discarded + spe.queued() as u64);
            written += st.written;
        }
        prop_assert_eq!(written as usize, host_records + guest_recs.len());
        // Interrupts: every virtual PMBIRQ went to the guest's driver.
        let stats = kvm.vcpu_stats(vcpu).unwrap();
        prop_assert_eq!(stats.virqs, guest.driver_stats().unwrap().irqs);
        // Limits: nothing pinned once the guest stopped its session.
        prop_assert_eq!(kvm.pinned_bytes(vm), Some(0));
    }
}
