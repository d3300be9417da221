//! The SPE unit caches its buffer translations as a TLB does, tagged with
//! the context of the walk (owning regime, VMID, ASID) and flushed only by
//! TLB maintenance ([`hyperprof_sim::buffer_tlb`]). The world switch must
//! never let the unit walk while its buffer is enabled under a mix of
//! registers that belongs to no context: the entry left behind is the
//! owner's of the tag the next time that context runs (seed 000: "Disable
//! the buffer, to avoid the wrong translation table entries being cached
//! while KVM restores the guest context"; "Restore the host profiling
//! session after the owning exception level is restored").
//!
//! Each test gives two contexts the same buffer virtual address (kernels
//! choose their own: Linux's linear map and vmalloc addresses coincide
//! between host and guest) with different translations, and checks that
//! every guest record lands where the guest's own tables put it.

use hyperprof_arch::{pmbsr_el1, pmscr_el1, Cpu, ExceptionLevel, SysReg};
use hyperprof_guest::drivers::spe::{SpeDriver, SpeSessionConfig};
use hyperprof_guest::guest::GuestEnv;
use hyperprof_kvm::vm::{Kvm, GUEST_RAM_IPA};
use hyperprof_sim::machine::Machine;
use hyperprof_sim::memory::PAGE_SIZE;
use hyperprof_sim::spe::SpeConfig;
use hyperprof_sim::workload::by_name;
use hyperprof_spe::RecordDecoder;
mod spe_vcpu;
use spe_vcpu::{run_to_halt, Once};

/// The host's buffer address, and in some tests the guest's.
const SHARED_VA: u64 = 0x0000_7000_0000_0000;
/// Where the guest's stage 1 maps its buffer.
const BUF_IPA: u64 = GUEST_RAM_IPA + (16 << 20);
const PAGES: u64 = 64;

fn machine() -> Machine {
    spe_vcpu::spe_machine(SpeConfig::default(), 1)
}

fn host_session() -> SpeSessionConfig {
    SpeSessionConfig {
        interval: 256,
        jitter: false,
        ..SpeSessionConfig::default()
    }
}

/// The guest's kernel installs its tables and starts a session into a
/// buffer of [`PAGES`] pages at `va`, sampling EL1 every 256 operations.
fn guest_starts_profiling(env: &mut dyn GuestEnv, ttbr: u64, va: u64) {
    env.write(SysReg::TTBR0_EL1, ttbr).unwrap();
    env.write(SysReg::PMSIRR_EL1, 0x100).unwrap();
    env.write(SysReg::PMSCR_EL1, pmscr_el1::E1SPE.mask())
        .unwrap();
    env.write(SysReg::PMBPTR_EL1, va).unwrap();
    env.write(SysReg::PMBLIMITR_EL1, (va + PAGES * PAGE_SIZE) | 1)
        .unwrap();
    env.isb();
}

/// Load, a run in which the guest's kernel starts its session
/// ([`guest_starts_profiling`]), put.
fn start_guest_session(kvm: &mut Kvm, vcpu: usize, ttbr: u64, va: u64) {
    kvm.load(vcpu, 0).unwrap();
    run_to_halt(
        kvm,
        vcpu,
        &mut Once(|env: &mut dyn GuestEnv| guest_starts_profiling(env, ttbr, va)),
    );
    kvm.put(vcpu).unwrap();
}

/// The host's session on CPU 0 stops with no buffer event and nothing in
/// its buffer (the host ran nothing with sampling on: any record there is
/// a guest's).
fn host_buffer_stays_empty(kvm: &mut Kvm, mut host: SpeDriver) {
    let mut c = kvm.machine().cpu(0).unwrap();
    let pmbsr = c.read(SysReg::PMBSR_EL1).unwrap();
    assert!(!pmbsr_el1::S.is_set(pmbsr), "host PMBSR_EL1 {pmbsr:#x}");
    host.stop(&mut c).unwrap();
    assert!(host.take_data().is_empty(), "records in the host's buffer");
}

/// `rounds` of load, a guest run of 3,000 operations at EL1, put.
fn guest_rounds(kvm: &mut Kvm, vcpu: usize, rounds: usize) {
    let mut work = by_name("mix", 7).unwrap();
    for _ in 0..rounds {
        kvm.load(vcpu, 0).unwrap();
        run_to_halt(
            kvm,
            vcpu,
            &mut Once(|env: &mut dyn GuestEnv| {
                env.execute(work.as_mut(), 3_000);
            }),
        );
        kvm.put(vcpu).unwrap();
    }
}

/// The guest's buffer after its session: no buffer management event, and
/// the bytes from `va` to its pointer are records, at IPA `ipa` (where
/// the guest's stage 1 maps `va`). Returns the number of records.
fn guest_records_at(kvm: &mut Kvm, vm: usize, vcpu: usize, va: u64, ipa: u64) -> usize {
    let b = kvm.guest_spe(vcpu).unwrap().buffer;
    assert!(
        !pmbsr_el1::S.is_set(b.pmbsr_el1),
        "the guest's buffer took an event: PMBSR_EL1 {:#x}",
        b.pmbsr_el1
    );
    let len = b.pmbptr_el1 - va;
    assert!(
        len > 0 && len < PAGES * PAGE_SIZE,
        "pointer {:#x}",
        b.pmbptr_el1
    );
    let mut data = vec![0u8; len as usize];
    kvm.read_guest(vm, ipa, &mut data).unwrap();
    let recs = RecordDecoder::new(&data)
        .collect::<Result<Vec<_>, _>>()
        .unwrap_or_else(|e| panic!("the guest's buffer at IPA {ipa:#x} is not records: {e:?}"));
    assert!(recs.len() > 50, "{} records", recs.len());
    recs.len()
}

/// VHE: put gives the buffer back to EL2 (MDCR_EL2.E2PB, then an ISB)
/// before it enables the host's buffer. Enabled first, the host's buffer
/// is owned by EL1 for a moment, with the host's HCR_EL2 (stage 2 off) and
/// the guest's VMID and TTBR0_EL1 still in the registers: a walk of the
/// host's pointer then caches a translation without stage 2 (the guest's
/// IPA taken for a physical address), tagged as the guest's, and the
/// guest's next records at that address go there instead of to its RAM.
/// The guest runs with stage 1 off (its TTBR0_EL1 zero), so its buffer's
/// address is an IPA; the host's buffer starts at the guest buffer's
/// second page, which the guest's pointer reaches after a few rounds (its
/// first page it walks itself before any put, so no put walk is needed
/// for it).
#[test]
fn vhe_put_resumes_the_host_session_only_once_el2_owns_the_buffer() {
    let mut kvm = Kvm::new(machine());
    let (vm, vcpu) = spe_vcpu::spe_vcpu(&mut kvm, 64 << 20, u64::MAX, 1 << 20);
    // The host profiles EL2 into its own buffer; it runs nothing here, so
    // its pointer stays at the buffer's start.
    let host_va = BUF_IPA + PAGE_SIZE;
    let host = hyperprof_guest::host::start_session(
        kvm.machine(),
        0,
        SysReg::TTBR0_EL2,
        host_va,
        PAGES * PAGE_SIZE,
        host_session(),
    )
    .unwrap();
    start_guest_session(&mut kvm, vcpu, 0, BUF_IPA);
    guest_rounds(&mut kvm, vcpu, 16);
    let ptr = kvm.guest_spe(vcpu).unwrap().buffer.pmbptr_el1;
    assert!(
        ptr > host_va,
        "the guest's pointer {ptr:#x} reached the host's page"
    );
    guest_records_at(&mut kvm, vm, vcpu, BUF_IPA, BUF_IPA);
    let tlb = *kvm.machine().pe(0).unwrap().buffer_tlb().stats();
    assert!(tlb.hits > 0 && tlb.fills > 0, "{tlb:?}");
    host_buffer_stays_empty(&mut kvm, host);
}

/// nVHE: exit synchronizes the disable of the guest's buffer (ISB) before
/// it installs the host's EL1 context. Unsynchronized, the buffer is still
/// enabled when the host's TTBR0_EL1 is written, so the unit may walk the
/// guest's pointer through the host's stage 1 under the guest's VMID and
/// stage 2; the guest's next records then follow the host's tables.
#[test]
fn nvhe_exit_disables_the_guests_buffer_before_the_host_context_returns() {
    let mut kvm = Kvm::new_nvhe(machine());
    let (vm, vcpu) = spe_vcpu::spe_vcpu(&mut kvm, 64 << 20, u64::MAX, 1 << 20);
    // The guest's buffer at a virtual address inside its own IPA range,
    // mapped elsewhere: the host (stage 1 off) would put it at the IPA of
    // the same number.
    let va = GUEST_RAM_IPA + (32 << 20);
    let ttbr = kvm.guest_map(vm, va, BUF_IPA, PAGES * PAGE_SIZE).unwrap();
    assert_eq!(
        kvm.machine().pe(0).unwrap().el(),
        ExceptionLevel::EL1,
        "an nVHE host runs at EL1"
    );
    start_guest_session(&mut kvm, vcpu, ttbr, va);
    guest_rounds(&mut kvm, vcpu, 6);
    guest_records_at(&mut kvm, vm, vcpu, va, BUF_IPA);
    let mut stray = vec![0u8; (PAGES * PAGE_SIZE) as usize];
    kvm.read_guest(vm, va, &mut stray).unwrap();
    assert!(
        stray.iter().all(|&b| b == 0),
        "guest records at IPA {va:#x}, through the host's tables"
    );
}

/// nVHE: the host runs with its own VMID (0) in VTTBR_EL2. Left with the
/// guest's, the host's EL1&0 walks are tagged as the guest's, and a guest
/// whose buffer has the host buffer's address writes into the host's.
#[test]
fn nvhe_host_walks_are_never_tagged_with_a_guests_vmid() {
    let mut kvm = Kvm::new_nvhe(machine());
    let (vm, vcpu) = spe_vcpu::spe_vcpu(&mut kvm, 64 << 20, u64::MAX, 1 << 20);
    let ttbr = kvm
        .guest_map(vm, SHARED_VA, BUF_IPA, PAGES * PAGE_SIZE)
        .unwrap();
    let host = hyperprof_guest::host::start_session(
        kvm.machine(),
        0,
        SysReg::TTBR0_EL1,
        SHARED_VA,
        PAGES * PAGE_SIZE,
        host_session(),
    )
    .unwrap();
    start_guest_session(&mut kvm, vcpu, ttbr, SHARED_VA);
    guest_rounds(&mut kvm, vcpu, 6);
    guest_records_at(&mut kvm, vm, vcpu, SHARED_VA, BUF_IPA);
    host_buffer_stays_empty(&mut kvm, host);
}

/// A stage-2 change (the host moving the page behind the guest's buffer)
/// invalidates the unit's cached walk, as KVM's TLB flush after an unmap
/// does: the guest's records follow the page to its new frame.
#[test]
fn a_moved_buffer_page_is_not_written_through_a_stale_entry() {
    let mut kvm = Kvm::new(machine());
    let (vm, vcpu) = spe_vcpu::spe_vcpu(&mut kvm, 64 << 20, u64::MAX, 1 << 20);
    let ttbr = kvm
        .guest_map(vm, SHARED_VA, BUF_IPA, PAGES * PAGE_SIZE)
        .unwrap();
    start_guest_session(&mut kvm, vcpu, ttbr, SHARED_VA);
    guest_rounds(&mut kvm, vcpu, 2);
    let ptr = kvm.guest_spe(vcpu).unwrap().buffer.pmbptr_el1;
    let page_ipa = BUF_IPA + ((ptr - SHARED_VA) & !(PAGE_SIZE - 1));
    let old = kvm.guest_pa(vm, page_ipa).unwrap();
    let new = kvm.host_move_page(vm, page_ipa).unwrap();
    assert_ne!(old, new);
    let mut old_bytes = vec![0u8; PAGE_SIZE as usize];
    kvm.machine().mem.read(old, &mut old_bytes).unwrap();
    guest_rounds(&mut kvm, vcpu, 4);
    guest_records_at(&mut kvm, vm, vcpu, SHARED_VA, BUF_IPA);
    let mut after = vec![0u8; PAGE_SIZE as usize];
    kvm.machine().mem.read(old, &mut after).unwrap();
    assert_eq!(after, old_bytes, "records written to the page's old frame");
}
