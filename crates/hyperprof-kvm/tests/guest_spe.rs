//! Guest SPE end to end: a guest kernel with the SPE driver on a vCPU of
//! the KVM-shaped hypervisor (VHE), checked the way the kvm-unit-tests SPE
//! proposals check it (ARM-FACTS §7), plus the world-switch cost and the
//! memlock limit.

use hyperprof_arch::{maxbuffsize, pmbsr_el1, Cpu, PmbsrEc, PmuVer, SysReg};
use hyperprof_guest::drivers::spe::{Buffer, IrqOutcome, SpeSessionConfig};
use hyperprof_guest::guest::{GuestEnv, GuestKernel, GuestProgram};
use hyperprof_kvm::uapi::*;
use hyperprof_kvm::vm::{Exit, Kvm, VmConfig, GUEST_RAM_IPA};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::pe::PeConfig;
use hyperprof_sim::pmu::PmuConfig;
use hyperprof_sim::spe::SpeConfig;
use hyperprof_sim::workload::{by_name, Workload};
use hyperprof_spe::RecordDecoder;
mod spe_vcpu;
use spe_vcpu::Once;

const BUF_VA: u64 = 0x0000_0040_0000_0000;
const BUF_IPA: u64 = GUEST_RAM_IPA + (16 << 20);

fn machine() -> Machine {
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
    Machine::new(&MachineConfig {
        pes: vec![pe; 2],
        ram_base: 0x8000_0000,
        ram_size: 512 << 20,
    })
    .unwrap()
}

/// A VM with one SPE vCPU (max buffer size 1 MiB), configured and loaded on
/// CPU 0; the guest's buffer of `pages` pages mapped at BUF_VA to `ipa`.
fn vm(memlock: u64, pages: u64, ipa: u64) -> (Kvm, usize, usize, u64) {
    vm_with(memlock, 1 << 20, pages, ipa)
}

fn vm_with(memlock: u64, max_buffer: u64, pages: u64, ipa: u64) -> (Kvm, usize, usize, u64) {
    let mut kvm = Kvm::new(machine());
    let (vm, vcpu) = spe_vcpu::spe_vcpu(&mut kvm, 64 << 20, memlock, max_buffer);
    let ttbr = kvm.guest_map(vm, BUF_VA, ipa, pages * 4096).unwrap();
    kvm.load(vcpu, 0).unwrap();
    (kvm, vm, vcpu, ttbr)
}

/// A 16 MiB VM without a memlock limit, with one vCPU of `features`; returns
/// the vCPU.
fn small_vm(kvm: &mut Kvm, features: VcpuFeatures) -> usize {
    let vm = kvm
        .create_vm(VmConfig {
            ram_bytes: 16 << 20,
            memlock_limit: u64::MAX,
        })
        .unwrap();
    kvm.create_vcpu(vm, features).unwrap()
}

fn session() -> SpeSessionConfig {
    SpeSessionConfig {
        interval: 256,
        jitter: false,
        ..SpeSessionConfig::default()
    }
}

/// The guest kernel with the default [`session`] and a `pages`-page buffer
/// at `BUF_VA`, running `ops` operations of `workload` at EL0.
fn guest_kernel(ttbr: u64, pages: u64, workload: Box<dyn Workload>, ops: u64) -> GuestKernel {
    let buf = Buffer {
        va: BUF_VA,
        size: pages * 4096,
    };
    GuestKernel::new(ttbr, session(), buf, workload, ops)
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

#[test]
fn spe_introspection_shows_the_sanitised_id_registers() {
    let (mut kvm, _, vcpu, _) = vm(u64::MAX, 16, BUF_IPA);
    let mut seen = (0, 0);
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| {
            seen = (
                env.read(SysReg::PMBIDR_EL1).unwrap(),
                env.read(SysReg::PMSIDR_EL1).unwrap(),
            );
            // Writes to the ID registers are refused the architected way.
            assert!(env.write(SysReg::PMBIDR_EL1, 0).is_err());
        }),
    );
    let (pmbidr, pmsidr) = seen;
    assert_eq!(
        maxbuffsize::size(pmbidr),
        1 << 20,
        "MaxBuffSize advertises the VM's limit"
    );
    assert_eq!(pmbidr >> 48, 0, "RES0");
    assert_eq!(pmbidr >> 4 & 1, 0, "P: the buffer is the guest's");
    assert_eq!(pmsidr >> 33, 0, "RES0");
    assert_ne!(pmsidr, 0);
    assert!(kvm.vcpu_stats(vcpu).unwrap().trap_exits >= 2);
}

#[test]
fn the_buffer_fills_and_pmbptr_advances_with_pmbsr_clear() {
    let (mut kvm, _, vcpu, ttbr) = vm(u64::MAX, 64, BUF_IPA);
    let mut k = guest_kernel(ttbr, 64, by_name("mix", 3).unwrap(), 200_000);
    run_to_halt(&mut kvm, vcpu, &mut k);
    assert_eq!(k.error(), None);
    let records = RecordDecoder::new(k.data())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    // One sample every 257 operations (the interval reload takes one).
    assert!((700..=790).contains(&records.len()), "{}", records.len());
    let g = kvm.guest_spe(vcpu).unwrap();
    // No buffer management event; COLL may be set by the guest's own
    // collisions (the mix workload has long latencies).
    assert_eq!(g.buffer.pmbsr_el1 & !pmbsr_el1::COLL.mask(), 0);
    let stats = kvm.vcpu_stats(vcpu).unwrap();
    assert_eq!(stats.virqs, 0);
    // Every record is the guest's: EL0 PCs of its workload.
    assert!(records
        .iter()
        .all(|(_, r)| r.pc.is_some_and(|pc| pc.el == 0)));
}

#[test]
fn buffer_full_becomes_the_guests_virtual_ppi_with_bsc_full() {
    let (mut kvm, _, vcpu, ttbr) = vm(u64::MAX, 2, BUF_IPA);
    let mut k = guest_kernel(ttbr, 2, by_name("pointer-chase", 1).unwrap(), 300_000);
    run_to_halt(&mut kvm, vcpu, &mut k);
    let d = k.driver_stats().unwrap();
    assert!(d.buffer_full >= 2, "{d:?}");
    assert_eq!(d.faults, 0);
    let stats = kvm.vcpu_stats(vcpu).unwrap();
    assert_eq!(
        stats.virqs, d.irqs,
        "every virtual PMBIRQ went to the guest driver"
    );
    assert!(
        stats.irq_exits >= d.buffer_full,
        "the physical PMBIRQ exits to the hypervisor"
    );
    let n = RecordDecoder::new(k.data()).filter(|r| r.is_ok()).count();
    assert!(n > 500, "{n}");
}

#[test]
fn a_service_bit_written_by_the_guest_keeps_the_virtual_irq_pending_until_cleared() {
    let (mut kvm, _, vcpu, _) = vm(u64::MAX, 16, BUF_IPA);
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| {
            assert!(!env.virq_pending());
            env.write(SysReg::PMBSR_EL1, pmbsr_el1::S.set(0, 1))
                .unwrap();
            assert!(env.virq_pending());
            let mut w = by_name("mix", 1).unwrap();
            // Level sensitive: still pending after running.
            let (_, stop) = env.execute(w.as_mut(), 1000);
            assert_eq!(stop, hyperprof_guest::guest::ExecStop::VirtualIrq);
            assert!(env.virq_pending());
            env.write(SysReg::PMBSR_EL1, 0).unwrap();
            assert!(!env.virq_pending());
        }),
    );
}

#[test]
fn a_guest_stage1_fault_reaches_the_guest_as_fault_s1() {
    let mut kvm_vm = vm(u64::MAX, 1, BUF_IPA);
    let (kvm, _, vcpu, ttbr) = (&mut kvm_vm.0, kvm_vm.1, kvm_vm.2, kvm_vm.3);
    // The guest's buffer is 4 pages; its tables map only the first.
    let mut k = guest_kernel(ttbr, 4, by_name("mix", 2).unwrap(), 200_000);
    run_to_halt(kvm, vcpu, &mut k);
    assert_eq!(k.faults().len(), 1, "{:?}", k.faults());
    let IrqOutcome::Fault {
        ec,
        mss,
        external_abort,
    } = k.faults()[0]
    else {
        unreachable!()
    };
    assert_eq!(PmbsrEc::from_bits(ec), Some(PmbsrEc::FAULT_S1));
    assert_eq!(mss & 0x3f, 0x07, "translation fault, level 3");
    assert!(!external_abort);
}

#[test]
fn a_buffer_outside_guest_ram_is_an_external_abort_for_the_guest() {
    // The guest maps its buffer to an IPA with no memory behind it.
    let (mut kvm, _, vcpu, ttbr) = vm(u64::MAX, 4, 0x10_0000_0000);
    let mut k = guest_kernel(ttbr, 4, by_name("mix", 2).unwrap(), 50_000);
    run_to_halt(&mut kvm, vcpu, &mut k);
    assert_eq!(
        kvm.vcpu_stats(vcpu).unwrap().stage2_aborts,
        1,
        "the hypervisor noticed"
    );
    assert!(
        matches!(
            k.faults().first(),
            Some(IrqOutcome::Fault {
                external_abort: true,
                ..
            })
        ),
        "{:?}",
        k.faults()
    );
    assert_eq!(kvm.pinned_bytes(0), Some(0));
}

#[test]
fn world_switch_costs_ten_accesses_per_round_trip_while_profiling_and_none_otherwise() {
    let (mut kvm, _, vcpu, ttbr) = vm(u64::MAX, 64, BUF_IPA);
    let mut k = guest_kernel(ttbr, 64, by_name("mix", 3).unwrap(), 50_000);
    run_to_halt(&mut kvm, vcpu, &mut k);
    let s = kvm.vcpu_stats(vcpu).unwrap();
    // The first entries ran with the buffer still disabled; count the
    // round trips that had it enabled from the PSB CSYNCs the exits issued.
    let trips = s.live_trips;
    assert!(trips > 0);
    assert_eq!(
        s.spe_switch.psb, trips,
        "one drain per exit with the buffer live"
    );
    assert_eq!(s.spe_switch.total(), 10 * trips, "{:?}", s.spe_switch);

    // A guest that never enables its buffer costs nothing per round trip.
    let (mut kvm, _, vcpu, _) = vm(u64::MAX, 4, BUF_IPA);
    let mut w = by_name("mix", 1).unwrap();
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| {
            env.execute(w.as_mut(), 10_000);
        }),
    );
    let s = kvm.vcpu_stats(vcpu).unwrap();
    assert!(s.entries >= 1);
    assert_eq!(s.spe_switch.total(), 0);
}

/// The same ten accesses per round trip with a vGIC: its list register
/// and CPU interface traffic is its own, not the SPE switch's.
#[test]
fn a_vgic_adds_nothing_to_the_spe_round_trip() {
    let (mut kvm, vm_id, vcpu, ttbr) = vm(u64::MAX, 64, BUF_IPA);
    kvm.create_vgic_v3(vm_id).unwrap();
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
        kvm.set_vgic_attr(vm_id, group, attr, UserPtr::Value(v))
            .unwrap();
    }
    let mut k = guest_kernel(ttbr, 64, by_name("mix", 3).unwrap(), 50_000);
    run_to_halt(&mut kvm, vcpu, &mut k);
    let s = kvm.vcpu_stats(vcpu).unwrap();
    assert!(s.live_trips > 0);
    assert_eq!(
        s.spe_switch.total(),
        10 * s.live_trips,
        "{:?}",
        s.spe_switch
    );
    let g = kvm.vgic_stats(vcpu).unwrap();
    assert_eq!(g.flushes, s.entries, "the vGIC ran at every entry: {g:?}");
}

#[test]
fn pinning_past_the_memlock_limit_exits_with_rlimit_and_resumes_when_raised() {
    // The buffer fits the limit; with the stage-1 table pages that
    // translate it, it does not.
    let (mut kvm, vm_id, vcpu, ttbr) = vm_with(32 * 4096, 32 * 4096, 32, BUF_IPA);
    let mut k = guest_kernel(ttbr, 32, by_name("mix", 3).unwrap(), 50_000);
    let Exit::Rlimit {
        needed,
        used,
        limit,
    } = kvm.run(vcpu, &mut k)
    else {
        panic!("expected an Rlimit exit");
    };
    assert_eq!(limit, 32 * 4096);
    assert_eq!(used, 0);
    assert!(
        needed >= 32 * 4096 + 4 * 4096,
        "buffer and its four table pages: {needed}"
    );
    kvm.set_memlock_limit(vm_id, 1 << 20).unwrap();
    run_to_halt(&mut kvm, vcpu, &mut k);
    assert_eq!(k.error(), None);
    assert!(!k.data().is_empty());
    // The driver stopped the session: disabled buffers are unpinned.
    assert_eq!(kvm.pinned_bytes(vm_id), Some(0));
}

#[test]
fn run_fails_cleanly_on_a_vcpu_set_up_wrongly() {
    let mut kvm = Kvm::new(machine());
    let vcpu = small_vm(
        &mut kvm,
        VcpuFeatures {
            spe: true,
            pmu_v3: false,
        },
    );
    let mut p = Once(|_: &mut dyn GuestEnv| {});
    assert!(
        matches!(kvm.run(vcpu, &mut p), Exit::FailEntry(_)),
        "not loaded"
    );
    // Without an SPU chosen the load completes (no SPE state is switched)
    // and KVM_RUN refuses.
    kvm.load(vcpu, 0).unwrap();
    assert!(matches!(kvm.run(vcpu, &mut p), Exit::FailEntry(why) if why.contains("SPE not ready")));
    kvm.put(vcpu).unwrap();
    kvm.set_device_attr(
        vcpu,
        KVM_ARM_VCPU_SPE_CTRL,
        KVM_ARM_VCPU_SPE_SPU,
        UserPtr::Value(0),
    )
    .unwrap();
    kvm.load(vcpu, 0).unwrap();
    let Exit::FailEntry(why) = kvm.run(vcpu, &mut p) else {
        panic!("ran without IRQ, max buffer size or init");
    };
    assert!(why.contains("SPE not ready"), "{why}");
}

/// The host profiles its kernel on CPU 0 with the same driver, around a
/// guest that profiles itself: the host's session stops at load and resumes
/// at put where it was, nothing of it is lost, and none of the guest's
/// records reach the host's buffer (nor the host's the guest's).
#[test]
fn host_profiling_resumes_after_the_guest_with_nothing_lost_or_leaked() {
    let (mut kvm, _, vcpu, ttbr) = vm(u64::MAX, 64, BUF_IPA);
    kvm.put(vcpu).unwrap();
    // The host's own buffer, in its EL2&0 tables.
    let mut host = hyperprof_guest::host::start_session(
        kvm.machine(),
        0,
        SysReg::TTBR0_EL2,
        0x0000_7000_0000_0000,
        64 * 4096,
        session(),
    )
    .unwrap();
    let mut host_work = by_name("kernel-array-sum", 9).unwrap();
    let mut done = 0;
    kvm.machine()
        .run(0, host_work.as_mut(), 100_000, &mut done)
        .unwrap();

    // The guest runs on CPU 0 between load and put.
    kvm.load(vcpu, 0).unwrap();
    let mut k = guest_kernel(ttbr, 64, by_name("mix", 3).unwrap(), 100_000);
    run_to_halt(&mut kvm, vcpu, &mut k);
    kvm.put(vcpu).unwrap();

    kvm.machine()
        .run(0, host_work.as_mut(), 100_000, &mut done)
        .unwrap();
    let mut c = kvm.machine().cpu(0).unwrap();
    host.stop(&mut c).unwrap();
    let host_records: Vec<_> = RecordDecoder::new(&host.take_data())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let guest_records: Vec<_> = RecordDecoder::new(k.data())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    // 200 000 host operations at one sample per 257: nothing lost at the switch.
    assert!(
        (770..=790).contains(&host_records.len()),
        "{}",
        host_records.len()
    );
    assert!(
        host_records
            .iter()
            .all(|(_, r)| r.pc.is_some_and(|pc| pc.el == 2)),
        "only host EL2 code"
    );
    assert!(guest_records.len() > 300);
    assert!(
        guest_records
            .iter()
            .all(|(_, r)| r.pc.is_some_and(|pc| pc.el == 0)),
        "only guest EL0 code"
    );
    let unit = kvm.machine().pe(0).unwrap().spe().unwrap().stats();
    assert_eq!(
        unit.written as usize,
        host_records.len() + guest_records.len()
    );
    assert_eq!(unit.discarded, 0);
}

#[test]
fn a_buffer_larger_than_the_advertised_maximum_is_a_size_event_and_pins_nothing() {
    // MaxBuffSize says 64 KiB. A correct driver refuses more...
    let (mut kvm, vm_id, vcpu, ttbr) = vm_with(u64::MAX, 64 * 1024, 32, BUF_IPA);
    let mut k = guest_kernel(ttbr, 32, by_name("mix", 3).unwrap(), 20_000);
    run_to_halt(&mut kvm, vcpu, &mut k);
    assert!(
        k.error().is_some(),
        "the guest driver refuses a buffer over MaxBuffSize"
    );
    // ...a hostile guest programs 128 KiB anyway.
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| {
            env.write(SysReg::TTBR0_EL1, ttbr).unwrap();
            env.isb();
            env.write(SysReg::PMBPTR_EL1, BUF_VA).unwrap();
            env.write(SysReg::PMBLIMITR_EL1, (BUF_VA + 128 * 1024) | 1)
                .unwrap();
            let pmbsr = env.read(SysReg::PMBSR_EL1).unwrap();
            assert!(pmbsr_el1::S.is_set(pmbsr));
            assert_eq!(
                PmbsrEc::from_bits(pmbsr_el1::EC.get(pmbsr)),
                Some(PmbsrEc::BUF)
            );
            assert_eq!(pmbsr_el1::MSS.get(pmbsr), 0x4, "BSC: size");
            assert!(env.virq_pending());
        }),
    );
    assert_eq!(kvm.pinned_bytes(vm_id), Some(0));
}

#[test]
fn a_vcpu_on_a_cpu_without_its_spu_fails_entry_as_cpu_unsupported() {
    // CPU 0 has an SPE unit, CPU 1 does not.
    let mut cfgs = vec![];
    for spe in [true, false] {
        cfgs.push(PeConfig {
            pmu: PmuConfig {
                counters: 6,
                version: PmuVer::V3p5,
                hpmn0: false,
                el2_implemented: true,
            },
            spe: spe.then(SpeConfig::default),
            fgt: true,
            uarch: Default::default(),
        });
    }
    let machine = Machine::new(&MachineConfig {
        pes: cfgs,
        ram_base: 0x8000_0000,
        ram_size: 256 << 20,
    })
    .unwrap();
    let mut kvm = Kvm::new(machine);
    assert_eq!(kvm.spus().len(), 1);
    assert_eq!(kvm.spus()[0].cpus, vec![0]);
    let vcpu = small_vm(
        &mut kvm,
        VcpuFeatures {
            spe: true,
            pmu_v3: false,
        },
    );
    kvm.configure_spe(vcpu, 0, 21, 1 << 20).unwrap();
    let mut p = Once(|_: &mut dyn GuestEnv| {});
    kvm.load(vcpu, 1).unwrap();
    let Exit::FailEntry(why) = kvm.run(vcpu, &mut p) else {
        panic!("entered on a CPU without the SPU")
    };
    assert!(
        why.contains("CPU_UNSUPPORTED") && why.contains("CPU 1"),
        "{why}"
    );
    kvm.put(vcpu).unwrap();
    kvm.load(vcpu, 0).unwrap();
    assert_eq!(kvm.run(vcpu, &mut p), Exit::Halt);
}

/// Timestamps of the records a guest collects with physical timestamps
/// requested, with or without the perfmon capability; and the CPU's cycles.
fn guest_timestamps(perfmon: bool) -> (Vec<u64>, u64) {
    let (mut kvm, vm_id, vcpu, ttbr) = vm(u64::MAX, 64, BUF_IPA);
    kvm.put(vcpu).unwrap();
    kvm.set_counter_offset(vm_id, 1 << 40).unwrap();
    kvm.set_perfmon_capability(vm_id, perfmon).unwrap();
    kvm.load(vcpu, 0).unwrap();
    let cfg = SpeSessionConfig {
        physical_time: true,
        ..session()
    };
    let buf = Buffer {
        va: BUF_VA,
        size: 64 * 4096,
    };
    let mut k = GuestKernel::new(ttbr, cfg, buf, by_name("mix", 4).unwrap(), 20_000);
    run_to_halt(&mut kvm, vcpu, &mut k);
    let ts: Vec<u64> = RecordDecoder::new(k.data())
        .map(|r| r.unwrap().1.timestamp.unwrap())
        .collect();
    let cycles = kvm.machine().pe(0).unwrap().cycles();
    (ts, cycles)
}

#[test]
fn physical_timestamps_need_the_perfmon_capability() {
    let (with, cycles) = guest_timestamps(true);
    assert!(!with.is_empty());
    assert!(with.iter().all(|&t| t <= cycles), "physical counter");
    let (without, cycles) = guest_timestamps(false);
    assert!(!without.is_empty());
    // Forced virtual: the physical count minus the VM's 2^40 offset, which
    // wraps below zero this early in the machine's life.
    assert!(without.iter().all(|&t| t > cycles), "virtual counter");
    assert!(without.iter().all(|&t| t.wrapping_add(1 << 40) <= cycles));
}

#[test]
fn a_host_moved_page_drops_the_pin_and_profiling_resumes_after_repinning() {
    let (mut kvm, vm_id, vcpu, ttbr) = vm(u64::MAX, 16, BUF_IPA);
    let mut k = guest_kernel(ttbr, 16, by_name("mix", 5).unwrap(), 400_000).with_slices(50_000);
    // Run until the guest's buffer is pinned.
    while kvm.pinned_bytes(vm_id) == Some(0) {
        assert_ne!(kvm.run(vcpu, &mut k), Exit::Halt);
    }
    let pinned = kvm.pinned_bytes(vm_id).unwrap();
    assert!(
        pinned >= 20 * 4096,
        "16 buffer pages and 4 table pages: {pinned}"
    );
    kvm.put(vcpu).unwrap();
    // The host moves the first buffer page.
    let old = kvm.guest_pa(vm_id, BUF_IPA).unwrap();
    let new = kvm.host_move_page(vm_id, BUF_IPA).unwrap();
    assert_ne!(old, new);
    assert_eq!(kvm.guest_pa(vm_id, BUF_IPA), Some(new));
    assert_eq!(kvm.pinned_bytes(vm_id), Some(0), "the pin was dropped");
    assert_eq!(kvm.vcpu_stats(vcpu).unwrap().invalidations, 1);
    let mut before = vec![0u8; 4096];
    kvm.machine().mem.read(old, &mut before).unwrap();
    kvm.load(vcpu, 0).unwrap();
    run_to_halt(&mut kvm, vcpu, &mut k);
    // Re-pinned at the next entry; the old frame was never written again.
    let mut after = vec![0u8; 4096];
    kvm.machine().mem.read(old, &mut after).unwrap();
    assert_eq!(before, after);
    assert_eq!(k.error(), None);
    let n = RecordDecoder::new(k.data()).filter(|r| r.is_ok()).count();
    assert!(n > 1400, "profiling went on: {n} records");
}

#[test]
fn a_vcpu_that_never_touches_spe_costs_no_spe_access_at_load_and_put() {
    let (mut kvm, _, vcpu, ttbr) = vm(u64::MAX, 16, BUF_IPA);
    let mut w = by_name("mix", 1).unwrap();
    for cpu in [0, 1, 0, 1, 0] {
        kvm.put(vcpu).unwrap();
        kvm.load(vcpu, cpu).unwrap();
        run_to_halt(
            &mut kvm,
            vcpu,
            &mut Once(|env: &mut dyn GuestEnv| {
                env.execute(w.as_mut(), 5_000);
            }),
        );
    }
    let s = kvm.vcpu_stats(vcpu).unwrap();
    assert_eq!(s.loads, 6);
    assert_eq!(s.spe_load_put.total(), 0, "{:?}", s.spe_load_put);
    assert_eq!(s.spe_switch.total(), 0);
    // The first SPE access makes the state live; from then on every
    // load/put pair switches it (seed 000's sequence).
    let mut k = guest_kernel(ttbr, 16, by_name("mix", 3).unwrap(), 20_000);
    run_to_halt(&mut kvm, vcpu, &mut k);
    assert!(!k.data().is_empty());
    let after_touch = kvm.vcpu_stats(vcpu).unwrap().spe_load_put.total();
    assert!(after_touch > 0);
    kvm.put(vcpu).unwrap();
    kvm.load(vcpu, 1).unwrap();
    let per_pair = kvm.vcpu_stats(vcpu).unwrap().spe_load_put.total() - after_touch;
    assert!((30..=60).contains(&per_pair), "{per_pair}");
}

#[test]
fn a_vcpu_without_spe_cannot_touch_the_hosts_sampling_registers() {
    let mut kvm = Kvm::new(machine());
    let vcpu = small_vm(&mut kvm, VcpuFeatures::default());
    let host_icr = 0x1234;
    {
        let mut c = kvm.machine().cpu(0).unwrap();
        c.write(SysReg::PMSICR_EL1, host_icr).unwrap();
    }
    kvm.load(vcpu, 0).unwrap();
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| {
            assert_eq!(
                env.read(SysReg::PMSICR_EL1),
                Err(hyperprof_arch::AccessFault::Undefined)
            );
            assert_eq!(
                env.write(SysReg::PMSICR_EL1, 7),
                Err(hyperprof_arch::AccessFault::Undefined)
            );
            assert!(env.read(SysReg::PMBPTR_EL1).is_err());
            assert!(env.read(SysReg::PMSIDR_EL1).is_err());
        }),
    );
    kvm.put(vcpu).unwrap();
    let mut c = kvm.machine().cpu(0).unwrap();
    assert_eq!(c.read(SysReg::PMSICR_EL1).unwrap(), host_icr);
}

/// A one-CPU machine without FEAT_FGT and a configured, loaded SPE vCPU
/// with max buffer size `max` (the SPU's own maximum is 0: unlimited).
fn no_fgt_vm(max: u64) -> (Kvm, usize) {
    let pe = PeConfig {
        pmu: PmuConfig {
            counters: 6,
            version: PmuVer::V3p5,
            hpmn0: false,
            el2_implemented: true,
        },
        spe: Some(SpeConfig::default()),
        fgt: false,
        uarch: Default::default(),
    };
    let machine = Machine::new(&MachineConfig {
        pes: vec![pe],
        ram_base: 0x8000_0000,
        ram_size: 256 << 20,
    })
    .unwrap();
    let mut kvm = Kvm::new(machine);
    let vcpu = small_vm(
        &mut kvm,
        VcpuFeatures {
            spe: true,
            pmu_v3: false,
        },
    );
    kvm.configure_spe(vcpu, 0, 21, max).unwrap();
    kvm.load(vcpu, 0).unwrap();
    (kvm, vcpu)
}

#[test]
fn without_fgt_guest_spe_runs_only_when_the_hardware_id_values_are_already_right() {
    // Unlimited, as the hardware says: nothing to trap, the guest runs and
    // reads the hardware's PMBIDR_EL1, which is what it must see.
    let (mut kvm, vcpu) = no_fgt_vm(0);
    let hw = kvm.spus()[0].pmbidr;
    let mut seen = 0;
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| seen = env.read(SysReg::PMBIDR_EL1).unwrap()),
    );
    assert_eq!(seen, hw);
    assert_eq!(
        kvm.vcpu_stats(vcpu).unwrap().trap_exits,
        0,
        "read untrapped"
    );
    // A 1 MiB limit cannot be advertised without trapping: refused, saying why.
    let (mut kvm, vcpu) = no_fgt_vm(1 << 20);
    let Exit::FailEntry(why) = kvm.run(vcpu, &mut Once(|_: &mut dyn GuestEnv| {})) else {
        panic!("ran without being able to advertise MaxBuffSize");
    };
    assert!(
        why.contains("FEAT_FGT") && why.contains("SPE_MAX_BUFFER_SIZE"),
        "{why}"
    );
}

/// The records of `data` without their timestamps (a migrated guest reads
/// another host's counter).
fn untimed(data: &[u8]) -> Vec<hyperprof_spe::Record> {
    RecordDecoder::new(data)
        .map(|r| hyperprof_spe::Record {
            timestamp: None,
            ..r.unwrap().1
        })
        .collect()
}

#[test]
fn a_guest_migrated_mid_session_continues_with_nothing_lost_or_duplicated() {
    let buf = Buffer {
        va: BUF_VA,
        size: 8 * 4096,
    };
    let kernel = |ttbr| {
        GuestKernel::new(ttbr, session(), buf, by_name("mix", 6).unwrap(), 300_000)
            .with_slices(25_000)
    };
    // The reference: the whole session on one host.
    let (mut kvm, _, vcpu, ttbr) = vm(u64::MAX, 8, BUF_IPA);
    let mut reference = kernel(ttbr);
    run_to_halt(&mut kvm, vcpu, &mut reference);

    // The same session, stopped after four slices on host A...
    let (mut a, vm_a, vcpu_a, ttbr) = vm(u64::MAX, 8, BUF_IPA);
    let mut k = kernel(ttbr);
    for _ in 0..4 {
        assert_eq!(a.run(vcpu_a, &mut k), Exit::Yield);
    }
    a.put(vcpu_a).unwrap();
    // No event pending (COLL is the guest's own collisions).
    let pmbsr = a.get_one_reg(vcpu_a, SysReg::PMBSR_EL1).unwrap();
    assert_eq!(pmbsr & !pmbsr_el1::COLL.mask(), 0);
    let regs = a.spe_reg_list(vcpu_a).unwrap();
    let values: Vec<(SysReg, u64)> = regs
        .iter()
        .map(|&r| (r, a.get_one_reg(vcpu_a, r).unwrap()))
        .collect();
    assert!(
        values
            .iter()
            .any(|&(r, v)| r == SysReg::PMBLIMITR_EL1 && v & 1 == 1),
        "buffer enabled"
    );
    let mut ram = vec![0u8; 64 << 20];
    a.read_guest(vm_a, GUEST_RAM_IPA, &mut ram).unwrap();

    // ...restored on host B, on another CPU, and finished there.
    let mut b = Kvm::new(machine());
    let (vm_b, vcpu_b) = spe_vcpu::spe_vcpu(&mut b, 64 << 20, u64::MAX, 1 << 20);
    b.write_guest(vm_b, GUEST_RAM_IPA, &ram).unwrap();
    for &(r, v) in &values {
        b.set_one_reg(vcpu_b, r, v).unwrap();
    }
    b.load(vcpu_b, 1).unwrap();
    assert_eq!(
        b.set_one_reg(vcpu_b, SysReg::PMBPTR_EL1, 0),
        Err(Errno::EBUSY),
        "not while loaded"
    );
    run_to_halt(&mut b, vcpu_b, &mut k);
    assert_eq!(k.error(), None);
    assert!(
        b.pinned_bytes(vm_b).unwrap() == 0,
        "unpinned when the guest stopped"
    );
    let got = untimed(k.data());
    let want = untimed(reference.data());
    assert!(want.len() > 1000);
    assert_eq!(got.len(), want.len(), "records lost or duplicated");
    assert_eq!(got, want);
    assert_eq!(b.get_one_reg(vcpu_b, SysReg::PMSCR_EL2), Err(Errno::ENOENT));
}

/// Seed 000: with a VM that has no SPE, a VHE host keeps its session; its
/// samples stop when the CPU enters the guest and resume after, with
/// nothing of the host's lost and nothing of the guest's recorded.
#[test]
fn a_vhe_host_session_pauses_for_a_guest_without_spe_and_resumes_after() {
    let mut kvm = Kvm::new(machine());
    let vcpu = small_vm(&mut kvm, VcpuFeatures::default());
    let mut host = hyperprof_guest::host::start_session(
        kvm.machine(),
        0,
        SysReg::TTBR0_EL2,
        0x0000_7000_0000_0000,
        64 * 4096,
        session(),
    )
    .unwrap();
    let mut host_work = by_name("kernel-array-sum", 9).unwrap();
    let mut done = 0;
    kvm.machine()
        .run(0, host_work.as_mut(), 100_000, &mut done)
        .unwrap();
    let before = kvm.machine().pe(0).unwrap().spe().unwrap().stats().sampled;
    kvm.load(vcpu, 0).unwrap();
    let mut w = by_name("mix", 1).unwrap();
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| {
            env.to_el0();
            env.execute(w.as_mut(), 100_000);
            env.to_el1();
            env.execute(w.as_mut(), 50_000);
        }),
    );
    kvm.put(vcpu).unwrap();
    let during = kvm.machine().pe(0).unwrap().spe().unwrap().stats().sampled - before;
    assert_eq!(during, 0, "no sample of guest operations");
    assert_eq!(
        kvm.vcpu_stats(vcpu).unwrap().spe_load_put.total(),
        0,
        "no SPE switching"
    );
    kvm.machine()
        .run(0, host_work.as_mut(), 100_000, &mut done)
        .unwrap();
    let mut c = kvm.machine().cpu(0).unwrap();
    host.stop(&mut c).unwrap();
    let recs: Vec<_> = RecordDecoder::new(&host.take_data())
        .collect::<Result<_, _>>()
        .unwrap();
    assert!((770..=790).contains(&recs.len()), "{}", recs.len());
    assert!(recs.iter().all(|(_, r)| r.pc.is_some_and(|pc| pc.el == 2)));
}

#[test]
fn one_cpu_holds_one_loaded_vcpu_at_a_time() {
    let (mut kvm, vm_id, vcpu, _) = vm(u64::MAX, 4, BUF_IPA);
    let other = kvm.create_vcpu(vm_id, VcpuFeatures::default());
    // The VM has run? Not yet: a second vCPU can still be created.
    let other = other.unwrap();
    let err = kvm.load(other, 0).unwrap_err();
    assert!(err.contains("already has vCPU"), "{err}");
    kvm.put(vcpu).unwrap();
    kvm.load(other, 0).unwrap();
}

#[test]
fn id_aa64dfr0_advertises_the_vms_pmsver_and_hides_spe_from_vcpus_without_it() {
    use hyperprof_arch::id_aa64dfr0_el1 as id;
    let (mut kvm, vm_id, vcpu, _) = vm(u64::MAX, 4, BUF_IPA);
    let hw = {
        let mut c = kvm.machine().cpu(1).unwrap();
        c.read(SysReg::ID_AA64DFR0_EL1).unwrap()
    };
    let mut seen = 0;
    run_to_halt(
        &mut kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| seen = env.read(SysReg::ID_AA64DFR0_EL1).unwrap()),
    );
    // The vCPU has no PMU feature: no PMU either.
    assert_eq!(seen, id::PMUVer.set(hw, 0), "the SPU's own level");
    assert_ne!(id::PMSVer.get(seen), 0);
    // A vCPU of the same VM without the SPE feature sees no SPE.
    kvm.put(vcpu).unwrap();
    let plain = kvm.create_vcpu(vm_id, VcpuFeatures::default());
    assert_eq!(
        plain,
        Err(Errno::EBUSY),
        "no vCPU is added after the VM ran"
    );
    let mut kvm2 = Kvm::new(machine());
    let plain = small_vm(&mut kvm2, VcpuFeatures::default());
    kvm2.load(plain, 0).unwrap();
    run_to_halt(
        &mut kvm2,
        plain,
        &mut Once(|env: &mut dyn GuestEnv| seen = env.read(SysReg::ID_AA64DFR0_EL1).unwrap()),
    );
    assert_eq!(id::PMSVer.get(seen), 0);
    let others = !(id::PMSVer.mask() | id::PMUVer.mask());
    assert_eq!(
        seen & others,
        hw & others,
        "everything else as the hardware says"
    );
    assert_eq!(id::PMUVer.get(seen), 0, "no PMU feature, no PMU");
}

#[test]
fn a_guest_in_discard_mode_samples_but_writes_nothing() {
    let (mut kvm, _, vcpu, ttbr) = vm(u64::MAX, 4, BUF_IPA);
    let cfg = SpeSessionConfig {
        discard: true,
        ..session()
    };
    let buf = Buffer {
        va: BUF_VA,
        size: 4 * 4096,
    };
    let mut k = GuestKernel::new(ttbr, cfg, buf, by_name("mix", 2).unwrap(), 100_000);
    run_to_halt(&mut kvm, vcpu, &mut k);
    assert_eq!(k.error(), None);
    assert!(k.data().is_empty());
    let g = kvm.guest_spe(vcpu).unwrap();
    assert_eq!(
        g.buffer.pmbptr_el1, BUF_VA,
        "PMBPTR does not move in DISCARD mode"
    );
    assert_eq!(
        kvm.vcpu_stats(vcpu).unwrap().virqs,
        0,
        "no buffer-full event"
    );
    let unit = kvm.machine().pe(0).unwrap().spe().unwrap().stats();
    assert!(unit.discarded > 300, "{unit:?}");
    assert_eq!(unit.written, 0);
}

#[test]
fn destroying_a_vm_puts_its_vcpus_and_releases_every_pin() {
    let (mut kvm, vm_id, vcpu, ttbr) = vm(u64::MAX, 16, BUF_IPA);
    let mut k = guest_kernel(ttbr, 16, by_name("mix", 5).unwrap(), 200_000).with_slices(20_000);
    while kvm.pinned_bytes(vm_id) == Some(0) {
        assert_eq!(kvm.run(vcpu, &mut k), Exit::Yield);
    }
    assert!(kvm.pinned_bytes(vm_id).unwrap() > 0);
    kvm.destroy_vm(vm_id).unwrap();
    assert_eq!(kvm.pinned_bytes(vm_id), Some(0));
    assert!(matches!(kvm.run(vcpu, &mut k), Exit::FailEntry(_)));
    assert_eq!(kvm.destroy_vm(vm_id), Err(Errno::ENODEV));
    // CPU 0 is free again: another VM's vCPU loads there.
    let other = small_vm(&mut kvm, VcpuFeatures::default());
    kvm.load(other, 0).unwrap();
}
