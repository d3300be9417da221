//! The per-VM pinning designs at the KVM interface: the default is RFC v6's
//! pin on enable, the design is fixed once the VM ran, pin-all pins guest
//! RAM before the first run (and its pages cannot move), the cache keeps a
//! disabled buffer's pin and drops it on an MMU-notifier event, and every
//! design releases everything at teardown.

use hyperprof_guest::drivers::spe::{Buffer, SpeSessionConfig};
use hyperprof_guest::guest::{GuestKernel, GuestProgram};
use hyperprof_kvm::uapi::{Errno, VcpuFeatures};
use hyperprof_kvm::vm::{Exit, Kvm, PinPolicy, VmConfig, GUEST_RAM_IPA};
use hyperprof_sim::machine::{Machine, MachineConfig};
use hyperprof_sim::pe::PeConfig;
use hyperprof_sim::pmu::PmuConfig;
use hyperprof_sim::spe::SpeConfig;
use hyperprof_sim::workload::by_name;

fn machine() -> Machine {
    let pe = PeConfig {
        pmu: PmuConfig {
            counters: 6,
            version: hyperprof_arch::PmuVer::V3p5,
            hpmn0: false,
            el2_implemented: true,
        },
        spe: Some(SpeConfig::default()),
        fgt: true,
        uarch: Default::default(),
    };
    Machine::new(&MachineConfig {
        pes: vec![pe; 1],
        ram_base: 0x8000_0000,
        ram_size: 256 << 20,
    })
    .unwrap()
}

const BUF_VA: u64 = 0x0000_0040_0000_0000;
const BUF_IPA: u64 = GUEST_RAM_IPA + (16 << 20);
const RAM: u64 = 32 << 20;

fn vm(policy: Option<PinPolicy>, memlock: u64) -> (Kvm, usize, usize, GuestKernel) {
    let mut kvm = Kvm::new(machine());
    let vm = kvm
        .create_vm(VmConfig {
            ram_bytes: RAM,
            memlock_limit: memlock,
        })
        .unwrap();
    if let Some(p) = policy {
        kvm.set_pin_policy(vm, p).unwrap();
    }
    let vcpu = kvm
        .create_vcpu(
            vm,
            VcpuFeatures {
                spe: true,
                pmu_v3: false,
            },
        )
        .unwrap();
    kvm.configure_spe(vcpu, 0, 21, 1 << 20).unwrap();
    let ttbr = kvm.guest_map(vm, BUF_VA, BUF_IPA, 16 * 4096).unwrap();
    kvm.load(vcpu, 0).unwrap();
    let session = SpeSessionConfig {
        interval: 256,
        ..SpeSessionConfig::default()
    };
    let k = GuestKernel::new(
        ttbr,
        session,
        Buffer {
            va: BUF_VA,
            size: 16 * 4096,
        },
        by_name("mix", 3).unwrap(),
        200_000,
    );
    (kvm, vm, vcpu, k)
}

fn run_to_halt(kvm: &mut Kvm, vcpu: usize, p: &mut dyn GuestProgram) -> Vec<Exit> {
    let mut exits = Vec::new();
    for _ in 0..1000 {
        match kvm.run(vcpu, p) {
            Exit::Halt => return exits,
            e => exits.push(e),
        }
    }
    panic!("the guest never halted: {exits:?}");
}

#[test]
fn the_default_is_pin_on_enable_and_the_design_is_fixed_once_the_vm_ran() {
    let (mut kvm, vm, vcpu, mut k) = vm(None, u64::MAX);
    assert_eq!(kvm.pin_policy(vm), Some(PinPolicy::OnEnable));
    assert_eq!(run_to_halt(&mut kvm, vcpu, &mut k), vec![]);
    assert_eq!(kvm.set_pin_policy(vm, PinPolicy::Cache), Err(Errno::EBUSY));
    assert_eq!(kvm.set_pin_policy(99, PinPolicy::Cache), Err(Errno::ENODEV));
    let s = kvm.pin_stats(vm).unwrap();
    // One enable (start) and one disable (stop): the buffer and its tables.
    assert_eq!((s.pin_ops, s.unpin_ops), (1, 1));
    assert!(s.pages_pinned > 16 && s.pages_pinned <= 20, "{s:?}");
    assert_eq!(s.pages_pinned, s.pages_unpinned);
    assert_eq!(kvm.pinned_bytes(vm), Some(0));
}

#[test]
fn pin_all_pins_guest_ram_before_the_first_run_and_its_pages_do_not_move() {
    // A limit below guest RAM: KVM_RUN stops with an Rlimit exit at once.
    let (mut kvm, vm, vcpu, mut k) = vm(Some(PinPolicy::PinAll), 4 << 20);
    match kvm.run(vcpu, &mut k) {
        Exit::Rlimit { needed, used, .. } => assert_eq!((needed, used), (RAM, 0)),
        e => panic!("{e:?}"),
    }
    assert_eq!(kvm.pinned_bytes(vm), Some(0));
    kvm.set_memlock_limit(vm, RAM).unwrap();
    assert_eq!(run_to_halt(&mut kvm, vcpu, &mut k), vec![]);
    let s = kvm.pin_stats(vm).unwrap();
    assert_eq!(
        (s.pin_ops, s.memlock_failures, s.blackout_windows),
        (1, 1, 0)
    );
    assert_eq!(kvm.pinned_bytes(vm), Some(RAM), "kept while the VM lives");
    kvm.put(vcpu).unwrap();
    assert_eq!(kvm.host_move_page(vm, BUF_IPA), Err(Errno::EBUSY));
    kvm.destroy_vm(vm).unwrap();
    assert_eq!(kvm.pinned_bytes(vm), Some(0));
    assert_eq!(kvm.pin_stats(vm).unwrap().pages_unpinned, RAM / 4096);
}

#[test]
fn the_cache_keeps_a_disabled_buffer_until_the_host_moves_its_page() {
    let (mut kvm, vm, vcpu, mut k) = vm(Some(PinPolicy::Cache), u64::MAX);
    assert_eq!(run_to_halt(&mut kvm, vcpu, &mut k), vec![]);
    let s = kvm.pin_stats(vm).unwrap();
    assert_eq!((s.pin_ops, s.unpin_ops), (1, 0), "the disable kept the pin");
    let kept = kvm.pin_cache_bytes(vm).unwrap();
    assert!(kept > 0);
    assert_eq!(kvm.pinned_bytes(vm), Some(kept));
    kvm.put(vcpu).unwrap();
    // An MMU-notifier event on a kept page drops the kept pin.
    kvm.host_move_page(vm, BUF_IPA).unwrap();
    assert_eq!(kvm.pin_cache_bytes(vm), Some(0));
    assert_eq!(kvm.pinned_bytes(vm), Some(0));
    let s = kvm.pin_stats(vm).unwrap();
    assert_eq!(s.unpin_ops, 1);
    assert_eq!(s.pages_pinned, s.pages_unpinned);
    kvm.destroy_vm(vm).unwrap();
    assert_eq!(kvm.pinned_bytes(vm), Some(0));
}
