//! The guest's Generic Timer at the hypervisor's level: the VM's counter
//! offset, the state across put and load onto another CPU (migration), the
//! deadline a put vCPU reports, the hardware timer left off for the host,
//! and what the switch costs, on VHE and nVHE hosts.

#[allow(dead_code)] // the SPE helpers serve the other tests
mod common;

use hyperprof_arch::{cnt_ctl, AccessFault, SysReg};
use hyperprof_guest::guest::{GuestEnv, GuestProgram, GuestStep};
use hyperprof_kvm::uapi::VcpuFeatures;
use hyperprof_kvm::vm::{Exit, Kvm, VmConfig};
use hyperprof_sim::workload::by_name;

/// A guest program made of one closure, run once.
struct Once<F>(F);

impl<F: FnMut(&mut dyn GuestEnv)> GuestProgram for Once<F> {
    fn run(&mut self, env: &mut dyn GuestEnv) -> GuestStep {
        (self.0)(env);
        GuestStep::Done
    }
}

fn run(kvm: &mut Kvm, vcpu: usize, f: impl FnMut(&mut dyn GuestEnv)) {
    assert_eq!(kvm.run(vcpu, &mut Once(f)), Exit::Halt);
}

/// A hypervisor on the two-CPU machine (`nvhe` or VHE) with one VM whose
/// counter offset is `offset`, and its vCPU loaded on CPU 0.
fn setup(nvhe: bool, offset: u64) -> (Kvm, usize) {
    let m = common::machine();
    let mut kvm = if nvhe { Kvm::new_nvhe(m) } else { Kvm::new(m) };
    let vm = kvm
        .create_vm(VmConfig {
            ram_bytes: 16 << 20,
            memlock_limit: 64 << 20,
        })
        .unwrap();
    let vcpu = kvm.create_vcpu(vm, VcpuFeatures::default()).unwrap();
    kvm.set_counter_offset(vm, offset).unwrap();
    kvm.load(vcpu, 0).unwrap();
    (kvm, vcpu)
}

/// Some guest work, so the clock moves.
fn work(env: &mut dyn GuestEnv, ops: u64) {
    let mut w = by_name("mix", 1).unwrap();
    env.execute(w.as_mut(), ops);
}

fn read(env: &mut dyn GuestEnv, reg: SysReg) -> u64 {
    env.read(reg).unwrap_or_else(|e| panic!("{reg}: {e:?}"))
}

fn write(env: &mut dyn GuestEnv, reg: SysReg, val: u64) {
    env.write(reg, val)
        .unwrap_or_else(|e| panic!("{reg}: {e:?}"))
}

const OFFSET: u64 = 1 << 40;

#[test]
fn the_guest_counts_the_machine_clock_minus_the_vm_offset() {
    for nvhe in [false, true] {
        let (mut kvm, vcpu) = setup(nvhe, OFFSET);
        let before = kvm.now();
        let (mut v, mut p) = (0, 0);
        run(&mut kvm, vcpu, |env| {
            work(env, 10_000);
            v = read(env, SysReg::CNTVCT_EL0);
            p = read(env, SysReg::CNTPCT_EL0);
        });
        let after = kvm.now();
        // The offset wraps the virtual count below zero this early.
        let v_phys = v.wrapping_add(OFFSET);
        assert!(before < v_phys && v_phys <= after, "nvhe {nvhe}: {v:#x}");
        // The physical counter is trapped and emulated with the offset too.
        let p_phys = p.wrapping_add(OFFSET);
        assert!(v_phys <= p_phys && p_phys <= after, "nvhe {nvhe}: {p:#x}");
        assert_eq!(kvm.vcpu_stats(vcpu).unwrap().trap_exits, 1, "nvhe {nvhe}");
    }
}

#[test]
fn without_an_offset_the_physical_counter_is_not_trapped() {
    for nvhe in [false, true] {
        let (mut kvm, vcpu) = setup(nvhe, 0);
        let mut p = 0;
        run(&mut kvm, vcpu, |env| {
            work(env, 1_000);
            p = read(env, SysReg::CNTPCT_EL0);
        });
        assert!(p > 0 && p <= kvm.now());
        assert_eq!(kvm.vcpu_stats(vcpu).unwrap().trap_exits, 0, "nvhe {nvhe}");
    }
}

#[test]
fn the_virtual_timer_moves_with_the_vcpu_to_another_cpu() {
    for nvhe in [false, true] {
        let (mut kvm, vcpu) = setup(nvhe, OFFSET);
        let ctl = cnt_ctl::ENABLE.mask() | cnt_ctl::IMASK.mask();
        let mut cval = 0;
        run(&mut kvm, vcpu, |env| {
            cval = read(env, SysReg::CNTVCT_EL0) + 5_000_000;
            write(env, SysReg::CNTV_CVAL_EL0, cval);
            write(env, SysReg::CNTV_CTL_EL0, ctl);
        });
        kvm.put(vcpu).unwrap();
        let saved = kvm.vcpu_timer(vcpu).unwrap().vtimer;
        assert_eq!((saved.ctl, saved.cval), (ctl, cval), "nvhe {nvhe}");
        // The host never sees the guest's timer: CPU 0's is off.
        let pe = kvm.machine().pe(0).unwrap();
        assert_eq!(pe.vtimer().ctl, 0, "nvhe {nvhe}");
        assert!(!pe.irq_lines().vtimer);
        kvm.load(vcpu, 1).unwrap();
        let (mut ctl_read, mut cval_read, mut tval, mut now) = (0, 0, 0, 0);
        run(&mut kvm, vcpu, |env| {
            ctl_read = read(env, SysReg::CNTV_CTL_EL0);
            cval_read = read(env, SysReg::CNTV_CVAL_EL0);
            tval = read(env, SysReg::CNTV_TVAL_EL0);
            now = read(env, SysReg::CNTVCT_EL0);
        });
        assert_eq!(ctl_read, ctl, "nvhe {nvhe}: not yet ISTATUS");
        assert_eq!(cval_read, cval, "nvhe {nvhe}");
        assert!(tval as u32 as i32 > 0 && now + tval <= cval, "nvhe {nvhe}");
    }
}

#[test]
fn a_put_vcpu_reports_the_deadline_of_its_earliest_unmasked_timer() {
    for nvhe in [false, true] {
        let (mut kvm, vcpu) = setup(nvhe, OFFSET);
        let mut vcval = 0;
        run(&mut kvm, vcpu, |env| {
            vcval = read(env, SysReg::CNTVCT_EL0) + 3_000_000;
            write(env, SysReg::CNTV_CVAL_EL0, vcval);
            write(env, SysReg::CNTV_CTL_EL0, cnt_ctl::ENABLE.mask());
        });
        kvm.put(vcpu).unwrap();
        let at = vcval.wrapping_add(OFFSET);
        assert_eq!(kvm.timer_deadline(vcpu), Some(at), "nvhe {nvhe}");
        assert!(!kvm.timer_pending(vcpu));
        // The emulated physical timer, sooner: it is the deadline now.
        kvm.load(vcpu, 1).unwrap();
        let mut pcval = 0;
        run(&mut kvm, vcpu, |env| {
            pcval = read(env, SysReg::CNTPCT_EL0) + 1_000_000;
            write(env, SysReg::CNTP_CVAL_EL0, pcval);
            write(env, SysReg::CNTP_CTL_EL0, cnt_ctl::ENABLE.mask());
        });
        kvm.put(vcpu).unwrap();
        assert_eq!(
            kvm.timer_deadline(vcpu),
            Some(pcval.wrapping_add(OFFSET)),
            "nvhe {nvhe}"
        );
        // Past it (the machine idles to it), the interrupt is pending.
        let skip = pcval.wrapping_add(OFFSET) - kvm.now();
        kvm.machine().advance_clock(skip);
        assert!(kvm.timer_pending(vcpu));
        // Masked timers have no deadline.
        kvm.load(vcpu, 0).unwrap();
        run(&mut kvm, vcpu, |env| {
            write(env, SysReg::CNTP_CTL_EL0, cnt_ctl::IMASK.mask());
            write(
                env,
                SysReg::CNTV_CTL_EL0,
                cnt_ctl::ENABLE.mask() | cnt_ctl::IMASK.mask(),
            );
        });
        kvm.put(vcpu).unwrap();
        assert_eq!(kvm.timer_deadline(vcpu), None, "nvhe {nvhe}");
    }
}

#[test]
fn istatus_and_tval_follow_the_clock() {
    let (mut kvm, vcpu) = setup(false, 0);
    let (mut before, mut after, mut tval0, mut tval1) = (0, 0, 0, 0);
    run(&mut kvm, vcpu, |env| {
        let cval = read(env, SysReg::CNTVCT_EL0) + 20_000;
        write(env, SysReg::CNTV_CVAL_EL0, cval);
        write(
            env,
            SysReg::CNTV_CTL_EL0,
            cnt_ctl::ENABLE.mask() | cnt_ctl::IMASK.mask(),
        );
        before = read(env, SysReg::CNTV_CTL_EL0);
        tval0 = read(env, SysReg::CNTV_TVAL_EL0);
        work(env, 20_000);
        after = read(env, SysReg::CNTV_CTL_EL0);
        tval1 = read(env, SysReg::CNTV_TVAL_EL0);
    });
    assert!(!cnt_ctl::ISTATUS.is_set(before));
    assert!(cnt_ctl::ISTATUS.is_set(after));
    assert!(tval0 as u32 as i32 > 0 && (tval1 as u32 as i32) < 0);
}

#[test]
fn el2_timer_registers_are_undefined_to_a_guest() {
    let (mut kvm, vcpu) = setup(false, 0);
    let mut r = Vec::new();
    run(&mut kvm, vcpu, |env| {
        r.push(env.read(SysReg::CNTVOFF_EL2));
        r.push(env.read(SysReg::CNTHCTL_EL2));
        r.push(env.read(SysReg::CNTV_CTL_EL02));
        r.push(env.write(SysReg::CNTFRQ_EL0, 1).map(|_| 0));
        r.push(env.write(SysReg::CNTVCT_EL0, 1).map(|_| 0));
    });
    assert!(r.iter().all(|x| *x == Err(AccessFault::Undefined)), "{r:?}");
}

/// The figure: timer register accesses per load and put (VHE: CNTVOFF,
/// CNTHCTL, CVAL, CTL at load; CTL and CVAL read, CTL and CNTVOFF written
/// at put), per entry and exit on nVHE (CNTHCTL, CVAL, CTL at entry; CTL
/// and CVAL read, CTL and CNTHCTL written at exit).
#[test]
fn the_timer_switch_costs_eight_accesses_per_load_and_put_and_seven_per_nvhe_round_trip() {
    let (mut kvm, vcpu) = setup(false, 0);
    for cpu in [1, 0, 1] {
        run(&mut kvm, vcpu, |env| work(env, 100));
        kvm.put(vcpu).unwrap();
        kvm.load(vcpu, cpu).unwrap();
    }
    kvm.put(vcpu).unwrap();
    let s = kvm.vcpu_stats(vcpu).unwrap();
    assert_eq!(s.loads, 4);
    assert_eq!(s.timer_switch.total(), 8 * s.loads);
    assert_eq!((s.timer_switch.reads, s.timer_switch.writes), (8, 24));

    let (mut kvm, vcpu) = setup(true, 0);
    for _ in 0..3 {
        run(&mut kvm, vcpu, |env| work(env, 100));
    }
    let s = kvm.vcpu_stats(vcpu).unwrap();
    assert_eq!(s.entries, 3);
    assert_eq!(s.timer_switch.total(), 7 * s.entries);
}
