//! Guest PMU through the hypervisor, in partitioned and emulated mode: a
//! guest kernel counts and samples with its PMU driver while its vCPU moves
//! between CPUs and the host counts on its reserved counters; the counts are
//! exact, the host's counters untouched, and the world switch costs what
//! the closing note reports.

use hyperprof_arch::{pmcr_el0, AccessFault, Cpu, SysReg};
use hyperprof_guest::drivers::pmu::{EventSpec, Filter};
use hyperprof_guest::guest::{GuestEnv, GuestKernel, GuestProgram, GuestStep};
use hyperprof_kvm::vm::{Exit, Kvm};
use hyperprof_sim::event::Event;
use hyperprof_sim::pe::RunExit;
use hyperprof_sim::workload::by_name;

mod pmu_common;
use pmu_common::{
    enter, evcntr, events_of, evtyper, pmu_setup, pmu_vm, start_host_pmu, Hw, Mode, COUNTERS, MODES,
};

/// A hypervisor whose host reserves two counters, with one single-vCPU VM.
fn vm(mode: Mode) -> (Kvm, usize) {
    let hw = Hw {
        fgt: mode.fgt(),
        nvhe: mode.nvhe(),
        ..Hw::default()
    };
    pmu_vm(hw, &pmu_setup(mode.partitioned(), None, Vec::new()))
}

fn run_to_halt(kvm: &mut Kvm, vcpu: usize, p: &mut dyn GuestProgram, cpus: &[usize]) {
    for round in 0..100_000 {
        match enter(kvm, vcpu, cpus[round % cpus.len()], p) {
            Exit::Halt => return,
            Exit::Yield => continue,
            e => panic!("unexpected exit {e:?}"),
        }
    }
    panic!("the guest never halted");
}

fn user(event: u16, period: Option<u32>) -> EventSpec {
    EventSpec {
        event,
        filter: Filter {
            el0: true,
            el1: false,
            el2: false,
        },
        period,
    }
}

#[test]
fn guest_counts_are_exact_in_both_modes_while_the_vcpu_moves() {
    for mode in MODES {
        let (mut kvm, vcpu) = vm(mode);
        let ops = 3_000_000;
        let mut k = GuestKernel::without_spe(0, by_name("mix", 7).unwrap(), ops)
            .with_pmu(vec![
                user(Event::INST_RETIRED.number(), None),
                user(Event::L1D_CACHE_REFILL.number(), Some(10_000)),
                user(Event::BR_MIS_PRED.number(), None),
            ])
            .with_slices(250_000);
        run_to_halt(&mut kvm, vcpu, &mut k, &[0, 1]);
        assert_eq!(k.error(), None);
        let want = events_of("mix", 7, ops);
        let mode = format!("{mode:?}");
        assert_eq!(
            k.pmu_counts(),
            &[
                want.get(Event::INST_RETIRED),
                want.get(Event::L1D_CACHE_REFILL),
                want.get(Event::BR_MIS_PRED)
            ],
            "{mode}"
        );
        let (stats, overflows) = k.pmu_driver().unwrap();
        assert_eq!(
            overflows[1],
            want.get(Event::L1D_CACHE_REFILL) / 10_000,
            "{mode}: one overflow interrupt per period"
        );
        assert_eq!(stats.spurious, 0, "{mode}");
        let s = kvm.vcpu_stats(vcpu).unwrap();
        assert_eq!(s.pmu_virqs, overflows[1], "{mode}: each delivered once");
    }
}

#[test]
fn partitioned_counter_reads_cause_no_exit_and_emulated_ones_all_exit() {
    let reads = 1_000_000u64;
    let mut exits = Vec::new();
    let mut switch = Vec::new();
    for mode in [Mode::PartitionedFgt, Mode::Emulated, Mode::EmulatedNvhe] {
        let (mut kvm, vcpu) = vm(mode);
        let mut p = Reader { reads, done: 0 };
        run_to_halt(&mut kvm, vcpu, &mut p, &[0]);
        let s = kvm.vcpu_stats(vcpu).unwrap();
        exits.push(s.pmu_trap_exits);
        switch.push((s.pmu_switch.total(), s.entries));
        println!(
            "{mode:?}: {} PMU trap exits for {reads} counter reads; {} PMU register \
             accesses in {} entry+exit pairs",
            s.pmu_trap_exits,
            s.pmu_switch.total(),
            s.entries
        );
    }
    // Partitioned: only the first access (the lazy switch) exits.
    assert_eq!(exits[0], 1);
    assert_eq!(exits[1], reads + 1);
    assert_eq!(exits[2], reads + 1, "nVHE: the same emulation");
    // VHE emulated: nothing switched at entry and exit. nVHE: the host's
    // counters off and on (two; all the first, lazy, pair does), then with
    // the state live PMCR_EL0 read, the guest's counter on and off, and
    // this guest's PMCR_EL0 (E clear) written in and the host's (E set)
    // back: seven.
    assert_eq!(switch[1].0, 0);
    let (total, pairs) = switch[2];
    assert_eq!(total, 2 + 7 * (pairs - 1));
}

/// A guest that enables counter 0 then reads it `reads` times.
struct Reader {
    reads: u64,
    done: u64,
}

impl GuestProgram for Reader {
    fn run(&mut self, env: &mut dyn GuestEnv) -> GuestStep {
        if self.done == 0 {
            env.write(SysReg::PMCNTENSET_EL0, 1).unwrap();
        }
        while self.done < self.reads {
            match env.read(evcntr(0)) {
                Ok(_) => self.done += 1,
                Err(AccessFault::Trapped { .. }) => return GuestStep::More,
                Err(e) => panic!("{e:?}"),
            }
        }
        GuestStep::Done
    }
}

#[test]
fn load_put_cost_is_within_the_series_sequence_and_zero_while_lazy() {
    // HPMN = 6: eight counters, two for the host.
    let (mut kvm, vcpu) = vm(Mode::PartitionedFgt);
    let mut idle = GuestKernel::without_spe(0, by_name("mix", 1).unwrap(), 10_000);
    run_to_halt(&mut kvm, vcpu, &mut idle, &[0]);
    let s = kvm.vcpu_stats(vcpu).unwrap();
    assert_eq!(s.pmu_load_put.total(), 0, "untouched: nothing switched");

    let (mut kvm, vcpu) = vm(Mode::PartitionedFgt);
    let mut k = GuestKernel::without_spe(0, by_name("mix", 1).unwrap(), 2_000_000)
        .with_pmu(vec![user(Event::INST_RETIRED.number(), None)])
        .with_slices(100_000);
    run_to_halt(&mut kvm, vcpu, &mut k, &[0]);
    assert_eq!(k.pmu_counts().len(), 1);
    let pair = |kvm: &mut Kvm, cpu: usize| {
        let before = kvm.vcpu_stats(vcpu).unwrap().pmu_load_put.total();
        kvm.load(vcpu, cpu).unwrap();
        kvm.put(vcpu).unwrap();
        kvm.vcpu_stats(vcpu).unwrap().pmu_load_put.total() - before
    };
    // Six counter values and the cycle counter each way, PMCR, the enable
    // and interrupt-enable bitmaps, PMUSERENR (the host's restored from
    // what the hypervisor keeps), PMSELR and the overflow flags saved,
    // the guest's enables cleared at put.
    let same_cpu = pair(&mut kvm, 0);
    assert_eq!(same_cpu, 27, "seed 001's sequence is 26, without the host PMUSERENR, the overflow flags and stopping the guest's counters");
    // On a CPU that last held another vCPU's event types, they are written
    // too: six and PMCCFILTR.
    let other_cpu = pair(&mut kvm, 1);
    assert_eq!(other_cpu, 27 + 7);
    assert_eq!(
        pair(&mut kvm, 1),
        27,
        "the types stay until another vCPU loads"
    );
    println!("load+put with HPMN=6: {same_cpu} accesses, {other_cpu} after a move");
}

#[test]
fn host_counters_count_exactly_the_hosts_work_whatever_the_guest_does() {
    for mode in [Mode::PartitionedFgt, Mode::Emulated, Mode::EmulatedNvhe] {
        let partitioned = format!("{mode:?}");
        let (mut kvm, vcpu) = vm(mode);
        // The host counts its kernel's instructions (EL2 under VHE, EL0
        // and EL1 under nVHE) on its reserved counters, with overflow
        // interrupts every 2^20.
        let mut hosts = Vec::new();
        for cpu in 0..2 {
            let d = start_host_pmu(&mut kvm, cpu, 1 << 20);
            assert_eq!(d.counters(), 6..8);
            hosts.push(d);
        }
        let mut host_work: Vec<_> = (0..2)
            .map(|cpu| by_name("kernel-mix", cpu).unwrap())
            .collect();
        let mut guest = Vandal { rounds: 0 };
        let mut host_ops = [0u64; 2];
        for round in 0..40 {
            let cpu = round % 2;
            // Host kernel work, taking its own PMU interrupts.
            let mut left = 200_000u64;
            while left > 0 {
                let mut done = 0;
                let exit = kvm
                    .machine()
                    .run(cpu, host_work[cpu].as_mut(), left, &mut done)
                    .unwrap();
                left -= done;
                host_ops[cpu] += done;
                if let RunExit::Interrupt(_) = exit {
                    let mut c = kvm.machine().cpu(cpu).unwrap();
                    // A VHE host takes its interrupts at EL2; an nVHE host
                    // kernel at EL1 where it runs.
                    let ovs = hosts[cpu].handle_irq(&mut c).unwrap();
                    assert_ne!(ovs, 0, "the host only sees its own overflows");
                }
            }
            match enter(&mut kvm, vcpu, cpu, &mut guest) {
                Exit::Halt | Exit::Yield => {}
                e => panic!("{e:?}"),
            }
        }
        for (cpu, d) in hosts.iter().enumerate() {
            let want = events_of("kernel-mix", cpu as u64, host_ops[cpu]);
            let mut c = kvm.machine().cpu(cpu).unwrap();
            assert_eq!(
                d.read(&mut c, 0).unwrap(),
                want.get(Event::INST_RETIRED),
                "partitioned={partitioned} cpu {cpu}"
            );
            assert_eq!(
                d.read(&mut c, 1).unwrap(),
                want.get(Event::CPU_CYCLES),
                "partitioned={partitioned} cpu {cpu}"
            );
            let pmcr = c.read(SysReg::PMCR_EL0).unwrap();
            assert_eq!(pmcr_el0::N.get(pmcr), u64::from(COUNTERS));
        }
    }
}

/// A guest that tries everything on counters it does not have, and counts
/// with all of its own, overflowing them often.
struct Vandal {
    rounds: u64,
}

impl GuestProgram for Vandal {
    fn run(&mut self, env: &mut dyn GuestEnv) -> GuestStep {
        self.rounds += 1;
        let _ = env.write(SysReg::PMCR_EL0, 0b111);
        let _ = env.write(SysReg::PMCNTENSET_EL0, u64::MAX);
        let _ = env.write(SysReg::PMOVSSET_EL0, u64::MAX);
        let _ = env.write(SysReg::PMINTENSET_EL1, u64::MAX);
        for i in 0..31 {
            let _ = env.write(evcntr(i), 0xFFFF_FFF0);
            let _ = env.write(evtyper(i), 0x08 | 1 << 27);
        }
        let _ = env.write(SysReg::PMSELR_EL0, 7);
        let _ = env.write(SysReg::PMXEVCNTR_EL0, 5);
        let _ = env.write(SysReg::PMSWINC_EL0, u64::MAX);
        let _ = env.write(SysReg::PMCCFILTR_EL0, 1 << 27);
        let _ = env.write(SysReg::PMUSERENR_EL0, 0xF);
        let mut w = by_name("mix", self.rounds).unwrap();
        env.to_el0();
        let (_, stop) = env.execute(w.as_mut(), 100_000);
        env.to_el1();
        if env.pmu_virq_pending() {
            env.take_virq();
            let _ = env.write(SysReg::PMOVSCLR_EL0, u64::MAX);
        }
        let _ = stop;
        GuestStep::More
    }
}

#[test]
fn an_nvhe_host_names_only_its_own_counters_and_its_reservation_does_not_partition() {
    use hyperprof_arch::mdcr_el2;
    use hyperprof_kvm::uapi::Errno;
    let (mut kvm, vcpu) = vm(Mode::EmulatedNvhe);
    // HPMN stays N: the host kernel at EL1 reaches its top counters.
    assert_eq!(kvm.host_pmus()[0].hpmn(), None);
    let pe = kvm.machine().pe(0).unwrap();
    let hpmn = mdcr_el2::HPMN.get(pe.pmu().effective_mdcr_el2());
    assert_eq!(hpmn, u64::from(COUNTERS));
    // Counters 6 and 7 are the host's; the guests' and the cycle counter
    // are not; nor are counters the PMU does not have.
    for bad in [1 << 5, 1 << 31, 1 << 8] {
        assert_eq!(
            kvm.set_host_pmu_events(0, bad),
            Err(Errno::EINVAL),
            "{bad:#x}"
        );
    }
    assert_eq!(
        kvm.set_host_pmu_events(9, 1 << 6),
        Err(Errno::EINVAL),
        "no CPU 9"
    );
    kvm.set_host_pmu_events(0, 0b11 << 6).unwrap();
    kvm.load(vcpu, 0).unwrap();
    assert_eq!(
        kvm.set_host_pmu_events(0, 1 << 6),
        Err(Errno::EBUSY),
        "loaded"
    );
    kvm.set_host_pmu_events(1, 1 << 6).unwrap();
    kvm.put(vcpu).unwrap();
}

#[test]
fn an_nvhe_entry_and_exit_cost_five_pmu_accesses_for_a_counting_guest() {
    let (mut kvm, vcpu) = vm(Mode::EmulatedNvhe);
    let reads = 10_000u64;
    let mut p = CountingReader { reads, done: 0 };
    run_to_halt(&mut kvm, vcpu, &mut p, &[0]);
    let s = kvm.vcpu_stats(vcpu).unwrap();
    assert_eq!(s.pmu_trap_exits, reads + 2);
    // The first pair is lazy (the host's counters off and on: two); the
    // second has PMCR_EL0 (as the host's: read, not written) and no guest
    // counter yet (three); each later one also starts and stops the
    // guest's counter (five).
    assert_eq!(s.pmu_switch.total(), 2 + 3 + 5 * (s.entries - 2));
}

/// A guest that enables counting (PMCR_EL0.E, as the host's), enables
/// counter 0, then reads it `reads` times.
struct CountingReader {
    reads: u64,
    done: u64,
}

impl GuestProgram for CountingReader {
    fn run(&mut self, env: &mut dyn GuestEnv) -> GuestStep {
        if self.done == 0 {
            env.write(SysReg::PMCR_EL0, pmcr_el0::E.mask() | pmcr_el0::LC.mask())
                .unwrap();
            env.write(SysReg::PMCNTENSET_EL0, 1).unwrap();
        }
        while self.done < self.reads {
            match env.read(evcntr(0)) {
                Ok(_) => self.done += 1,
                Err(AccessFault::Trapped { .. }) => return GuestStep::More,
                Err(e) => panic!("{e:?}"),
            }
        }
        GuestStep::Done
    }
}

/// KVM_CREATE_DEVICE of a vGICv3 at QEMU virt's addresses for VM `vm`,
/// initialised.
fn add_vgic(kvm: &mut Kvm, vm: usize) {
    use hyperprof_kvm::uapi::*;
    kvm.create_vgic_v3(vm).unwrap();
    for (group, attr, v) in [
        (
            KVM_DEV_ARM_VGIC_GRP_ADDR,
            KVM_VGIC_V3_ADDR_TYPE_DIST,
            0x0800_0000,
        ),
        (
            KVM_DEV_ARM_VGIC_GRP_ADDR,
            KVM_VGIC_V3_ADDR_TYPE_REDIST,
            0x080A_0000,
        ),
        (KVM_DEV_ARM_VGIC_GRP_CTRL, KVM_DEV_ARM_VGIC_CTRL_INIT, 0),
    ] {
        kvm.set_vgic_attr(vm, group, attr, UserPtr::Value(v))
            .unwrap();
    }
}

/// The vGIC's register traffic (ICH_VMCR_EL2 and the active priorities at
/// load and put, the list registers at entry and exit) is not part of the
/// PMU's switch cost: the same 27 accesses per load and put.
#[test]
fn load_put_cost_is_the_same_with_a_vgic() {
    let (mut kvm, vcpu) = vm(Mode::PartitionedFgt);
    add_vgic(&mut kvm, 0);
    let mut k = GuestKernel::without_spe(0, by_name("mix", 1).unwrap(), 2_000_000)
        .with_pmu(vec![user(Event::INST_RETIRED.number(), None)])
        .with_slices(100_000);
    run_to_halt(&mut kvm, vcpu, &mut k, &[0]);
    let before = kvm.vcpu_stats(vcpu).unwrap().pmu_load_put.total();
    let gic_before = kvm.vgic_stats(vcpu).unwrap().other_accesses;
    kvm.load(vcpu, 0).unwrap();
    kvm.put(vcpu).unwrap();
    let pmu = kvm.vcpu_stats(vcpu).unwrap().pmu_load_put.total() - before;
    let gic = kvm.vgic_stats(vcpu).unwrap().other_accesses - gic_before;
    assert_eq!(pmu, 27);
    assert_eq!(
        gic, 6,
        "ICH_VMCR_EL2, ICH_AP0R0_EL2, ICH_AP1R0_EL2 each way"
    );
}
