//! A hostile guest under an nVHE host (the counterpart of `guest_fuzz.rs`):
//! any SPE, EL1 or EL2 register, any value, barriers, runs at EL0 and EL1
//! with IRQs masked or not, moves between CPUs, while the host kernel at
//! EL1 profiles itself on both CPUs with its own sampling configuration.
//!
//! Properties: nothing panics and every exit is one KVM_RUN may give; the
//! host's sampling and buffer configuration is exactly what it was after
//! every guest run; the host's buffers hold only its kernel's EL1 records;
//! every unit accounts for every sample; nothing pinned exceeds RLIMIT_MEMLOCK.

use hyperprof_arch::{AccessFault, Cpu, ExceptionLevel, PmuVer, SysReg};
use hyperprof_guest::drivers::spe::{SpeDriver, SpeSessionConfig};
use hyperprof_guest::guest::{GuestEnv, GuestProgram, GuestStep};
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

/// What the hostile guest may touch.
const REGS: [SysReg; 20] = [
    SysReg::PMSCR_EL1,
    SysReg::PMSNEVFR_EL1,
    SysReg::PMSICR_EL1,
    SysReg::PMSIRR_EL1,
    SysReg::PMSFCR_EL1,
    SysReg::PMSEVFR_EL1,
    SysReg::PMSLATFR_EL1,
    SysReg::PMSIDR_EL1,
    SysReg::PMBLIMITR_EL1,
    SysReg::PMBPTR_EL1,
    SysReg::PMBSR_EL1,
    SysReg::PMBIDR_EL1,
    SysReg::PMSDSFR_EL1,
    SysReg::PMSCR_EL2,
    SysReg::MDCR_EL2,
    SysReg::HCR_EL2,
    SysReg::VTTBR_EL2,
    SysReg::TTBR0_EL1,
    SysReg::CONTEXTIDR_EL1,
    SysReg::PMSCR_EL12,
];

/// The host's registers a guest run must leave as they were (read at EL1).
const HOST_REGS: [SysReg; 9] = [
    SysReg::PMSCR_EL1,
    SysReg::PMSIRR_EL1,
    SysReg::PMSFCR_EL1,
    SysReg::PMSEVFR_EL1,
    SysReg::PMSLATFR_EL1,
    SysReg::PMSNEVFR_EL1,
    SysReg::PMBLIMITR_EL1,
    SysReg::TTBR0_EL1,
    SysReg::CONTEXTIDR_EL1,
];

#[derive(Clone, Debug)]
enum Act {
    Write(usize, u64),
    Read(usize),
    Isb,
    Psb,
    Dsb,
    Run { el0: bool, masked: bool, ops: u64 },
}

fn value(ttbr: u64) -> impl Strategy<Value = u64> {
    prop_oneof![
        Just(0u64),
        Just(BUF_VA),
        (1u64..80).prop_map(|p| (BUF_VA + p * 4096) | 1),
        Just(1u64 << 17),
        Just(0x100u64),
        Just(ttbr),
        any::<u64>(),
    ]
}

fn act(ttbr: u64) -> impl Strategy<Value = Act> {
    prop_oneof![
        4 => (0..REGS.len(), value(ttbr)).prop_map(|(r, v)| Act::Write(r, v)),
        2 => (0..REGS.len()).prop_map(Act::Read),
        1 => Just(Act::Isb),
        1 => Just(Act::Psb),
        1 => Just(Act::Dsb),
        2 => (any::<bool>(), any::<bool>(), 100u64..30_000)
            .prop_map(|(el0, masked, ops)| Act::Run { el0, masked, ops }),
    ]
}

/// A guest program that performs its actions once, from where an exit to
/// the VMM interrupted it.
struct Hostile {
    acts: Vec<Act>,
    next: usize,
    work: Box<dyn Workload>,
}

impl GuestProgram for Hostile {
    fn run(&mut self, env: &mut dyn GuestEnv) -> GuestStep {
        while let Some(a) = self.acts.get(self.next).cloned() {
            self.next += 1;
            let r = match a {
                Act::Write(r, v) => env.write(REGS[r], v).map(|()| 0),
                Act::Read(r) => env.read(REGS[r]),
                Act::Isb => {
                    env.isb();
                    Ok(0)
                }
                Act::Psb => {
                    env.psb_csync();
                    Ok(0)
                }
                Act::Dsb => {
                    env.dsb_nsh();
                    Ok(0)
                }
                Act::Run { el0, masked, ops } => {
                    if el0 {
                        env.to_el0();
                    }
                    env.mask_irqs(masked);
                    env.execute(self.work.as_mut(), ops);
                    env.mask_irqs(false);
                    if el0 {
                        env.to_el1();
                    }
                    Ok(0)
                }
            };
            if let Err(AccessFault::Trapped { .. }) = r {
                // The hypervisor went to its VMM: resume here.
                return GuestStep::More;
            }
        }
        GuestStep::Done
    }
}

fn host_regs(kvm: &mut Kvm, cpu: usize) -> Vec<u64> {
    let mut c = kvm.machine().cpu(cpu).unwrap();
    assert_eq!(
        c.current_el(),
        ExceptionLevel::EL1,
        "the nVHE host runs at EL1"
    );
    HOST_REGS.iter().map(|&r| c.read(r).unwrap()).collect()
}

/// Host kernel work at EL1 on `cpu`, its PMBIRQs into its driver.
fn host_work(kvm: &mut Kvm, cpu: usize, w: &mut dyn Workload, d: &mut SpeDriver, ops: u64) {
    let m = kvm.machine();
    let mut left = ops;
    while left > 0 {
        let mut done = 0;
        let exit = m.run(cpu, w, left, &mut done).unwrap();
        left -= done;
        if let RunExit::Interrupt(lines) = exit {
            assert!(lines.pmbirq && !lines.pmuirq, "{lines:?}");
            m.pe_mut(cpu).unwrap().exception_entry(ExceptionLevel::EL1);
            d.handle_irq(&mut m.cpu(cpu).unwrap()).unwrap();
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn a_hostile_nvhe_guest_cannot_break_the_host_or_the_limits(
        runs in proptest::collection::vec(
            (0usize..2, proptest::collection::vec(act(0), 1..24), 0u64..20_000),
            1..8,
        ),
        fgt in any::<bool>(),
    ) {
        let pe = PeConfig {
            pmu: PmuConfig { counters: 6, version: PmuVer::V3p5, hpmn0: false, el2_implemented: true },
            spe: Some(SpeConfig::default()),
            fgt,
            uarch: Default::default(),
        };
        let machine = Machine::new(&MachineConfig { pes: vec![pe; 2], ram_base: 0x8000_0000, ram_size: 256 << 20 }).unwrap();
        let mut kvm = Kvm::new_nvhe(machine);
        // Without FGT PMBIDR_EL1 cannot be trapped: the VM must take the
        // SPU's own (unlimited) maximum, and then needs an unlimited memlock.
        let (memlock, max_buffer) = if fgt { (MEMLOCK, 64 * 1024) } else { (u64::MAX, 0) };
        let vm = kvm.create_vm(VmConfig { ram_bytes: 32 << 20, memlock_limit: memlock }).unwrap();
        let vcpu = kvm.create_vcpu(vm, VcpuFeatures { spe: true, pmu_v3: false }).unwrap();
        kvm.configure_spe(vcpu, 0, 21, max_buffer).unwrap();
        let ttbr = kvm.guest_map(vm, BUF_VA, GUEST_RAM_IPA + (8 << 20), 64 * 4096).unwrap();
        // The host samples its kernel every 1024 operations, with its own filters.
        let host_cfg = SpeSessionConfig { interval: 1024, jitter: false, min_latency: Some(2), ..SpeSessionConfig::default() };
        let mut hosts: Vec<SpeDriver> = (0..2)
            .map(|cpu| hyperprof_guest::host::start_session(
                kvm.machine(), cpu, SysReg::TTBR0_EL1, HOST_VA + ((cpu as u64) << 32), 64 * 4096, host_cfg,
            ).unwrap())
            .collect();
        let mut host_loads: Vec<Box<dyn Workload>> = (0..2).map(|c| by_name("kernel-mix", 3 + c).unwrap()).collect();
        let mut loaded: Option<usize> = None;
        for (cpu, acts, host_ops) in runs {
            if loaded.is_some_and(|l| l != cpu) {
                kvm.put(vcpu).unwrap();
                loaded = None;
            }
            host_work(&mut kvm, cpu, host_loads[cpu].as_mut(), &mut hosts[cpu], host_ops);
            if loaded.is_none() {
                kvm.load(vcpu, cpu).unwrap();
                loaded = Some(cpu);
            }
            let before = host_regs(&mut kvm, cpu);
            let acts: Vec<Act> = acts.into_iter().map(|a| match a {
                Act::Write(r, v) if v == 0 && REGS[r] == SysReg::TTBR0_EL1 => Act::Write(r, ttbr),
                a => a,
            }).collect();
            let mut p = Hostile { acts, next: 0, work: by_name("mix", 5).unwrap() };
            for _ in 0..64 {
                match kvm.run(vcpu, &mut p) {
                    Exit::Halt => break,
                    Exit::Yield => {}
                    Exit::Rlimit { .. } => {}
                    e => prop_assert!(false, "unexpected exit {:?}", e),
                }
                // Isolation: the host's configuration is its own after
                // every exit to the VMM.
                prop_assert_eq!(&host_regs(&mut kvm, cpu), &before);
                prop_assert!(kvm.pinned_bytes(vm).unwrap() <= memlock);
            }
        }
        if loaded.is_some() {
            kvm.put(vcpu).unwrap();
        }
        for (cpu, d) in hosts.iter_mut().enumerate() {
            let m = kvm.machine();
            d.stop(&mut m.cpu(cpu).unwrap()).unwrap();
            let data = d.take_data();
            let recs: Vec<_> = RecordDecoder::new(&data).collect::<Result<_, _>>().unwrap();
            // Isolation: only the host kernel's EL1 records, above the host's
            // latency filter (the guest's filters never applied to it).
            prop_assert!(recs.iter().all(|(_, r)| r.pc.is_some_and(|pc| pc.el == 1 && pc.addr >> 48 == 0xff)));
            prop_assert!(recs.iter().all(|(_, r)| r.total_latency.is_none_or(|l| l >= 2)));
            let spe = kvm.machine().pe(cpu).unwrap().spe().unwrap();
            let st = *spe.stats();
            prop_assert_eq!(st.sampled, st.written + st.filtered + st.collided + st.discarded + spe.queued() as u64);
        }
    }
}
