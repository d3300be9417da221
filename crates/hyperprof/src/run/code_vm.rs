//! VMs of a system run whose guest is real AArch64 code: an image booted
//! on the board ([`hyperprof_board::vm::BoardVm`]) whose vCPUs run on the
//! A64 engine under the same hypervisor, host and schedule as the Rust
//! guest kernels of [`super::engine`].
//!
//! Such a VM's profile is what its vCPUs hand to the VMM through the
//! vendor call ([`hyperprof_board::vendor::SPE_RECORDS`]); its PMU counts
//! are what its own counters hold at the end, read through one-reg as a
//! VMM reads them; its console is kept (up to [`CONSOLE_LIMIT`] bytes).

use std::sync::Arc;

use hyperprof_arch::{EventCounter, SysReg};
use hyperprof_board::vm::{BoardVm, BootOptions, VmState};
use hyperprof_kvm::vm::Kvm;
use hyperprof_sim::op::Symbol;

/// Console bytes kept per VM; the rest are counted, not kept.
pub const CONSOLE_LIMIT: usize = 1 << 20;

/// The image a code VM boots.
#[derive(Clone)]
pub struct CodeImage {
    /// As the scenario names it (`builtin:spe`, or a path).
    pub name: String,
    /// A short name: the process name of its profile.
    pub label: String,
    /// The ELF file.
    pub bytes: Arc<[u8]>,
    /// `/chosen/bootargs`.
    pub bootargs: String,
    /// Instructions each vCPU may retire before the run stops it.
    pub max_insns: u64,
}

impl std::fmt::Debug for CodeImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CodeImage")
            .field("name", &self.name)
            .field("bytes", &self.bytes.len())
            .field("bootargs", &self.bootargs)
            .field("max_insns", &self.max_insns)
            .finish()
    }
}

impl CodeImage {
    /// The functions of the image's symbol table (none when it has none).
    pub fn symbols(&self) -> Vec<Symbol> {
        crate::perf::elf::read_functions(&self.bytes).unwrap_or_default()
    }
}

/// How a code VM's run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CodeEnd {
    /// PSCI SYSTEM_OFF (or every vCPU CPU_OFF).
    PoweredOff,
    /// PSCI SYSTEM_RESET (the board does not reboot).
    Reset,
    /// Every vCPU that is on waits for an interrupt that cannot come.
    Wedged,
    /// Still running when the run ended (its vCPUs reached `max_insns`).
    Running,
    /// Stopped by an error of the VMM or the hypervisor.
    Failed,
}

impl CodeEnd {
    /// The name the report uses.
    pub fn name(self) -> &'static str {
        match self {
            CodeEnd::PoweredOff => "powered-off",
            CodeEnd::Reset => "reset",
            CodeEnd::Wedged => "wedged",
            CodeEnd::Running => "running",
            CodeEnd::Failed => "failed",
        }
    }
}

/// What a code VM did, beyond what every VM reports.
#[derive(Clone, Debug)]
pub struct CodeOutcome {
    /// The image it booted.
    pub image: CodeImage,
    /// How its run ended.
    pub end: CodeEnd,
    /// Its console output (the first [`CONSOLE_LIMIT`] bytes).
    pub console: Vec<u8>,
    /// Console bytes written beyond the limit.
    pub console_dropped: u64,
    /// The error that stopped it, if one did.
    pub error: Option<String>,
    /// Its counters at the end, summed by event over its vCPUs:
    /// `(event number, count)` in event order.
    pub pmu: Vec<(u16, u64)>,
    /// The sampling interval its vCPU 0 last programmed (PMSIRR_EL1's
    /// INTERVAL, read through one-reg); 0 without guest SPE.
    pub sampling_interval: u64,
    /// Pieces of records whose vCPU said records were lost before them.
    pub truncations: u64,
    /// Record bytes the VMM refused (its store was full).
    pub refused_bytes: u64,
}

/// A booted code VM while the run goes on.
pub(crate) struct CodeVm {
    board: BoardVm,
    image: CodeImage,
    console: Vec<u8>,
    console_dropped: u64,
    error: Option<String>,
}

impl CodeVm {
    /// Boots `image` into VM `vm` (`ram_bytes` of RAM) on `vcpus`, created
    /// and configured by the caller (`pmu`, `spe`: the vCPUs' features,
    /// which the device tree describes).
    pub(crate) fn boot(
        kvm: &mut Kvm,
        vm: usize,
        ram_bytes: u64,
        vcpus: &[usize],
        image: &CodeImage,
        pmu: bool,
        spe: bool,
    ) -> Result<CodeVm, String> {
        let opts = BootOptions {
            bootargs: image.bootargs.clone(),
            pmu,
            spe,
            // As `hyperprof boot`: every code VM has QEMU virt's GICv3.
            gic: Some(hyperprof_board::map::GicLayout::VIRT),
        };
        let board = BoardVm::boot(kvm, vm, ram_bytes, vcpus, &image.bytes, &opts)
            .map_err(|e| format!("image {}: {e}", image.name))?;
        Ok(CodeVm {
            board,
            image: image.clone(),
            console: Vec::new(),
            console_dropped: 0,
            error: None,
        })
    }

    /// Whether vCPU `i` has something to run: it is on and not idle, below
    /// its instruction budget, and the VM has not failed.
    pub(crate) fn wants(&self, i: usize) -> bool {
        self.error.is_none()
            && self.board.runnable(i)
            && self.board.retired(i) < self.image.max_insns
    }

    /// Instructions the VM's vCPUs retired.
    pub(crate) fn retired(&self) -> u64 {
        (0..self.board.vcpus().len())
            .map(|i| self.board.retired(i))
            .sum()
    }

    /// Instructions vCPU `i` retired.
    pub(crate) fn retired_by(&self, i: usize) -> u64 {
        self.board.retired(i)
    }

    /// Runs vCPU `i`, loaded by the caller, for at most `insns`
    /// instructions (and its budget); an error stops the VM and is kept
    /// for the report.
    pub(crate) fn slice(&mut self, kvm: &mut Kvm, i: usize, insns: u64) {
        let left = self.image.max_insns.saturating_sub(self.board.retired(i));
        if let Err(e) = self.board.run_vcpu(kvm, i, insns.min(left)) {
            self.error = Some(e.to_string());
        }
        let out = self.board.take_console();
        let room = CONSOLE_LIMIT.saturating_sub(self.console.len());
        self.console.extend_from_slice(&out[..out.len().min(room)]);
        self.console_dropped += out.len().saturating_sub(room) as u64;
    }

    /// The VM's state for a run that made no progress.
    pub(crate) fn describe(&self) -> String {
        format!(
            "{:?} after {} instructions{}",
            self.board.state(),
            self.retired(),
            self.error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        )
    }

    /// Ends the VM's part of the run: its records taken per vCPU, its
    /// counters read through one-reg (the vCPUs are not loaded).
    pub(crate) fn finish(mut self, kvm: &mut Kvm) -> (CodeOutcome, Vec<Vec<u8>>) {
        let vcpus = self.board.vcpus();
        let records: Vec<Vec<u8>> = (0..vcpus.len())
            .map(|i| self.board.take_spe_records(i))
            .collect();
        let mut pmu: Vec<(u16, u64)> = Vec::new();
        for &v in &vcpus {
            for (event, count) in read_counters(kvm, v) {
                match pmu.iter_mut().find(|(e, _)| *e == event) {
                    Some(slot) => slot.1 = slot.1.wrapping_add(count),
                    None => pmu.push((event, count)),
                }
            }
        }
        pmu.sort_by_key(|(e, _)| *e);
        let end = if self.error.is_some() {
            CodeEnd::Failed
        } else {
            match self.board.state() {
                VmState::PoweredOff => CodeEnd::PoweredOff,
                VmState::Reset => CodeEnd::Reset,
                VmState::Wedged => CodeEnd::Wedged,
                VmState::Running => CodeEnd::Running,
            }
        };
        let sampling_interval = vcpus
            .first()
            .and_then(|&v| kvm.get_one_reg(v, SysReg::PMSIRR_EL1).ok())
            .map_or(0, |r| r & 0xFFFF_FF00);
        let store = self.board.records();
        let out = CodeOutcome {
            image: self.image,
            end,
            console: self.console,
            console_dropped: self.console_dropped,
            error: self.error,
            pmu,
            sampling_interval,
            truncations: (0..vcpus.len()).map(|i| store.truncations(i)).sum(),
            refused_bytes: store.refused_bytes(),
        };
        (out, records)
    }
}

/// The events and counts of vCPU `vcpu`'s enabled counters (PMCNTENSET),
/// read as a VMM reads them (KVM_GET_ONE_REG); none without a PMU.
fn read_counters(kvm: &mut Kvm, vcpu: usize) -> Vec<(u16, u64)> {
    let mut get = |r| kvm.get_one_reg(vcpu, r).ok();
    let (Some(pmcr), Some(enabled)) = (get(SysReg::PMCR_EL0), get(SysReg::PMCNTENSET_EL0)) else {
        return Vec::new();
    };
    let n = ((pmcr >> 11) & 0x1f) as u8;
    let mut out = Vec::new();
    for c in (0..n).filter_map(EventCounter::new) {
        if enabled >> c.index() & 1 == 0 {
            continue;
        }
        if let (Some(typer), Some(count)) =
            (get(SysReg::PMEVTYPER_EL0(c)), get(SysReg::PMEVCNTR_EL0(c)))
        {
            out.push(((typer & 0xffff) as u16, count));
        }
    }
    if enabled >> 31 & 1 == 1 {
        if let Some(cycles) = get(SysReg::PMCCNTR_EL0) {
            out.push((hyperprof_sim::event::Event::CPU_CYCLES.number(), cycles));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyperprof_arch::PmuVer;
    use hyperprof_kvm::uapi::VcpuFeatures;
    use hyperprof_kvm::vm::{PmuSetup, VmConfig};
    use hyperprof_sim::machine::{Machine, MachineConfig};
    use hyperprof_sim::pe::PeConfig;
    use hyperprof_sim::pmu::PmuConfig;

    fn pmu_vcpu(partitioned: bool) -> (Kvm, usize) {
        let pe = PeConfig {
            pmu: PmuConfig {
                counters: 8,
                version: PmuVer::V3p5,
                hpmn0: false,
                el2_implemented: true,
            },
            spe: None,
            fgt: true,
            uarch: Default::default(),
        };
        let machine = Machine::new(&MachineConfig {
            pes: vec![pe; 2],
            ram_base: 0x8000_0000,
            ram_size: 128 << 20,
        })
        .unwrap();
        let mut kvm = Kvm::new(machine);
        kvm.set_host_pmu_reserve(2).unwrap();
        let vm = kvm
            .create_vm(VmConfig {
                ram_bytes: 16 << 20,
                memlock_limit: 64 << 20,
            })
            .unwrap();
        let features = VcpuFeatures {
            spe: false,
            pmu_v3: true,
        };
        let vcpu = kvm.create_vcpu(vm, features).unwrap();
        let setup = PmuSetup {
            irq: 23,
            partitioned,
            nr_counters: None,
            filters: Vec::new(),
        };
        kvm.configure_pmu(vcpu, &setup).unwrap();
        (kvm, vcpu)
    }

    #[test]
    fn the_enabled_counters_are_read_as_a_vmm_reads_them() {
        for partitioned in [false, true] {
            let (mut kvm, vcpu) = pmu_vcpu(partitioned);
            let c = |n| EventCounter::new(n).unwrap();
            for (reg, val) in [
                (SysReg::PMEVTYPER_EL0(c(0)), 0x08),
                (SysReg::PMEVCNTR_EL0(c(0)), 1234),
                (SysReg::PMEVTYPER_EL0(c(1)), 0x03),
                (SysReg::PMEVCNTR_EL0(c(1)), 77),
                (SysReg::PMEVTYPER_EL0(c(4)), 0x10),
                (SysReg::PMEVCNTR_EL0(c(4)), 5),
                (SysReg::PMCCNTR_EL0, 99),
                (SysReg::PMCNTENSET_EL0, 0b1_0001 | 1 << 31),
            ] {
                kvm.set_one_reg(vcpu, reg, val).unwrap();
            }
            // Counter 1 is programmed but not enabled: not counted.
            assert_eq!(
                read_counters(&mut kvm, vcpu),
                vec![(0x08, 1234), (0x10, 5), (0x11, 99)],
                "partitioned {partitioned}"
            );
        }
    }

    #[test]
    fn a_vcpu_without_a_pmu_has_no_counters() {
        let (mut kvm, _) = pmu_vcpu(false);
        let vm = kvm
            .create_vm(VmConfig {
                ram_bytes: 16 << 20,
                memlock_limit: 64 << 20,
            })
            .unwrap();
        let plain = kvm.create_vcpu(vm, VcpuFeatures::default()).unwrap();
        assert!(read_counters(&mut kvm, plain).is_empty());
    }
}
