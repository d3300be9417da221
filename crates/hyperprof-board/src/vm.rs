//! A booted VM on the board: its image and device tree in guest RAM, one
//! machine-code context per vCPU, and the VMM's half of every exit KVM
//! hands out: PSCI for hypervisor calls, the PL011 for MMIO, and power
//! states.
//!
//! The caller (a run loop) creates the VM and its vCPUs in the hypervisor,
//! loads and puts vCPUs on physical CPUs as its schedule says, and calls
//! [`BoardVm::run_vcpu`] while a vCPU is loaded.

use hyperprof_kvm::uapi::Errno;
use hyperprof_kvm::vm::{Exit, Kvm, Mmio, GUEST_RAM_IPA};
use hyperprof_sim::pe::CodeContext;
use hyperprof_sim::stack::SampledStack;
use thiserror::Error;

use crate::fdt::{self, BoardDesc};
use crate::image::{self, Image, ImageError};
use crate::map::{GicLayout, Region, UART};
use crate::pl011::Pl011;
use crate::psci::{self, Outcome, PowerState};
use crate::vendor::{self, RecordStore, Request};

/// Why a VM cannot boot or stopped working.
#[derive(Debug, Error)]
pub enum BoardError {
    /// The image is malformed or does not fit.
    #[error("image: {0}")]
    Image(#[from] ImageError),
    /// The board cannot be described (bad vCPU count, RAM over devices).
    #[error("board: {0}")]
    Fdt(#[from] fdt::FdtError),
    /// The hypervisor's vGIC refused the board's GIC.
    #[error("GIC: {0}")]
    Gic(String),
    /// The hypervisor refused a call.
    #[error("{what}: {errno}")]
    Kvm {
        /// The call.
        what: &'static str,
        /// Its error.
        errno: Errno,
    },
    /// KVM_RUN failed.
    #[error("vCPU {vcpu}: {why}")]
    Run {
        /// The vCPU's index in the VM.
        vcpu: usize,
        /// What went wrong.
        why: String,
    },
}

/// How a VM's run ended, or that it is still running.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum VmState {
    /// Some vCPU can run.
    Running,
    /// PSCI SYSTEM_OFF.
    PoweredOff,
    /// PSCI SYSTEM_RESET (the board does not reboot: the run ends).
    Reset,
    /// Every vCPU that is on waits for an interrupt with none pending and
    /// nothing can raise one (no timer armed): the guest can never wake.
    Wedged,
}

/// What the VMM side counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VmmStats {
    /// PSCI and other SMCCC calls served.
    pub hypercalls: u64,
    /// MMIO accesses emulated.
    pub mmio: u64,
    /// Times a vCPU went idle (WFI with nothing pending).
    pub idle: u64,
    /// Times an idle vCPU woke because one of its timers fired.
    pub timer_wakes: u64,
}

struct BoardVcpu {
    vcpu: usize,
    ctx: CodeContext,
    power: PowerState,
    idle: bool,
}

/// A VM booted from an image.
pub struct BoardVm {
    vm: usize,
    vcpus: Vec<BoardVcpu>,
    uart: Pl011,
    state: VmState,
    stats: VmmStats,
    image: Image,
    dtb_addr: u64,
    records: RecordStore,
}

impl std::fmt::Debug for BoardVm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BoardVm")
            .field("vm", &self.vm)
            .field("state", &self.state)
            .field("vcpus", &self.vcpus.len())
            .finish_non_exhaustive()
    }
}

/// What the board describes to the guest beyond RAM and vCPUs.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootOptions {
    /// `/chosen/bootargs`.
    pub bootargs: String,
    /// Describe the PMU (the vCPUs have the PMU_V3 feature).
    pub pmu: bool,
    /// Describe SPE (the vCPUs have the SPE feature).
    pub spe: bool,
    /// Create the in-kernel GICv3 (KVM_DEV_TYPE_ARM_VGIC_V3) at this
    /// layout, which the device tree describes; `None` leaves the VM
    /// without one (its vCPUs' PMU and SPE levels are their IRQ line, and
    /// the device tree still describes QEMU virt's GIC).
    pub gic: Option<GicLayout>,
}

impl BoardVm {
    /// Boots `image` in VM `vm` (created with `ram_bytes` of RAM) whose
    /// vCPUs are `vcpus` (vCPU 0 boots; the others wait for PSCI CPU_ON):
    /// the image and the device tree go into guest RAM and vCPU 0 starts
    /// at the entry point, EL1h, MMU off, interrupts masked, x0 = the
    /// device tree.
    pub fn boot(
        kvm: &mut Kvm,
        vm: usize,
        ram_bytes: u64,
        vcpus: &[usize],
        image_bytes: &[u8],
        opts: &BootOptions,
    ) -> Result<BoardVm, BoardError> {
        let ram = Region {
            base: GUEST_RAM_IPA,
            size: ram_bytes,
        };
        let image = image::load(image_bytes, ram)?;
        // The device tree checks the layout first (RAM, devices and the
        // redistributors' room for every vCPU), then the hypervisor.
        let dtb = fdt::build(&BoardDesc {
            ram,
            cpus: vcpus.len() as u32,
            bootargs: opts.bootargs.clone(),
            pmu: opts.pmu,
            spe: opts.spe,
            gic: opts.gic.unwrap_or_default(),
        })?;
        if let Some(gic) = opts.gic {
            create_gic(kvm, vm, &gic)?;
        }
        let dtb_addr = image.dtb_address(dtb.len(), ram)?;
        let write = |kvm: &mut Kvm, ipa, data: &[u8]| {
            kvm.write_guest(vm, ipa, data)
                .map_err(|errno| BoardError::Kvm {
                    what: "writing guest memory",
                    errno,
                })
        };
        // Guest RAM starts zeroed, so a segment's bytes past its file
        // size need no writing.
        for seg in &image.segments {
            write(kvm, seg.addr, &seg.data)?;
        }
        write(kvm, dtb_addr, &dtb)?;
        let vcpus: Vec<BoardVcpu> = vcpus
            .iter()
            .enumerate()
            .map(|(i, &vcpu)| {
                let mut ctx = CodeContext::new(image.entry, fdt::mpidr_affinity(i as u32));
                ctx.cpu.set_x(0, dtb_addr);
                BoardVcpu {
                    vcpu,
                    ctx,
                    power: if i == 0 {
                        PowerState::On
                    } else {
                        PowerState::Off
                    },
                    idle: false,
                }
            })
            .collect();
        Ok(BoardVm {
            vm,
            uart: Pl011::new(),
            state: VmState::Running,
            stats: VmmStats::default(),
            records: RecordStore::new(vcpus.len(), vendor::DEFAULT_STORE_LIMIT),
            vcpus,
            image,
            dtb_addr,
        })
    }

    /// The hypervisor's VM.
    pub fn vm(&self) -> usize {
        self.vm
    }

    /// How the run stands.
    pub fn state(&self) -> &VmState {
        &self.state
    }

    /// Whether the VM's run is over.
    pub fn finished(&self) -> bool {
        self.state != VmState::Running
    }

    /// The VMM's counts.
    pub fn stats(&self) -> VmmStats {
        self.stats
    }

    /// Where the device tree is.
    pub fn dtb_address(&self) -> u64 {
        self.dtb_addr
    }

    /// The loaded image.
    pub fn image(&self) -> &Image {
        &self.image
    }

    /// Takes the SPE records vCPU `i` handed over ([`vendor::SPE_RECORDS`])
    /// since the last take, in the order it handed them.
    pub fn take_spe_records(&mut self, i: usize) -> Vec<u8> {
        self.records.take(i)
    }

    /// Has the simulator read the stack (frame-pointer chain) of every
    /// instruction the vCPUs' SPE units sample from now on.
    pub fn capture_stacks(&mut self) {
        for v in &mut self.vcpus {
            v.ctx.stacks.get_or_insert_with(Default::default);
        }
    }

    /// Takes vCPU `i`'s sampled stacks captured since the last take, and
    /// how many it dropped (its log was full); empty without
    /// [`BoardVm::capture_stacks`].
    pub fn take_stacks(&mut self, i: usize) -> (Vec<SampledStack>, u64) {
        self.vcpus
            .get_mut(i)
            .and_then(|v| v.ctx.stacks.as_mut())
            .map_or((Vec::new(), 0), |log| (log.take(), log.dropped()))
    }

    /// The store of handed-over records (its truncation and refusal counts).
    pub fn records(&self) -> &RecordStore {
        &self.records
    }

    /// Bounds what the VM's vCPUs may hand over and the VMM has not taken.
    pub fn set_records_limit(&mut self, limit: u64) {
        self.records.set_limit(limit);
    }

    /// The console bytes written so far, taken out.
    pub fn take_console(&mut self) -> Vec<u8> {
        self.uart.take_output()
    }

    /// The hypervisor vCPUs, in the VM's order.
    pub fn vcpus(&self) -> Vec<usize> {
        self.vcpus.iter().map(|v| v.vcpu).collect()
    }

    /// Instructions vCPU `i` has retired.
    pub fn retired(&self, i: usize) -> u64 {
        self.vcpus.get(i).map_or(0, |v| v.ctx.cpu.retired())
    }

    /// The machine-code context of vCPU `i`.
    pub fn context(&self, i: usize) -> Option<&CodeContext> {
        self.vcpus.get(i).map(|v| &v.ctx)
    }

    /// Whether vCPU `i` has something to run (it is on and not idle).
    pub fn runnable(&self, i: usize) -> bool {
        self.state == VmState::Running
            && self
                .vcpus
                .get(i)
                .is_some_and(|v| v.power == PowerState::On && !v.idle)
    }

    /// Runs vCPU `i` (loaded by the caller) for at most `budget`
    /// instructions, serving the exits that need the VMM. Returns the
    /// instructions it retired.
    pub fn run_vcpu(&mut self, kvm: &mut Kvm, i: usize, budget: u64) -> Result<u64, BoardError> {
        let Some(v) = self.vcpus.get_mut(i) else {
            return Err(BoardError::Run {
                vcpu: i,
                why: "no such vCPU".into(),
            });
        };
        let start = v.ctx.cpu.retired();
        self.wake_idle(kvm);
        let mut left = budget;
        while self.runnable(i) && left > 0 {
            let v = &mut self.vcpus[i];
            let before = v.ctx.cpu.retired();
            let exit = kvm.run_code(v.vcpu, &mut v.ctx, left);
            left = left.saturating_sub(v.ctx.cpu.retired() - before);
            match exit {
                Exit::Yield => {}
                Exit::Halt => {}
                Exit::Hypercall { .. } => self.hypercall(kvm, i),
                Exit::Mmio(m) => self.mmio(kvm, i, m)?,
                Exit::Idle => {
                    self.stats.idle += 1;
                    self.vcpus[i].idle = true;
                    self.check_wedged(kvm);
                }
                Exit::Rlimit {
                    needed,
                    used,
                    limit,
                } => {
                    return Err(BoardError::Run {
                        vcpu: i,
                        why: format!(
                            "pinning the SPE buffer needs {needed} more bytes with {used} of \
                             {limit} locked (RLIMIT_MEMLOCK)"
                        ),
                    })
                }
                Exit::FailEntry(why) => return Err(BoardError::Run { vcpu: i, why }),
            }
            // An SGI or a distributor write may have woken another vCPU.
            self.wake_idle(kvm);
            if left == 0 || matches!(exit, Exit::Yield) {
                break;
            }
        }
        Ok(self.vcpus[i].ctx.cpu.retired() - start)
    }

    fn hypercall(&mut self, kvm: &Kvm, i: usize) {
        self.stats.hypercalls += 1;
        let x = {
            let c = &self.vcpus[i].ctx.cpu;
            [c.x(0), c.x(1), c.x(2), c.x(3)]
        };
        if vendor::is_vendor_call(x[0] as u32) {
            let r = self.vendor_call(kvm, i, x);
            self.vcpus[i].ctx.cpu.set_x(0, r);
            return;
        }
        let states: Vec<(u64, PowerState)> =
            self.vcpus.iter().map(|v| (v.ctx.mpidr, v.power)).collect();
        let x = {
            let c = &self.vcpus[i].ctx.cpu;
            [c.x(0), c.x(1), c.x(2), c.x(3)]
        };
        match psci::call(x, &states) {
            Outcome::Return(r) => self.vcpus[i].ctx.cpu.set_x(0, r),
            Outcome::CpuOn {
                vcpu,
                entry,
                context_id,
            } => {
                let t = &mut self.vcpus[vcpu];
                let mpidr = t.ctx.mpidr & psci::MPIDR_AFFINITY;
                let mut ctx = CodeContext::new(entry, mpidr);
                ctx.cpu.set_x(0, context_id);
                // Stack capture goes on across the restart.
                ctx.stacks = t.ctx.stacks.take();
                t.ctx = ctx;
                t.power = PowerState::On;
                t.idle = false;
                self.vcpus[i].ctx.cpu.set_x(0, psci::SUCCESS);
            }
            Outcome::CpuOff => {
                self.vcpus[i].power = PowerState::Off;
                if self.vcpus.iter().all(|v| v.power == PowerState::Off) {
                    self.state = VmState::PoweredOff;
                }
            }
            Outcome::Suspend => {
                self.vcpus[i].ctx.cpu.set_x(0, psci::SUCCESS);
            }
            Outcome::SystemOff => self.state = VmState::PoweredOff,
            Outcome::SystemReset => self.state = VmState::Reset,
        }
    }

    /// Serves a call of hyperprof's vendor hypervisor service ([`vendor`]).
    fn vendor_call(&mut self, kvm: &Kvm, i: usize, x: [u64; 4]) -> u64 {
        match vendor::decode(x) {
            Request::Return(r) => r,
            Request::Records {
                ipa,
                len,
                truncated,
            } => {
                // Refused before the copy: a full store costs no memory.
                if !self.records.has_room(len) {
                    return vendor::NO_SPACE;
                }
                let mut buf = vec![0u8; len as usize];
                if kvm.read_guest(self.vm, ipa, &mut buf).is_err() {
                    return vendor::INVALID_PARAMETERS;
                }
                if self.records.push(i, &buf, truncated) {
                    vendor::SUCCESS
                } else {
                    vendor::NO_SPACE
                }
            }
        }
    }

    fn mmio(&mut self, kvm: &mut Kvm, i: usize, m: Mmio) -> Result<(), BoardError> {
        self.stats.mmio += 1;
        let vcpu = self.vcpus[i].vcpu;
        let in_uart = UART.contains(m.ipa);
        let value = if in_uart {
            let off = m.ipa - UART.base;
            match m.write {
                Some(v) => self.uart.write(off, m.len, v).map(|_| 0),
                None => self.uart.read(off, m.len),
            }
            // A bad access size to the UART reads as zero, writes are ignored.
            .unwrap_or(0)
        } else {
            // Nothing there: reads as zero, writes are ignored (as on
            // QEMU's virt board for unassigned addresses).
            0
        };
        if m.write.is_none() {
            kvm.set_mmio_data(vcpu, value)
                .map_err(|errno| BoardError::Kvm {
                    what: "completing an MMIO read",
                    errno,
                })?;
        }
        Ok(())
    }

    /// Wakes every idle vCPU that has an interrupt to take: its timer
    /// asserts its interrupt now (the VMM's side of KVM's background timer
    /// kicking a blocked vCPU), or the vGIC holds one it would take (an
    /// SGI another vCPU sent, a pending write of the distributor).
    pub fn wake_idle(&mut self, kvm: &Kvm) {
        for v in &mut self.vcpus {
            if !v.idle {
                continue;
            }
            if kvm.timer_pending(v.vcpu) {
                v.idle = false;
                self.stats.timer_wakes += 1;
            } else if kvm.vgic_vcpu_pending(v.vcpu) {
                v.idle = false;
            }
        }
    }

    /// When every vCPU that is on is idle: the physical count at which the
    /// first of them wakes (its earliest timer deadline), or `None` when
    /// some vCPU can run or none has a timer armed.
    pub fn next_wake(&self, kvm: &Kvm) -> Option<u64> {
        let on: Vec<&BoardVcpu> = self
            .vcpus
            .iter()
            .filter(|v| v.power == PowerState::On)
            .collect();
        if self.state != VmState::Running || !on.iter().all(|v| v.idle) {
            return None;
        }
        on.iter().filter_map(|v| kvm.timer_deadline(v.vcpu)).min()
    }

    /// Every vCPU that is on is idle with no interrupt to take and none
    /// has a timer that can fire (and the board has no device interrupt):
    /// nothing can wake them.
    fn check_wedged(&mut self, kvm: &Kvm) {
        self.wake_idle(kvm);
        let on: Vec<&BoardVcpu> = self
            .vcpus
            .iter()
            .filter(|v| v.power == PowerState::On)
            .collect();
        if on
            .iter()
            .all(|v| v.idle && kvm.timer_deadline(v.vcpu).is_none())
        {
            self.state = VmState::Wedged;
        }
    }
}

/// KVM_CREATE_DEVICE of the VM's vGIC at `gic`'s addresses, then its init
/// (after every vCPU exists, as KVM requires).
fn create_gic(kvm: &mut Kvm, vm: usize, gic: &GicLayout) -> Result<(), BoardError> {
    use hyperprof_kvm::uapi::{
        UserPtr, KVM_DEV_ARM_VGIC_CTRL_INIT, KVM_DEV_ARM_VGIC_GRP_ADDR, KVM_DEV_ARM_VGIC_GRP_CTRL,
        KVM_VGIC_V3_ADDR_TYPE_DIST, KVM_VGIC_V3_ADDR_TYPE_REDIST,
    };
    kvm.create_vgic_v3(vm)
        .map_err(|errno| BoardError::Gic(format!("creating the vGIC: {errno}")))?;
    for (kind, base) in [
        (KVM_VGIC_V3_ADDR_TYPE_DIST, gic.dist.base),
        (KVM_VGIC_V3_ADDR_TYPE_REDIST, gic.redist.base),
        (KVM_DEV_ARM_VGIC_CTRL_INIT, 0),
    ] {
        let group = if kind == KVM_DEV_ARM_VGIC_CTRL_INIT {
            KVM_DEV_ARM_VGIC_GRP_CTRL
        } else {
            KVM_DEV_ARM_VGIC_GRP_ADDR
        };
        kvm.set_vgic_attr(vm, group, kind, UserPtr::Value(base))
            .map_err(|e| BoardError::Gic(e.to_string()))?;
    }
    Ok(())
}
