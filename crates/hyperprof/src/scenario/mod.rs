//! Scenario files: what `hyperprof run SCENARIO.toml` runs.
//!
//! A scenario is a TOML file describing the machine (groups of identical
//! CPUs with their PMU and SPE unit), the host kernel (its work, its SPE
//! session, its PMU events and the counters it reserves), the virtual
//! machines (workload, vPMU, guest SPE) and the length of the run. The
//! built-in default, [`Scenario::default_text`], documents every key.
//!
//! Loading has three stages, each with its own error class
//! ([`ErrorKind`]):
//!
//! 1. TOML syntax ([`ErrorKind::Syntax`]).
//! 2. Shape: every table is deserialized with `deny_unknown_fields`, so a
//!    key that is not part of the format ([`ErrorKind::UnknownKey`]), a
//!    missing required key ([`ErrorKind::MissingKey`]), a value of the wrong
//!    type ([`ErrorKind::WrongType`]) and a value outside the field's own
//!    range ([`ErrorKind::OutOfRange`]) are reported with the span TOML gives.
//! 3. Validation ([`Scenario::validate`]): configurations that each field
//!    allows but that cannot be built or run together
//!    ([`ErrorKind::Impossible`]), e.g. more guest counters than the host
//!    leaves to guests.
//!
//! Every error names the file, the 1-based line and column, and the dotted
//! path of the field (`vm[1].pmu.nr_counters`). The path of a parse error
//! is found from its byte span in the document's spanned tree
//! ([`toml::de::DeTable`]); a validation error finds its line by looking its
//! path up in the same tree (or, for a key that was left out, the table that
//! would hold it).

use std::borrow::Cow;
use std::fmt;
use std::ops::Range;
use std::path::{Path, PathBuf};

use hyperprof_sim::uarch::{BranchConfig, CacheGeometry, TlbConfig, UarchConfig};
use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::Deserialize;
use toml::de::{DeTable, DeValue};
use toml::Spanned;

use hyperprof_arch::{maxbuffsize, pmsidr_el1, PmsVer, PmuVer};
use hyperprof_guest::drivers::pmu::{EventSpec, Filter};
use hyperprof_guest::drivers::spe::SpeSessionConfig;
use hyperprof_kvm::pmu_attr::{EventFilter, KVM_PMU_EVENT_ALLOW, KVM_PMU_EVENT_DENY};
use hyperprof_sim::event::ALL_EVENTS;
use hyperprof_sim::machine::MachineConfig;
use hyperprof_sim::pe::PeConfig;
use hyperprof_sim::pmu::PmuConfig;
use hyperprof_sim::spe::SpeConfig;
use hyperprof_sim::workload::NAMES;

mod guest_image;
#[cfg(test)]
mod image_tests;
mod migrate;
#[cfg(test)]
mod tests;

pub use guest_image::{image_bytes, image_label, DEFAULT_MAX_INSNS, MAX_BOOTARGS, MAX_IMAGE_BYTES};
pub use migrate::MigrateSpec;

/// The built-in default scenario, as TOML (`default.toml`).
const DEFAULT_TEXT: &str = include_str!("default.toml");

/// Where machine RAM starts in the physical address space.
pub const RAM_BASE: u64 = 0x8000_0000;
/// Most CPUs a machine may have (the sum of every group's `count`).
pub const MAX_CPUS: u32 = 64;
/// Most vCPUs one VM may have.
pub const MAX_VCPUS: u32 = 64;
/// Most PMU event counters (PMCR_EL0.N is at most 31).
pub const MAX_COUNTERS: u8 = hyperprof_kvm::pmu_attr::MAX_COUNTERS;
/// First interrupt ID a VM's PMU or SPE interrupt may use (a PPI).
pub const PPI_FIRST: u32 = hyperprof_kvm::pmu_attr::PPI_FIRST;
/// Last interrupt ID a VM's PMU or SPE interrupt may use (a PPI).
pub const PPI_LAST: u32 = hyperprof_kvm::pmu_attr::PPI_LAST;
/// The PMU overflow interrupt when `vm.pmu.irq` is left out (PPI 23, the
/// conventional one).
pub const DEFAULT_PMU_IRQ: u32 = 23;
/// The SPE buffer interrupt when `vm.spe.irq` is left out (PPI 21, the
/// conventional PMBIRQ).
pub const DEFAULT_SPE_IRQ: u32 = 21;
/// Size of a page, the granule of every buffer size.
pub const PAGE_BYTES: u64 = 4096;

// Integer ranges of the fields, as `i64` for the deserializers' const
// generics (TOML integers are `i64`).
const I64_MAX: i64 = i64::MAX;
const CPUS_MAX_I: i64 = MAX_CPUS as i64;
const VCPUS_MAX_I: i64 = MAX_VCPUS as i64;
const COUNTERS_MAX_I: i64 = MAX_COUNTERS as i64;
const PPI_FIRST_I: i64 = PPI_FIRST as i64;
const PPI_LAST_I: i64 = PPI_LAST as i64;
const RAM_MIB_MAX: i64 = 1 << 20;
const RECORD_LOG2_MIN: i64 = hyperprof_sim::spe::config::MIN_RECORD_LOG2 as i64;
const RECORD_LOG2_MAX: i64 = hyperprof_sim::spe::config::MAX_RECORD_LOG2 as i64;
const QUEUE_MAX: i64 = 1024;
const INTERVAL_STEP: i64 = 256;
const INTERVAL_MAX: i64 = 0xFFFF_FF00;
const BUFFER_KIB_STEP: i64 = 4;
const BUFFER_KIB_MAX: i64 = 1 << 30;
const EVENT_MAX_I: i64 = 0xFFFF;
const PERIOD_MAX: i64 = u32::MAX as i64;
/// Event numbers from this one on need PMUv3p1 (16-bit event numbers).
const EVENT_SPACE_V3: u32 = 1 << 10;
/// The event number space of PMUv3p1 and later.
const EVENT_SPACE_V3P1: u32 = 1 << 16;

// ---------------------------------------------------------------------------
// The scenario
// ---------------------------------------------------------------------------

/// A whole scenario file.
///
/// Build one with [`Scenario::parse`], [`Scenario::load`] or
/// [`Scenario::builtin_default`], which validate it; deserializing it
/// directly skips [`Scenario::validate`].
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct Scenario {
    /// The scenario's name, used in reports and output file names: 1 to 64
    /// ASCII letters, digits, `-`, `_` or `.`.
    pub name: String,
    /// Seed of every random choice of the run.
    #[serde(deserialize_with = "int::<_, u64, 0, I64_MAX, 1>")]
    pub seed: u64,
    /// Length and scheduling of the run.
    pub run: RunSpec,
    /// The machine.
    pub machine: MachineSpec,
    /// The host kernel.
    pub host: HostSpec,
    /// The virtual machines (`[[vm]]` tables), in creation order; none for a
    /// bare-metal run.
    #[serde(default, rename = "vm")]
    pub vms: Vec<VmSpec>,
    /// Migrations of VMs during the run (`[[migrate]]` tables).
    #[serde(default, rename = "migrate")]
    pub migrations: Vec<MigrateSpec>,
}

/// `[run]`: how long the run is and how vCPUs are scheduled.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct RunSpec {
    /// Guest user operations each VM runs: the run ends when every VM has
    /// run them.
    #[serde(deserialize_with = "int::<_, u64, 1, I64_MAX, 1>")]
    pub guest_ops: u64,
    /// Host operations each CPU runs.
    #[serde(deserialize_with = "int::<_, u64, 1, I64_MAX, 1>")]
    pub host_ops: u64,
    /// Operations a vCPU runs before it yields its CPU (default 200 000).
    #[serde(
        default = "default_slice_ops",
        deserialize_with = "int::<_, u64, 1, I64_MAX, 1>"
    )]
    pub slice_ops: u64,
    /// Operations of host work a CPU runs between two vCPU slices (default
    /// 50 000).
    #[serde(
        default = "default_host_slice_ops",
        deserialize_with = "int::<_, u64, 1, I64_MAX, 1>"
    )]
    pub host_slice_ops: u64,
    /// How vCPUs are placed on CPUs (default `rotate`).
    #[serde(default)]
    pub schedule: Schedule,
}

fn default_slice_ops() -> u64 {
    200_000
}

fn default_host_slice_ops() -> u64 {
    50_000
}

fn default_true() -> bool {
    true
}

/// `[machine]`: the hardware.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct MachineSpec {
    /// Where the host kernel runs.
    pub host_mode: HostMode,
    /// Machine RAM in MiB (1..=1048576), starting at [`RAM_BASE`].
    #[serde(deserialize_with = "int::<_, u64, 1, RAM_MIB_MAX, 1>")]
    pub ram_mib: u64,
    /// Groups of identical CPUs (`[[machine.cpus]]`), in CPU-number order:
    /// the first group's CPUs are numbered from 0.
    pub cpus: Vec<CpuGroup>,
}

/// `[[machine.cpus]]`: `count` identical CPUs.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct CpuGroup {
    /// Number of CPUs in the group (1..=64; at most 64 in the machine).
    #[serde(deserialize_with = "int::<_, u32, 1, CPUS_MAX_I, 1>")]
    pub count: u32,
    /// FEAT_FGT (fine-grained traps of the SPE and PMU registers; default
    /// true).
    #[serde(default = "default_true")]
    pub fgt: bool,
    /// The CPUs' PMU.
    pub pmu: PmuSpec,
    /// The CPUs' SPE unit; `None` (no `[machine.cpus.spe]` table) when they
    /// have none.
    #[serde(default)]
    pub spe: Option<SpeUnitSpec>,
    /// The caches, TLB, branch predictor and timing behind real code
    /// (`[machine.cpus.uarch]`; every key optional).
    #[serde(default)]
    pub uarch: UarchSpec,
}

/// `[machine.cpus.uarch]`: the microarchitecture model behind real A64
/// code ([`UarchConfig`]); the defaults are roughly a Neoverse N1. Sizes
/// in KiB, latencies in cycles.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default, expecting = "a table")]
pub struct UarchSpec {
    /// Cache line bytes (every level).
    pub line_bytes: u16,
    /// L1 data cache KiB.
    pub l1d_kib: u32,
    /// L1 data cache ways.
    pub l1d_ways: u16,
    /// L1 hit latency.
    pub l1d_latency: u16,
    /// L2 KiB.
    pub l2_kib: u32,
    /// L2 ways.
    pub l2_ways: u16,
    /// L2 hit latency.
    pub l2_latency: u16,
    /// Shared last-level cache KiB (CPU 0's group sets it for the machine).
    pub llc_kib: u32,
    /// Last-level cache ways.
    pub llc_ways: u16,
    /// Last-level cache hit latency.
    pub llc_latency: u16,
    /// Data TLB entries.
    pub tlb_entries: u16,
    /// Data TLB ways.
    pub tlb_ways: u16,
    /// Cycles of a table walk.
    pub tlb_walk_latency: u16,
    /// Branch predictor counters and BTB entries (a power of two).
    pub branch_entries: u32,
    /// Return-stack depth.
    pub return_stack: u16,
    /// Cycles of a misprediction.
    pub mispredict_penalty: u16,
    /// Cycles for a line another core holds modified.
    pub peer_latency: u16,
    /// Cycles for a line from DRAM.
    pub dram_latency: u16,
}

impl Default for UarchSpec {
    fn default() -> Self {
        let d = UarchConfig::default();
        UarchSpec {
            line_bytes: d.l1d.line,
            l1d_kib: d.l1d.size >> 10,
            l1d_ways: d.l1d.ways,
            l1d_latency: d.l1d.latency,
            l2_kib: d.l2.size >> 10,
            l2_ways: d.l2.ways,
            l2_latency: d.l2.latency,
            llc_kib: d.llc.size >> 10,
            llc_ways: d.llc.ways,
            llc_latency: d.llc.latency,
            tlb_entries: d.tlb.entries,
            tlb_ways: d.tlb.ways,
            tlb_walk_latency: d.tlb.walk_latency,
            branch_entries: d.branch.entries,
            return_stack: d.branch.return_stack,
            mispredict_penalty: d.branch.mispredict_penalty,
            peer_latency: d.peer_latency,
            dram_latency: d.dram_latency,
        }
    }
}

impl UarchSpec {
    /// The simulator's model.
    pub fn uarch_config(&self) -> UarchConfig {
        let cache = |kib: u32, ways, latency| CacheGeometry {
            size: kib.saturating_mul(1024),
            ways,
            line: self.line_bytes,
            latency,
        };
        UarchConfig {
            l1d: cache(self.l1d_kib, self.l1d_ways, self.l1d_latency),
            l2: cache(self.l2_kib, self.l2_ways, self.l2_latency),
            llc: cache(self.llc_kib, self.llc_ways, self.llc_latency),
            tlb: TlbConfig {
                entries: self.tlb_entries,
                ways: self.tlb_ways,
                walk_latency: self.tlb_walk_latency,
            },
            branch: BranchConfig {
                entries: self.branch_entries,
                return_stack: self.return_stack,
                mispredict_penalty: self.mispredict_penalty,
            },
            peer_latency: self.peer_latency,
            dram_latency: self.dram_latency,
        }
    }
}

/// `[machine.cpus.pmu]`: a PMUv3.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct PmuSpec {
    /// Event counters, PMCR_EL0.N (0..=31).
    #[serde(deserialize_with = "int::<_, u8, 0, COUNTERS_MAX_I, 1>")]
    pub counters: u8,
    /// The PMU version (ID_AA64DFR0_EL1.PMUVer).
    pub version: PmuVersion,
    /// FEAT_HPMN0: MDCR_EL2.HPMN may be 0 (default false).
    #[serde(default)]
    pub hpmn0: bool,
}

/// `[machine.cpus.spe]`: an SPE unit (the IMPLEMENTATION DEFINED choices
/// behind PMSIDR_EL1 and PMBIDR_EL1; see [`SpeConfig`]).
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct SpeUnitSpec {
    /// The SPE version (ID_AA64DFR0_EL1.PMSVer; default 1.2).
    #[serde(default = "default_spe_version")]
    pub version: SpeVersion,
    /// PMSIDR_EL1.INTERVAL, the recommended minimum interval: 0 (256),
    /// 2 (512), 3 (768), 4 (1024), 5 (1536), 6 (2048), 7 (3072) or 8 (4096);
    /// default 0.
    #[serde(default, deserialize_with = "interval_field")]
    pub interval_field: u8,
    /// PMSIDR_EL1.MaxSize: records are at most `2^max_record_log2` bytes
    /// (6..=11; default 6).
    #[serde(
        default = "default_record_log2",
        deserialize_with = "int::<_, u8, RECORD_LOG2_MIN, RECORD_LOG2_MAX, 1>"
    )]
    pub max_record_log2: u8,
    /// PMBIDR_EL1.MaxBuffSize in bytes; 0 (the default) for no limit. Needs
    /// version 1.5 to be non-zero and must be a size the field represents
    /// exactly.
    #[serde(default, deserialize_with = "int::<_, u64, 0, I64_MAX, 1>")]
    pub max_buffer_size: u64,
    /// PMBIDR_EL1.Align: records and PMBPTR_EL1 are aligned to
    /// `2^align_log2` bytes (0..=max_record_log2; default 0).
    #[serde(default, deserialize_with = "int::<_, u8, 0, RECORD_LOG2_MAX, 1>")]
    pub align_log2: u8,
    /// Records the unit holds before it must write one (0..=1024; default 4).
    #[serde(
        default = "default_queue_capacity",
        deserialize_with = "int::<_, u32, 0, QUEUE_MAX, 1>"
    )]
    pub queue_capacity: u32,
    /// PMSIDR_EL1.CountSize: 16-bit saturating latency counters instead of
    /// 12-bit (default false).
    #[serde(default)]
    pub countsize_16bit: bool,
}

fn default_spe_version() -> SpeVersion {
    SpeVersion::V1p2
}

fn default_record_log2() -> u8 {
    6
}

fn default_queue_capacity() -> u32 {
    4
}

/// `[host]`: the host kernel.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct HostSpec {
    /// The host's kernel work, a `kernel-*` workload, run on every CPU
    /// between vCPU slices.
    pub workload: String,
    /// Event counters the host keeps for itself (the boot-time reservation:
    /// MDCR_EL2.HPMN = counters - this); 0..=counters, default 0.
    #[serde(default, deserialize_with = "int::<_, u8, 0, COUNTERS_MAX_I, 1>")]
    pub pmu_reserved_counters: u8,
    /// The host's SPE session on every CPU with an SPE unit; `None` when the
    /// host does not sample.
    #[serde(default)]
    pub spe: Option<SpeSessionSpec>,
    /// The host's perf events on every CPU (`[[host.pmu_events]]`).
    #[serde(default)]
    pub pmu_events: Vec<PmuEventSpec>,
}

/// `[host.spe]` or `[vm.spe]`'s session part: a perf-like SPE session.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct SpeSessionSpec {
    /// Sampling interval in operations: a multiple of 256 (PMSIRR_EL1 keeps
    /// bits \[31:8\]), at least the unit's recommended minimum.
    #[serde(deserialize_with = "int::<_, u32, INTERVAL_STEP, INTERVAL_MAX, INTERVAL_STEP>")]
    pub interval: u32,
    /// Profiling buffer per CPU in KiB (a multiple of 4, one page).
    #[serde(deserialize_with = "int::<_, u64, BUFFER_KIB_STEP, BUFFER_KIB_MAX, BUFFER_KIB_STEP>")]
    pub buffer_kib: u64,
}

/// `[[host.pmu_events]]` or `[[vm.pmu.events]]`: one perf event, counted by
/// one event counter.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct PmuEventSpec {
    /// The architected event number; written in the file as a name
    /// (`cpu_cycles`, see [`pmu_event_names`]) or a number.
    #[serde(deserialize_with = "event_number")]
    pub event: u16,
    /// Count at EL0 (default true).
    #[serde(default = "default_true")]
    pub el0: bool,
    /// Count at EL1 (default true).
    #[serde(default = "default_true")]
    pub el1: bool,
    /// Count at EL2 (default true).
    #[serde(default = "default_true")]
    pub el2: bool,
    /// Interrupt (sample) every `period` events; `None` counts only.
    #[serde(default, deserialize_with = "opt_int::<_, u32, 1, PERIOD_MAX, 1>")]
    pub period: Option<u32>,
}

/// `[[vm]]`: one virtual machine.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct VmSpec {
    /// The VM's name, unique in the scenario (same characters as
    /// [`Scenario::name`]).
    pub name: String,
    /// Guest RAM in MiB.
    #[serde(deserialize_with = "int::<_, u64, 1, RAM_MIB_MAX, 1>")]
    pub ram_mib: u64,
    /// The VMM's RLIMIT_MEMLOCK in KiB; `None` for unlimited.
    #[serde(default, deserialize_with = "opt_int::<_, u64, 0, I64_MAX, 1>")]
    pub memlock_kib: Option<u64>,
    /// The guest's user-space workload (a Rust guest kernel runs it);
    /// empty for a VM that boots an [`VmSpec::image`].
    #[serde(default)]
    pub workload: String,
    /// The image the VM boots instead of a workload: `builtin:NAME` or the
    /// path of an ELF64 AArch64 file (relative to the scenario file).
    #[serde(default)]
    pub image: Option<String>,
    /// The image's `/chosen/bootargs`.
    #[serde(default)]
    pub bootargs: Option<String>,
    /// Instructions each vCPU of an image may retire before the run stops
    /// it (default [`DEFAULT_MAX_INSNS`]).
    #[serde(default, deserialize_with = "opt_int::<_, u64, 1, I64_MAX, 1>")]
    pub max_insns: Option<u64>,
    /// The seed of the VM's workload (default: derived from the scenario's
    /// seed and the VM's place in the file), so that two VMs can run the
    /// same operations.
    #[serde(default, deserialize_with = "opt_int::<_, u64, 0, I64_MAX, 1>")]
    pub seed: Option<u64>,
    /// vCPUs (1..=64; default 1).
    #[serde(
        default = "default_vcpus",
        deserialize_with = "int::<_, u32, 1, VCPUS_MAX_I, 1>"
    )]
    pub vcpus: u32,
    /// The vPMU; `None` when the VM has none (KVM_ARM_VCPU_PMU_V3 not set).
    #[serde(default)]
    pub pmu: Option<VmPmuSpec>,
    /// Guest SPE; `None` when the VM has none (KVM_ARM_VCPU_HAS_SPE not set).
    #[serde(default)]
    pub spe: Option<VmSpeSpec>,
}

fn default_vcpus() -> u32 {
    1
}

/// `[vm.pmu]`: the VM's PMUv3.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct VmPmuSpec {
    /// Partitioned (the guest owns counters `0..HPMN`) or emulated.
    pub mode: PmuMode,
    /// The guest's PMCR_EL0.N; `None` for every counter the VM may have
    /// ([`Scenario::vm_counter_limit`]).
    #[serde(default, deserialize_with = "opt_int::<_, u8, 0, COUNTERS_MAX_I, 1>")]
    pub nr_counters: Option<u8>,
    /// The overflow interrupt, a PPI (16..=31; default 23).
    #[serde(
        default = "default_pmu_irq",
        deserialize_with = "int::<_, u32, PPI_FIRST_I, PPI_LAST_I, 1>"
    )]
    pub irq: u32,
    /// Event filters (`[[vm.pmu.filter]]`), installed in order.
    #[serde(default)]
    pub filter: Vec<EventFilterSpec>,
    /// The guest kernel's perf events (`[[vm.pmu.events]]`).
    #[serde(default)]
    pub events: Vec<PmuEventSpec>,
}

fn default_pmu_irq() -> u32 {
    DEFAULT_PMU_IRQ
}

/// `[[vm.pmu.filter]]`: one `struct kvm_pmu_event_filter`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct EventFilterSpec {
    /// Allow or deny the range. The first filter sets the default for every
    /// other event: deny if it allows, allow if it denies.
    pub action: FilterAction,
    /// First event number of the range.
    #[serde(deserialize_with = "int::<_, u16, 0, EVENT_MAX_I, 1>")]
    pub first_event: u16,
    /// Number of events in the range.
    #[serde(deserialize_with = "int::<_, u16, 0, EVENT_MAX_I, 1>")]
    pub count: u16,
}

/// `[vm.spe]`: guest SPE.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
pub struct VmSpeSpec {
    /// The buffer management interrupt, a PPI (16..=31; default 21).
    #[serde(
        default = "default_spe_irq",
        deserialize_with = "int::<_, u32, PPI_FIRST_I, PPI_LAST_I, 1>"
    )]
    pub irq: u32,
    /// KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE in bytes; 0 (the default) for the
    /// SPU's own maximum.
    #[serde(default, deserialize_with = "int::<_, u64, 0, I64_MAX, 1>")]
    pub max_buffer_size: u64,
    /// The guest driver's sampling interval (as [`SpeSessionSpec::interval`]);
    /// required for a workload VM, absent for an image (which runs its
    /// own driver).
    #[serde(
        default,
        deserialize_with = "opt_int::<_, u32, INTERVAL_STEP, INTERVAL_MAX, INTERVAL_STEP>"
    )]
    pub interval: Option<u32>,
    /// The guest driver's buffer per vCPU in KiB (a multiple of 4); as
    /// `interval`.
    #[serde(
        default,
        deserialize_with = "opt_int::<_, u64, BUFFER_KIB_STEP, BUFFER_KIB_MAX, BUFFER_KIB_STEP>"
    )]
    pub buffer_kib: Option<u64>,
}

fn default_spe_irq() -> u32 {
    DEFAULT_SPE_IRQ
}

// ---------------------------------------------------------------------------
// Keyword enums
// ---------------------------------------------------------------------------

/// Declares an enum written in scenario files as one of a fixed set of
/// strings, with its `Deserialize` (an unknown string is out of range, a
/// non-string is the wrong type).
macro_rules! keyword_enum {
    (
        $(#[$meta:meta])*
        pub enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident => $text:literal, )+
        }
    ) => {
        $(#[$meta])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum $name {
            $( $(#[$vmeta])* $variant, )+
        }

        impl $name {
            /// Every value with its spelling in a scenario file, in order.
            pub const ALL: &'static [($name, &'static str)] = &[$(($name::$variant, $text)),+];

            /// The value's spelling in a scenario file.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $( $name::$variant => $text, )+
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                d.deserialize_str(KeywordVisitor($name::ALL))
            }
        }
    };
}

keyword_enum! {
    /// `run.schedule`: where vCPUs run.
    #[derive(Default)]
    pub enum Schedule {
        /// Every round each CPU runs one vCPU slice and the vCPUs move on to
        /// the next CPU, so every vCPU runs on every CPU.
        #[default]
        Rotate => "rotate",
        /// vCPU `i`, counting every VM's vCPUs in `[[vm]]` order, always runs
        /// on CPU `i % cpus` ([`Scenario::vm_cpus`]).
        Pinned => "pinned",
    }
}

keyword_enum! {
    /// `machine.host_mode`: where the host kernel runs.
    pub enum HostMode {
        /// At EL2 with FEAT_VHE (HCR_EL2.E2H and TGE).
        Vhe => "vhe",
        /// At EL1; only the world switch runs at EL2.
        Nvhe => "nvhe",
    }
}

keyword_enum! {
    /// `machine.cpus.pmu.version`: a PMUv3 level.
    pub enum PmuVersion {
        /// FEAT_PMUv3.
        V3 => "3.0",
        /// FEAT_PMUv3p1 (16-bit event numbers, MDCR_EL2.HPMD).
        V3p1 => "3.1",
        /// FEAT_PMUv3p4.
        V3p4 => "3.4",
        /// FEAT_PMUv3p5 (64-bit counters, MDCR_EL2.HLP and HCCD).
        V3p5 => "3.5",
        /// FEAT_PMUv3p7.
        V3p7 => "3.7",
        /// FEAT_PMUv3p8.
        V3p8 => "3.8",
        /// FEAT_PMUv3p9.
        V3p9 => "3.9",
    }
}

keyword_enum! {
    /// `machine.cpus.spe.version`: an SPE version.
    pub enum SpeVersion {
        /// FEAT_SPE.
        V1p0 => "1.0",
        /// FEAT_SPEv1p1.
        V1p1 => "1.1",
        /// FEAT_SPEv1p2 (FnE, DISCARD mode).
        V1p2 => "1.2",
        /// FEAT_SPEv1p3.
        V1p3 => "1.3",
        /// FEAT_SPEv1p4 (data source filtering).
        V1p4 => "1.4",
        /// FEAT_SPEv1p5 (PMBIDR_EL1.MaxBuffSize).
        V1p5 => "1.5",
    }
}

keyword_enum! {
    /// `vm.pmu.mode`: how the vPMU is provided.
    pub enum PmuMode {
        /// The guest owns the hardware counters `0..HPMN` directly.
        Partitioned => "partitioned",
        /// Every guest access traps and is emulated on host perf events,
        /// backed by the counters the host leaves to guests.
        Emulated => "emulated",
    }
}

keyword_enum! {
    /// `vm.pmu.filter.action`.
    pub enum FilterAction {
        /// `KVM_PMU_EVENT_ALLOW`.
        Allow => "allow",
        /// `KVM_PMU_EVENT_DENY`.
        Deny => "deny",
    }
}

impl PmuVersion {
    /// The ID_AA64DFR0_EL1.PMUVer value.
    pub const fn pmu_ver(self) -> PmuVer {
        match self {
            PmuVersion::V3 => PmuVer::V3,
            PmuVersion::V3p1 => PmuVer::V3p1,
            PmuVersion::V3p4 => PmuVer::V3p4,
            PmuVersion::V3p5 => PmuVer::V3p5,
            PmuVersion::V3p7 => PmuVer::V3p7,
            PmuVersion::V3p8 => PmuVer::V3p8,
            PmuVersion::V3p9 => PmuVer::V3p9,
        }
    }

    /// Number of event numbers: 1024 for PMUv3, 65536 from PMUv3p1.
    pub const fn event_space(self) -> u32 {
        if self.pmu_ver().at_least(PmuVer::V3p1) {
            EVENT_SPACE_V3P1
        } else {
            EVENT_SPACE_V3
        }
    }
}

impl SpeVersion {
    /// The ID_AA64DFR0_EL1.PMSVer value.
    pub const fn pms_ver(self) -> PmsVer {
        match self {
            SpeVersion::V1p0 => PmsVer::V1p0,
            SpeVersion::V1p1 => PmsVer::V1p1,
            SpeVersion::V1p2 => PmsVer::V1p2,
            SpeVersion::V1p3 => PmsVer::V1p3,
            SpeVersion::V1p4 => PmsVer::V1p4,
            SpeVersion::V1p5 => PmsVer::V1p5,
        }
    }
}

impl HostMode {
    /// The hypervisor's host mode.
    pub const fn kvm_mode(self) -> hyperprof_kvm::vm::HostMode {
        match self {
            HostMode::Vhe => hyperprof_kvm::vm::HostMode::Vhe,
            HostMode::Nvhe => hyperprof_kvm::vm::HostMode::Nvhe,
        }
    }
}

impl FilterAction {
    /// `KVM_PMU_EVENT_ALLOW` or `KVM_PMU_EVENT_DENY`.
    pub const fn kvm_action(self) -> u8 {
        match self {
            FilterAction::Allow => KVM_PMU_EVENT_ALLOW,
            FilterAction::Deny => KVM_PMU_EVENT_DENY,
        }
    }
}

// ---------------------------------------------------------------------------
// Conversions for the engine
// ---------------------------------------------------------------------------

impl MachineSpec {
    /// Number of CPUs (the sum of the groups' counts).
    pub fn cpu_count(&self) -> usize {
        self.cpus.iter().map(|g| g.count as usize).sum()
    }

    /// The group CPU `cpu` belongs to.
    pub fn group_of(&self, cpu: usize) -> Option<&CpuGroup> {
        let mut first = 0usize;
        for g in &self.cpus {
            let end = first.saturating_add(g.count as usize);
            if cpu < end {
                return Some(g);
            }
            first = end;
        }
        None
    }

    /// The simulator's machine: one PE per CPU, RAM at [`RAM_BASE`]. SPE
    /// units keep [`SpeConfig::default`]'s seed.
    pub fn machine_config(&self) -> MachineConfig {
        let pes = self
            .cpus
            .iter()
            .flat_map(|g| std::iter::repeat_n(g.pe_config(), g.count as usize))
            .collect();
        MachineConfig {
            pes,
            ram_base: RAM_BASE,
            ram_size: self.ram_mib << 20,
        }
    }
}

impl CpuGroup {
    /// The simulator's description of one CPU of the group.
    pub fn pe_config(&self) -> PeConfig {
        PeConfig {
            pmu: self.pmu.pmu_config(),
            spe: self.spe.as_ref().map(SpeUnitSpec::spe_config),
            fgt: self.fgt,
            uarch: self.uarch.uarch_config(),
        }
    }
}

impl PmuSpec {
    /// The simulator's PMU (EL2 is always implemented).
    pub fn pmu_config(&self) -> PmuConfig {
        PmuConfig {
            counters: self.counters,
            version: self.version.pmu_ver(),
            hpmn0: self.hpmn0,
            el2_implemented: true,
        }
    }
}

impl SpeUnitSpec {
    /// The simulator's SPE unit, with [`SpeConfig::default`]'s seed.
    pub fn spe_config(&self) -> SpeConfig {
        SpeConfig {
            pms_ver: self.version.pms_ver(),
            interval_field: self.interval_field,
            max_record_log2: self.max_record_log2,
            max_buff_size: self.max_buffer_size,
            align_log2: self.align_log2,
            queue_capacity: self.queue_capacity as usize,
            countsize_16bit: self.countsize_16bit,
            ..SpeConfig::default()
        }
    }

    /// The recommended minimum sampling interval (PMSIDR_EL1.INTERVAL).
    pub fn min_interval(&self) -> u32 {
        pmsidr_el1::interval_from_field(u64::from(self.interval_field)).unwrap_or(256)
    }

    /// Both units report the same ID registers, so KVM sees one SPU: equal
    /// in everything but the record queue.
    pub fn same_spu(&self, other: &SpeUnitSpec) -> bool {
        self.version == other.version
            && self.interval_field == other.interval_field
            && self.max_record_log2 == other.max_record_log2
            && self.max_buffer_size == other.max_buffer_size
            && self.align_log2 == other.align_log2
            && self.countsize_16bit == other.countsize_16bit
    }
}

impl SpeSessionSpec {
    /// The SPE driver's session (other settings at their defaults).
    pub fn session_config(&self) -> SpeSessionConfig {
        SpeSessionConfig {
            interval: self.interval,
            ..SpeSessionConfig::default()
        }
    }

    /// The buffer size in bytes.
    pub fn buffer_bytes(&self) -> u64 {
        self.buffer_kib.saturating_mul(1024)
    }
}

impl VmSpeSpec {
    /// The guest driver's session, the same keys as the host's; `None`
    /// for a VM that boots an image (its own driver chooses).
    pub fn session(&self) -> Option<SpeSessionSpec> {
        Some(SpeSessionSpec {
            interval: self.interval?,
            buffer_kib: self.buffer_kib?,
        })
    }
}

impl PmuEventSpec {
    /// The PMU driver's event.
    pub fn event_spec(&self) -> EventSpec {
        EventSpec {
            event: self.event,
            filter: Filter {
                el0: self.el0,
                el1: self.el1,
                el2: self.el2,
            },
            period: self.period,
        }
    }
}

impl EventFilterSpec {
    /// The `struct kvm_pmu_event_filter`.
    pub fn kvm_filter(&self) -> EventFilter {
        EventFilter {
            base_event: self.first_event,
            nevents: self.count,
            action: self.action.kvm_action(),
        }
    }
}

impl VmSpec {
    /// Guest RAM in bytes.
    pub fn ram_bytes(&self) -> u64 {
        self.ram_mib.saturating_mul(1 << 20)
    }

    /// RLIMIT_MEMLOCK in bytes, `u64::MAX` for unlimited
    /// ([`hyperprof_kvm::spe_attr::MEMLOCK_UNLIMITED`]).
    pub fn memlock_bytes(&self) -> u64 {
        match self.memlock_kib {
            Some(k) => k.saturating_mul(1024),
            None => hyperprof_kvm::spe_attr::MEMLOCK_UNLIMITED,
        }
    }
}

/// The PMU event names a scenario may use (`cpu_cycles`, ...): the events
/// the machine counts, lower case, in event-number order.
pub fn pmu_event_names() -> Vec<String> {
    ALL_EVENTS
        .iter()
        .map(|e| format!("{e:?}").to_ascii_lowercase())
        .collect()
}

/// The event number of a PMU event name (case-insensitive).
pub fn pmu_event_number(name: &str) -> Option<u16> {
    ALL_EVENTS
        .iter()
        .find(|e| format!("{e:?}").eq_ignore_ascii_case(name))
        .map(|e| e.number())
}

// ---------------------------------------------------------------------------
// Loading
// ---------------------------------------------------------------------------

impl Scenario {
    /// Parses and validates `text`, the contents of the file `path` (used in
    /// error messages only).
    pub fn parse(text: &str, path: &Path) -> Result<Scenario, ScenarioError> {
        let tree = match DeTable::parse(text) {
            Ok(tree) => tree,
            Err(e) => return Err(syntax_error(text, path, &e)),
        };
        let index = SpanIndex::new(&tree);
        let mut scenario: Scenario =
            toml::from_str(text).map_err(|e| shape_error(text, path, &index, &e))?;
        scenario.resolve_image_paths(path);
        scenario.check().map_err(|(field, kind)| {
            let at = index.locate(&field).map(|off| line_col(text, off));
            ScenarioError {
                file: path.to_path_buf(),
                line: at.map(|(l, _)| l),
                column: at.map(|(_, c)| c),
                field,
                kind,
            }
        })?;
        Ok(scenario)
    }

    /// Reads, parses and validates the file `path`: a regular file of at
    /// most 16 MiB ([`crate::files::read_small_text`]; a FIFO or device is
    /// refused at once, not read).
    pub fn load(path: &Path) -> Result<Scenario, crate::error::Error> {
        let text = crate::files::read_small_text(path)?;
        Scenario::parse(&text, path).map_err(|e| crate::error::Error::Usage(e.to_string()))
    }

    /// The built-in default scenario as TOML, with a comment on every key.
    pub fn default_text() -> &'static str {
        DEFAULT_TEXT
    }

    /// The built-in default scenario ([`Scenario::default_text`], parsed).
    pub fn builtin_default() -> Scenario {
        // The text is a constant; a unit test proves that it parses and
        // validates.
        Scenario::parse(DEFAULT_TEXT, Path::new("<built-in default>"))
            .expect("the built-in default scenario is valid")
    }

    /// Validates a scenario built or changed in code: the field ranges and
    /// every rule [`Scenario::parse`] applies. The error has no line (there
    /// is no file); its `file` is `<scenario>`.
    pub fn validate(&self) -> Result<(), ScenarioError> {
        self.check().map_err(|(field, kind)| ScenarioError {
            file: PathBuf::from("<scenario>"),
            line: None,
            column: None,
            field,
            kind,
        })
    }

    /// Number of CPUs of the machine.
    pub fn cpu_count(&self) -> usize {
        self.machine.cpu_count()
    }

    /// The CPUs the vCPUs of VM `vm` may run on, as a VMM pins them: a VM
    /// with guest SPE uses the CPUs of its SPU (the SPE unit of the first
    /// CPU that has one, and every CPU with the same unit), any other VM
    /// every CPU.
    pub fn vm_cpu_pool(&self, vm: usize) -> Vec<usize> {
        let cpus = self.cpu_count();
        let Some(spec) = self.vms.get(vm) else {
            return Vec::new();
        };
        if spec.spe.is_none() {
            return (0..cpus).collect();
        }
        let unit_of = |cpu: usize| self.machine.group_of(cpu).and_then(|g| g.spe.as_ref());
        let Some(first) = (0..cpus).find_map(unit_of) else {
            return Vec::new();
        };
        (0..cpus)
            .filter(|&c| unit_of(c).is_some_and(|u| u.same_spu(first)))
            .collect()
    }

    /// The CPUs the vCPUs of VM `vm` run on: its whole pool
    /// ([`Scenario::vm_cpu_pool`]) with [`Schedule::Rotate`]; with
    /// [`Schedule::Pinned`], pool entry `i % pool size` for each of its
    /// vCPUs' global index `i`, in vCPU order. Empty when there is no such
    /// VM or no CPU it may use.
    pub fn vm_cpus(&self, vm: usize) -> Vec<usize> {
        let Some(spec) = self.vms.get(vm) else {
            return Vec::new();
        };
        let pool = self.vm_cpu_pool(vm);
        if pool.is_empty() {
            return Vec::new();
        }
        match self.run.schedule {
            Schedule::Rotate => pool,
            Schedule::Pinned => {
                let first: usize = self.vms[..vm].iter().map(|v| v.vcpus as usize).sum();
                (first..first + spec.vcpus as usize)
                    .map(|i| pool[i % pool.len()])
                    .collect()
            }
        }
    }

    /// The most event counters a VM may have: the machine's counters minus
    /// the host's reservation (in both modes: emulated guests are backed by
    /// the counters the host leaves to guests).
    pub fn vm_counter_limit(&self) -> u8 {
        let counters = self.machine.cpus.first().map_or(0, |g| g.pmu.counters);
        counters.saturating_sub(self.host.pmu_reserved_counters)
    }

    /// VM `vm`'s number of event counters (its `nr_counters`, or
    /// [`Scenario::vm_counter_limit`]); `None` when it has no vPMU.
    pub fn vm_nr_counters(&self, vm: usize) -> Option<u8> {
        let pmu = self.vms.get(vm)?.pmu.as_ref()?;
        Some(pmu.nr_counters.unwrap_or_else(|| self.vm_counter_limit()))
    }

    /// The maximum buffer size VM `vm` gets (the value to set with
    /// KVM_ARM_VCPU_SPE_MAX_BUFFER_SIZE): its `max_buffer_size`, or the
    /// SPU's own (0 = no limit) when that is 0. `None` without guest SPE or
    /// when the VM's CPUs have no SPE unit.
    pub fn vm_max_buffer_size(&self, vm: usize) -> Option<u64> {
        let spe = self.vms.get(vm)?.spe.as_ref()?;
        if spe.max_buffer_size != 0 {
            return Some(spe.max_buffer_size);
        }
        let cpu = *self.vm_cpus(vm).first()?;
        let unit = self.machine.group_of(cpu)?.spe.as_ref()?;
        Some(unit.max_buffer_size)
    }
}

// ---------------------------------------------------------------------------
// Errors
// ---------------------------------------------------------------------------

/// A scenario that cannot be loaded. Its `Display` is one line:
/// `FILE:LINE:COLUMN: FIELD: WHAT` (line and column when known, the field
/// path when there is one).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}", render_error(self))]
pub struct ScenarioError {
    /// The scenario file.
    pub file: PathBuf,
    /// 1-based line of the error, when it has a place in the file.
    pub line: Option<u32>,
    /// 1-based column (in characters) of the error, with the line.
    pub column: Option<u32>,
    /// Dotted path of the field, e.g. `vm[1].pmu.nr_counters`; empty when
    /// the error concerns no field (a syntax error outside any key, an I/O
    /// error).
    pub field: String,
    /// What is wrong.
    pub kind: ErrorKind,
}

/// The classes of scenario errors.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ErrorKind {
    /// The text is not valid TOML.
    #[error("TOML syntax error: {message}")]
    Syntax {
        /// The parser's description.
        message: String,
    },
    /// A required key is missing (the field path names it).
    #[error("missing required key")]
    MissingKey,
    /// A key the format does not have.
    #[error(
        "unknown key \"{key}\"; accepted keys here: {}",
        list_or_none(accepted)
    )]
    UnknownKey {
        /// The key.
        key: String,
        /// The keys the table accepts.
        accepted: Vec<String>,
    },
    /// A value of the wrong type.
    #[error("wrong type: expected {expected}, found {found}")]
    WrongType {
        /// What the field takes.
        expected: String,
        /// What the file has.
        found: String,
    },
    /// A value of the right type outside the values the field takes.
    #[error("value out of range: expected {expected}, found {found}")]
    OutOfRange {
        /// What the field takes.
        expected: String,
        /// What the file has.
        found: String,
    },
    /// Every field is well formed, but together they describe something
    /// that cannot be built or run.
    #[error("impossible configuration: {reason}")]
    Impossible {
        /// Why, and what would fix it.
        reason: String,
    },
    /// An image a VM names cannot be read or loaded.
    #[error("image {image}: {why}")]
    Image {
        /// The image as named (`builtin:NAME` or its path).
        image: String,
        /// What is wrong with it.
        why: String,
    },
    /// Any other deserialization error.
    #[error("invalid value: {message}")]
    Other {
        /// The deserializer's description.
        message: String,
    },
}

fn list_or_none(keys: &[String]) -> String {
    if keys.is_empty() {
        "none".to_string()
    } else {
        keys.join(", ")
    }
}

fn render_error(e: &ScenarioError) -> String {
    let mut s = e.file.display().to_string();
    if let Some(line) = e.line {
        s.push_str(&format!(":{line}"));
        if let Some(col) = e.column {
            s.push_str(&format!(":{col}"));
        }
    }
    s.push_str(": ");
    if !e.field.is_empty() {
        s.push_str(&e.field);
        s.push_str(": ");
    }
    s.push_str(&e.kind.to_string());
    // One line, whatever the parts contain.
    s.replace(['\n', '\r'], " ")
}

/// 1-based line and column (in characters) of byte `offset` of `text`
/// (saturating at `u32::MAX`).
fn line_col(text: &str, offset: usize) -> (u32, u32) {
    let mut end = offset.min(text.len());
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let before = &text[..end];
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before[line_start..].chars().count() + 1;
    let narrow = |n: usize| u32::try_from(n).unwrap_or(u32::MAX);
    (narrow(line), narrow(column))
}

/// A TOML syntax error, with the field being parsed when it is on the
/// error's line.
fn syntax_error(text: &str, path: &Path, err: &toml::de::Error) -> ScenarioError {
    let offset = err.span().map(|s| s.start);
    let at = offset.map(|o| line_col(text, o));
    let field = match (offset, at) {
        (Some(off), Some((line, _))) => {
            let (partial, _) = DeTable::parse_recoverable(text);
            SpanIndex::new(&partial).field_on_line(text, line, off)
        }
        _ => String::new(),
    };
    ScenarioError {
        file: path.to_path_buf(),
        line: at.map(|(l, _)| l),
        column: at.map(|(_, c)| c),
        field,
        kind: ErrorKind::Syntax {
            message: err.message().to_string(),
        },
    }
}

/// A deserialization error: classified from serde's standard messages
/// (`missing field`, `unknown field`, `invalid type`, `invalid value`), its
/// field found from its span.
fn shape_error(text: &str, path: &Path, index: &SpanIndex, err: &toml::de::Error) -> ScenarioError {
    let msg = err.message();
    let span = err.span();
    let entry = span.as_ref().and_then(|s| index.at_span(s));
    let here = entry.map_or(String::new(), |e| e.path.clone());
    let (field, kind) = if let Some(key) = msg
        .strip_prefix("missing field `")
        .and_then(|r| r.strip_suffix('`'))
    {
        (join_path(&here, key), ErrorKind::MissingKey)
    } else if let Some(rest) = msg.strip_prefix("unknown field `") {
        let key = match entry.and_then(|e| e.key.clone()) {
            Some(k) => k,
            None => rest.split('`').next().unwrap_or_default().to_string(),
        };
        let accepted = rest
            .split_once("`, expected ")
            .map(|(_, list)| backticked(list))
            .unwrap_or_default();
        (here, ErrorKind::UnknownKey { key, accepted })
    } else if let Some((expected, mut found)) = split_expected(msg, "invalid type: ") {
        // TOML hands a datetime to serde as a table: show it as written.
        if let Some(e) = entry.filter(|e| e.datetime) {
            let written = text.get(e.value_span.clone()).unwrap_or_default();
            found = format!("a datetime ({})", written.trim());
        }
        (here, ErrorKind::WrongType { expected, found })
    } else if let Some((expected, found)) = split_expected(msg, "invalid value: ") {
        (here, ErrorKind::OutOfRange { expected, found })
    } else {
        (
            here,
            ErrorKind::Other {
                message: msg.to_string(),
            },
        )
    };
    let at = span.map(|s| line_col(text, s.start));
    ScenarioError {
        file: path.to_path_buf(),
        line: at.map(|(l, _)| l),
        column: at.map(|(_, c)| c),
        field,
        kind,
    }
}

/// `PREFIX{unexpected}, expected {expected}` as (expected, found), in the
/// scenario's words.
fn split_expected(msg: &str, prefix: &str) -> Option<(String, String)> {
    let rest = msg.strip_prefix(prefix)?;
    let (found, expected) = rest.rsplit_once(", expected ")?;
    Some((expected_words(expected), found_words(found)))
}

/// serde's words for TOML's: a sequence is an array, a map a table.
fn expected_words(expected: &str) -> String {
    match expected {
        "a sequence" => "an array".to_string(),
        "a map" => "a table".to_string(),
        other => other.to_string(),
    }
}

/// serde's `Unexpected` as the value itself: `integer `300`` is `300`,
/// `string "four"` is `"four"`.
fn found_words(found: &str) -> String {
    if let Some(s) = found.strip_prefix("string ") {
        return s.to_string();
    }
    for prefix in [
        "integer `",
        "floating point `",
        "boolean `",
        "unsigned integer `",
        "character `",
    ] {
        if let Some(v) = found.strip_prefix(prefix).and_then(|r| r.strip_suffix('`')) {
            return v.to_string();
        }
    }
    match found {
        "map" => "a table".to_string(),
        "sequence" => "an array".to_string(),
        other => other.to_string(),
    }
}

/// The `quoted` names in serde's "expected one of `a`, `b`" lists.
fn backticked(list: &str) -> Vec<String> {
    list.split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// A key as it appears in a dotted path (quoted unless bare).
fn key_part(key: &str) -> Cow<'_, str> {
    let bare = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if bare {
        Cow::Borrowed(key)
    } else {
        Cow::Owned(format!("{key:?}"))
    }
}

fn join_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key_part(key).into_owned()
    } else {
        format!("{parent}.{}", key_part(key))
    }
}

/// One key or array element of the document.
#[derive(Clone, Debug)]
struct Entry {
    /// Dotted path (`vm[1].pmu.nr_counters`).
    path: String,
    /// Nesting depth (keys and array elements).
    depth: usize,
    /// The key as written, for keys.
    key: Option<String>,
    /// The key's span, for keys.
    key_span: Option<Range<usize>>,
    /// The value's span (a table's header for `[table]` and `[[array]]`).
    value_span: Range<usize>,
    /// The value is a datetime.
    datetime: bool,
}

/// Every key and array element of a document with its spans.
struct SpanIndex {
    entries: Vec<Entry>,
}

impl SpanIndex {
    fn new(tree: &Spanned<DeTable<'_>>) -> SpanIndex {
        let mut entries = Vec::new();
        add_table(tree.get_ref(), "", 0, &mut entries);
        SpanIndex { entries }
    }

    /// The entry a deserialization error's span designates: the deepest
    /// whose key or value span is exactly `span`, else the smallest that
    /// contains it.
    fn at_span(&self, span: &Range<usize>) -> Option<&Entry> {
        let exact = self
            .entries
            .iter()
            .filter(|e| e.key_span.as_ref() == Some(span) || e.value_span == *span)
            .max_by_key(|e| e.depth);
        if exact.is_some() || span.is_empty() {
            // An empty span that is no entry's: the document itself.
            return exact;
        }
        let contains = |r: &Range<usize>| r.start <= span.start && span.end <= r.end;
        self.entries
            .iter()
            .filter_map(|e| {
                let len = [e.key_span.as_ref(), Some(&e.value_span)]
                    .into_iter()
                    .flatten()
                    .filter(|r| contains(r))
                    .map(|r| r.len())
                    .min()?;
                Some((len, std::cmp::Reverse(e.depth), e))
            })
            .min_by_key(|(len, depth, _)| (*len, *depth))
            .map(|(_, _, e)| e)
    }

    /// Byte offset of the field `path` (its key, or an array element's
    /// header); for a key that is not in the file, the nearest enclosing
    /// table that is.
    fn locate(&self, path: &str) -> Option<usize> {
        let mut p = path;
        loop {
            if let Some(e) = self.entries.iter().find(|e| e.path == p) {
                return Some(e.key_span.as_ref().unwrap_or(&e.value_span).start);
            }
            let cut = p.rfind(['.', '['])?;
            p = &p[..cut];
        }
    }

    /// The deepest key whose key starts on `line` at or before `offset`
    /// (the field a syntax error interrupted); empty when none.
    fn field_on_line(&self, text: &str, line: u32, offset: usize) -> String {
        self.entries
            .iter()
            .filter_map(|e| {
                let start = e.key_span.as_ref()?.start;
                (start <= offset && line_col(text, start).0 == line).then_some((start, e))
            })
            .max_by_key(|(start, e)| (*start, e.depth))
            .map_or(String::new(), |(_, e)| e.path.clone())
    }
}

fn add_table(table: &DeTable<'_>, prefix: &str, depth: usize, out: &mut Vec<Entry>) {
    for (k, v) in table.iter() {
        let key: &str = k.get_ref();
        let path = join_path(prefix, key);
        out.push(Entry {
            path: path.clone(),
            depth: depth + 1,
            key: Some(key.to_string()),
            key_span: Some(k.span()),
            value_span: v.span(),
            datetime: matches!(v.get_ref(), DeValue::Datetime(_)),
        });
        add_value(v.get_ref(), &path, depth + 1, out);
    }
}

fn add_value(value: &DeValue<'_>, path: &str, depth: usize, out: &mut Vec<Entry>) {
    match value {
        DeValue::Table(t) => add_table(t, path, depth, out),
        DeValue::Array(a) => {
            for (i, item) in a.iter().enumerate() {
                let p = format!("{path}[{i}]");
                out.push(Entry {
                    path: p.clone(),
                    depth: depth + 1,
                    key: None,
                    key_span: None,
                    value_span: item.span(),
                    datetime: matches!(item.get_ref(), DeValue::Datetime(_)),
                });
                add_value(item.get_ref(), &p, depth + 1, out);
            }
        }
        _ => {}
    }
}

// ---------------------------------------------------------------------------
// Deserializers
// ---------------------------------------------------------------------------

/// An integer in `LO..=HI`, a multiple of `STEP`, converted to `T`.
fn int<'de, D, T, const LO: i64, const HI: i64, const STEP: i64>(d: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    let v = d.deserialize_i64(IntVisitor {
        lo: LO,
        hi: HI,
        step: STEP,
    })?;
    T::try_from(v).map_err(|_| de::Error::custom(format!("integer {v} does not fit")))
}

/// [`int`] for an optional key (present: `Some`).
fn opt_int<'de, D, T, const LO: i64, const HI: i64, const STEP: i64>(
    d: D,
) -> Result<Option<T>, D::Error>
where
    D: Deserializer<'de>,
    T: TryFrom<i64>,
{
    int::<D, T, LO, HI, STEP>(d).map(Some)
}

/// What an integer field takes, in words.
fn describe_int(lo: i64, hi: i64, step: i64) -> String {
    let noun = if step > 1 {
        format!("multiple of {step}")
    } else {
        "integer".to_string()
    };
    let article = if step > 1 { "a" } else { "an" };
    match (lo, hi) {
        (0, i64::MAX) => format!("a non-negative {noun}"),
        (1, i64::MAX) if step <= 1 => "a positive integer".to_string(),
        (_, i64::MAX) => format!("{article} {noun} of at least {lo}"),
        _ => format!("{article} {noun} in {lo}..={hi}"),
    }
}

struct IntVisitor {
    lo: i64,
    hi: i64,
    step: i64,
}

impl IntVisitor {
    fn accepts(&self, v: i64) -> bool {
        v >= self.lo && v <= self.hi && (self.step <= 1 || v % self.step == 0)
    }
}

impl<'de> Visitor<'de> for IntVisitor {
    type Value = i64;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&describe_int(self.lo, self.hi, self.step))
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
        if self.accepts(v) {
            Ok(v)
        } else {
            Err(E::invalid_value(Unexpected::Signed(v), &self))
        }
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
        match i64::try_from(v) {
            Ok(s) => self.visit_i64(s),
            Err(_) => Err(E::invalid_value(Unexpected::Unsigned(v), &self)),
        }
    }
}

/// The PMSIDR_EL1.INTERVAL encodings.
const INTERVAL_FIELD_EXPECTED: &str = "a PMSIDR_EL1.INTERVAL encoding: 0 or 2..=8";

fn interval_field_ok(v: i64) -> bool {
    v == 0 || (2..=8).contains(&v)
}

fn interval_field<'de, D: Deserializer<'de>>(d: D) -> Result<u8, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = u8;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(INTERVAL_FIELD_EXPECTED)
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u8, E> {
            match u8::try_from(v) {
                Ok(b) if interval_field_ok(v) => Ok(b),
                _ => Err(E::invalid_value(Unexpected::Signed(v), &self)),
            }
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u8, E> {
            match i64::try_from(v) {
                Ok(s) => self.visit_i64(s),
                Err(_) => Err(E::invalid_value(Unexpected::Unsigned(v), &self)),
            }
        }
    }
    d.deserialize_i64(V)
}

/// What `event` takes, in words.
fn event_expected() -> String {
    format!(
        "an event name ({}) or an event number in 0..=65535",
        pmu_event_names().join(", ")
    )
}

fn event_number<'de, D: Deserializer<'de>>(d: D) -> Result<u16, D::Error> {
    struct V;
    impl<'de> Visitor<'de> for V {
        type Value = u16;
        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str(&event_expected())
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<u16, E> {
            pmu_event_number(v).ok_or_else(|| E::invalid_value(Unexpected::Str(v), &self))
        }
        fn visit_i64<E: de::Error>(self, v: i64) -> Result<u16, E> {
            u16::try_from(v).map_err(|_| E::invalid_value(Unexpected::Signed(v), &self))
        }
        fn visit_u64<E: de::Error>(self, v: u64) -> Result<u16, E> {
            u16::try_from(v).map_err(|_| E::invalid_value(Unexpected::Unsigned(v), &self))
        }
    }
    d.deserialize_any(V)
}

/// Deserializes one of a fixed set of strings.
struct KeywordVisitor<T: 'static>(&'static [(T, &'static str)]);

impl<T: Copy + 'static> KeywordVisitor<T> {
    fn describe(&self) -> String {
        let names: Vec<String> = self.0.iter().map(|(_, s)| format!("\"{s}\"")).collect();
        format!("one of {}", names.join(", "))
    }
}

impl<'de, T: Copy + 'static> Visitor<'de> for KeywordVisitor<T> {
    type Value = T;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<T, E> {
        match self.0.iter().find(|(_, s)| *s == v) {
            Some((t, _)) => Ok(*t),
            None => Err(E::invalid_value(Unexpected::Str(v), &self)),
        }
    }
}

// ---------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------

/// A rule broken at a field: its path and what is wrong.
type Violation = (String, ErrorKind);

fn impossible(field: impl Into<String>, reason: impl Into<String>) -> Violation {
    (
        field.into(),
        ErrorKind::Impossible {
            reason: reason.into(),
        },
    )
}

fn out_of_range(field: impl Into<String>, expected: impl Into<String>, found: String) -> Violation {
    (
        field.into(),
        ErrorKind::OutOfRange {
            expected: expected.into(),
            found,
        },
    )
}

/// `value` is in `lo..=hi` and a multiple of `step` (the ranges the
/// deserializers enforce, rechecked for scenarios built in code).
fn check_int(field: String, value: u64, lo: i64, hi: i64, step: i64) -> Result<(), Violation> {
    let ok = i64::try_from(value).is_ok_and(|v| IntVisitor { lo, hi, step }.accepts(v));
    if ok {
        Ok(())
    } else {
        Err(out_of_range(
            field,
            describe_int(lo, hi, step),
            value.to_string(),
        ))
    }
}

fn check_name(field: String, name: &str) -> Result<(), Violation> {
    let ok = (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(out_of_range(
            field,
            "a name of 1 to 64 ASCII letters, digits, '-', '_' or '.'",
            format!("{name:?}"),
        ))
    }
}

/// Workload names of one address space.
fn workloads(kernel: bool) -> Vec<&'static str> {
    NAMES
        .iter()
        .copied()
        .filter(|n| n.starts_with("kernel-") == kernel)
        .collect()
}

fn check_workload(field: String, name: &str, kernel: bool) -> Result<(), Violation> {
    let allowed = workloads(kernel);
    if allowed.contains(&name) {
        return Ok(());
    }
    let what = if kernel {
        "a kernel workload"
    } else {
        "a user-space workload"
    };
    Err(out_of_range(
        field,
        format!("{what} ({})", allowed.join(", ")),
        format!("{name:?}"),
    ))
}

/// The sizes PMBIDR_EL1.MaxBuffSize represents just below and just above
/// `size`.
fn representable_neighbours(size: u64) -> (u64, Option<u64>) {
    // decode() is strictly increasing on 0..=FIELD_MAX.
    let (mut lo, mut hi) = (0u16, maxbuffsize::FIELD_MAX);
    while lo < hi {
        let mid = lo + (hi - lo).div_ceil(2);
        if maxbuffsize::decode(mid) <= size {
            lo = mid;
        } else {
            hi = mid - 1;
        }
    }
    let above = (lo < maxbuffsize::FIELD_MAX).then(|| maxbuffsize::decode(lo + 1));
    (maxbuffsize::decode(lo), above)
}

fn check_representable(field: String, size: u64) -> Result<(), Violation> {
    if maxbuffsize::encode(size).is_ok() {
        return Ok(());
    }
    let (below, above) = representable_neighbours(size);
    let nearest = match above {
        Some(a) => format!("the nearest representable sizes are {below} and {a}"),
        None => format!("the largest representable size is {below}"),
    };
    Err(impossible(
        field,
        format!("{size} bytes cannot be represented in PMBIDR_EL1.MaxBuffSize; {nearest}"),
    ))
}

/// Fmt helper: a byte count in the unit that divides it.
fn bytes(n: u64) -> String {
    if n != 0 && n % (1 << 20) == 0 {
        format!("{n} bytes ({} MiB)", n >> 20)
    } else if n != 0 && n % 1024 == 0 {
        format!("{n} bytes ({} KiB)", n >> 10)
    } else {
        format!("{n} bytes")
    }
}

fn cpu_list(cpus: &[usize]) -> String {
    cpus.iter()
        .map(usize::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}

impl Scenario {
    /// Every rule, in document order; the first broken one.
    fn check(&self) -> Result<(), Violation> {
        check_name("name".into(), &self.name)?;
        check_int("seed".into(), self.seed, 0, I64_MAX, 1)?;
        self.check_run()?;
        self.check_machine()?;
        self.check_host()?;
        self.check_vms()?;
        self.check_migrations()
    }

    fn check_run(&self) -> Result<(), Violation> {
        let r = &self.run;
        check_int("run.guest_ops".into(), r.guest_ops, 1, I64_MAX, 1)?;
        check_int("run.host_ops".into(), r.host_ops, 1, I64_MAX, 1)?;
        check_int("run.slice_ops".into(), r.slice_ops, 1, I64_MAX, 1)?;
        check_int("run.host_slice_ops".into(), r.host_slice_ops, 1, I64_MAX, 1)
    }

    fn check_machine(&self) -> Result<(), Violation> {
        let m = &self.machine;
        check_int("machine.ram_mib".into(), m.ram_mib, 1, RAM_MIB_MAX, 1)?;
        let Some(first) = m.cpus.first() else {
            return Err(impossible(
                "machine.cpus",
                "the machine has no CPUs: add a [[machine.cpus]] group",
            ));
        };
        for (i, g) in m.cpus.iter().enumerate() {
            let at = format!("machine.cpus[{i}]");
            check_int(format!("{at}.count"), g.count.into(), 1, CPUS_MAX_I, 1)?;
            check_int(
                format!("{at}.pmu.counters"),
                g.pmu.counters.into(),
                0,
                COUNTERS_MAX_I,
                1,
            )?;
            if i > 0 {
                let differs = [
                    ("counters", g.pmu.counters != first.pmu.counters),
                    ("version", g.pmu.version != first.pmu.version),
                    ("hpmn0", g.pmu.hpmn0 != first.pmu.hpmn0),
                ];
                if let Some((key, _)) = differs.iter().find(|(_, d)| *d) {
                    return Err(impossible(
                        format!("{at}.pmu.{key}"),
                        format!(
                            "CPU groups with different PMUs are not supported: every group \
                             must have machine.cpus[0]'s PMU (counters = {}, version = \"{}\", \
                             hpmn0 = {})",
                            first.pmu.counters, first.pmu.version, first.pmu.hpmn0
                        ),
                    ));
                }
            }
            if let Some(spe) = &g.spe {
                self.check_spe_unit(&format!("{at}.spe"), spe)?;
            }
            g.uarch
                .uarch_config()
                .check()
                .map_err(|why| impossible(format!("{at}.uarch"), why))?;
        }
        let total: u64 = m.cpus.iter().map(|g| u64::from(g.count)).sum();
        if total > u64::from(MAX_CPUS) {
            return Err(impossible(
                "machine.cpus",
                format!("the groups have {total} CPUs in all; a machine has at most {MAX_CPUS}"),
            ));
        }
        // Memory: the VMs' RAM and the host's SPE buffers come out of the
        // machine's RAM, which also holds the host's tables.
        let ram = m.ram_mib << 20;
        // A migration's destination is a new VM with the RAM of the one
        // that moves (the source's is not given back to the machine).
        let destinations = self
            .migrations
            .iter()
            .filter_map(|m| self.vms.iter().find(|v| v.name == m.vm));
        let vm_ram: u64 = self
            .vms
            .iter()
            .chain(destinations)
            .map(VmSpec::ram_bytes)
            .fold(0, u64::saturating_add);
        let spe_cpus = m
            .cpus
            .iter()
            .filter(|g| g.spe.is_some())
            .map(|g| u64::from(g.count))
            .sum::<u64>();
        let host_buffers = self
            .host
            .spe
            .as_ref()
            .map_or(0, |s| s.buffer_bytes().saturating_mul(spe_cpus));
        let need = vm_ram.saturating_add(host_buffers);
        if need >= ram {
            let moves = if self.migrations.is_empty() {
                ""
            } else {
                ", with a destination VM per migration"
            };
            let buffers = if host_buffers == 0 {
                String::new()
            } else {
                format!(" and the host's SPE buffers ({})", bytes(host_buffers))
            };
            return Err(impossible(
                "machine.ram_mib",
                format!(
                    "{} of RAM cannot hold the VMs' RAM ({}{moves}){buffers} and leave room \
                     for the host",
                    bytes(ram),
                    bytes(vm_ram),
                ),
            ));
        }
        Ok(())
    }

    fn check_spe_unit(&self, at: &str, spe: &SpeUnitSpec) -> Result<(), Violation> {
        if !interval_field_ok(spe.interval_field.into()) {
            return Err(out_of_range(
                format!("{at}.interval_field"),
                INTERVAL_FIELD_EXPECTED,
                spe.interval_field.to_string(),
            ));
        }
        check_int(
            format!("{at}.max_record_log2"),
            spe.max_record_log2.into(),
            RECORD_LOG2_MIN,
            RECORD_LOG2_MAX,
            1,
        )?;
        check_int(
            format!("{at}.max_buffer_size"),
            spe.max_buffer_size,
            0,
            I64_MAX,
            1,
        )?;
        check_int(
            format!("{at}.align_log2"),
            spe.align_log2.into(),
            0,
            RECORD_LOG2_MAX,
            1,
        )?;
        check_int(
            format!("{at}.queue_capacity"),
            spe.queue_capacity.into(),
            0,
            QUEUE_MAX,
            1,
        )?;
        if spe.align_log2 > spe.max_record_log2 {
            return Err(impossible(
                format!("{at}.align_log2"),
                format!(
                    "PMBIDR_EL1.Align ({}) cannot exceed PMSIDR_EL1.MaxSize (max_record_log2 = \
                     {}): a padded record would be larger than the largest record",
                    spe.align_log2, spe.max_record_log2
                ),
            ));
        }
        if spe.max_buffer_size != 0 {
            if !spe.version.pms_ver().has_max_buff_size() {
                return Err(impossible(
                    format!("{at}.max_buffer_size"),
                    format!(
                        "PMBIDR_EL1.MaxBuffSize exists from SPE version 1.5; this unit is \
                         version {}: set version = \"1.5\" or max_buffer_size = 0",
                        spe.version
                    ),
                ));
            }
            check_representable(format!("{at}.max_buffer_size"), spe.max_buffer_size)?;
        }
        Ok(())
    }

    /// The SPE units of the machine's groups, with the group's path.
    fn spe_units(&self) -> Vec<(String, &CpuGroup, &SpeUnitSpec)> {
        self.machine
            .cpus
            .iter()
            .enumerate()
            .filter_map(|(i, g)| {
                g.spe
                    .as_ref()
                    .map(|s| (format!("machine.cpus[{i}].spe"), g, s))
            })
            .collect()
    }

    /// The machine's PMU (every group has the same one once
    /// `check_machine` passed).
    fn pmu(&self) -> &PmuSpec {
        const NO_PMU: PmuSpec = PmuSpec {
            counters: 0,
            version: PmuVersion::V3,
            hpmn0: false,
        };
        self.machine.cpus.first().map_or(&NO_PMU, |g| &g.pmu)
    }

    fn check_host(&self) -> Result<(), Violation> {
        let h = &self.host;
        check_workload("host.workload".into(), &h.workload, true)?;
        let pmu = self.pmu();
        check_int(
            "host.pmu_reserved_counters".into(),
            h.pmu_reserved_counters.into(),
            0,
            COUNTERS_MAX_I,
            1,
        )?;
        if h.pmu_reserved_counters > pmu.counters {
            return Err(impossible(
                "host.pmu_reserved_counters",
                format!(
                    "the host reserves {} counters but the PMU has {} \
                     (machine.cpus[0].pmu.counters)",
                    h.pmu_reserved_counters, pmu.counters
                ),
            ));
        }
        if let Some(spe) = &h.spe {
            let units = self.spe_units();
            if units.is_empty() {
                return Err(impossible(
                    "host.spe",
                    "the host samples with SPE but no CPU group has an SPE unit \
                     ([machine.cpus.spe])",
                ));
            }
            self.check_session("host.spe", spe.interval, spe.buffer_kib, &units)?;
            for (at, _, unit) in &units {
                if unit.max_buffer_size != 0 && spe.buffer_bytes() > unit.max_buffer_size {
                    return Err(impossible(
                        "host.spe.buffer_kib",
                        format!(
                            "a {} buffer is larger than {at}.max_buffer_size ({})",
                            bytes(spe.buffer_bytes()),
                            bytes(unit.max_buffer_size)
                        ),
                    ));
                }
            }
        }
        let any_vpmu = self.vms.iter().any(|v| v.pmu.is_some());
        let (limit, why) = if any_vpmu {
            (
                h.pmu_reserved_counters,
                "a VM has a vPMU, so the host has only the counters it reserves \
                 (host.pmu_reserved_counters)",
            )
        } else {
            (
                pmu.counters,
                "the PMU's counters (machine.cpus[0].pmu.counters)",
            )
        };
        self.check_events("host.pmu_events", &h.pmu_events, limit, why)
    }

    /// A session's interval and buffer against the units it may run on.
    fn check_session(
        &self,
        at: &str,
        interval: u32,
        buffer_kib: u64,
        units: &[(String, &CpuGroup, &SpeUnitSpec)],
    ) -> Result<(), Violation> {
        check_int(
            format!("{at}.interval"),
            interval.into(),
            INTERVAL_STEP,
            INTERVAL_MAX,
            INTERVAL_STEP,
        )?;
        check_int(
            format!("{at}.buffer_kib"),
            buffer_kib,
            BUFFER_KIB_STEP,
            BUFFER_KIB_MAX,
            BUFFER_KIB_STEP,
        )?;
        for (unit_at, _, unit) in units {
            if interval < unit.min_interval() {
                return Err(impossible(
                    format!("{at}.interval"),
                    format!(
                        "{interval} is below the minimum interval {} that {unit_at} \
                         recommends (interval_field = {}); the driver would raise it",
                        unit.min_interval(),
                        unit.interval_field
                    ),
                ));
            }
        }
        Ok(())
    }

    /// Perf events: at most `limit`, event numbers the PMU has.
    fn check_events(
        &self,
        at: &str,
        events: &[PmuEventSpec],
        limit: u8,
        why: &str,
    ) -> Result<(), Violation> {
        let pmu = self.pmu();
        for (i, e) in events.iter().enumerate() {
            if u32::from(e.event) >= pmu.version.event_space() {
                return Err(impossible(
                    format!("{at}[{i}].event"),
                    format!(
                        "event {:#x} needs 16-bit event numbers (PMU version 3.1 or later); \
                         the PMU is version {}",
                        e.event, pmu.version
                    ),
                ));
            }
            if let Some(p) = e.period {
                check_int(format!("{at}[{i}].period"), p.into(), 1, PERIOD_MAX, 1)?;
            }
        }
        if events.len() > usize::from(limit) {
            return Err(impossible(
                format!("{at}[{}]", limit),
                format!(
                    "{} events need {} counters but there are {limit}: {why}",
                    events.len(),
                    events.len()
                ),
            ));
        }
        Ok(())
    }

    fn check_vms(&self) -> Result<(), Violation> {
        for (i, vm) in self.vms.iter().enumerate() {
            let at = format!("vm[{i}]");
            check_name(format!("{at}.name"), &vm.name)?;
            if let Some(j) = self.vms[..i].iter().position(|o| o.name == vm.name) {
                return Err(impossible(
                    format!("{at}.name"),
                    format!(
                        "vm[{j}] is already named {:?}: VM names must be unique",
                        vm.name
                    ),
                ));
            }
            check_int(format!("{at}.ram_mib"), vm.ram_mib, 1, RAM_MIB_MAX, 1)?;
            if let Some(k) = vm.memlock_kib {
                check_int(format!("{at}.memlock_kib"), k, 0, I64_MAX, 1)?;
            }
            check_int(format!("{at}.vcpus"), vm.vcpus.into(), 1, VCPUS_MAX_I, 1)?;
            self.check_vm_guest(&at, vm)?;
            if let Some(pmu) = &vm.pmu {
                self.check_vm_pmu(&format!("{at}.pmu"), pmu)?;
            }
            if let Some(spe) = &vm.spe {
                self.check_vm_spe(i, &format!("{at}.spe"), vm, spe)?;
            }
        }
        Ok(())
    }

    fn check_vm_pmu(&self, at: &str, pmu: &VmPmuSpec) -> Result<(), Violation> {
        let hw = self.pmu();
        let reserved = self.host.pmu_reserved_counters;
        let limit = self.vm_counter_limit();
        check_int(
            format!("{at}.irq"),
            pmu.irq.into(),
            PPI_FIRST_I,
            PPI_LAST_I,
            1,
        )?;
        if pmu.mode == PmuMode::Partitioned && self.machine.host_mode == HostMode::Nvhe {
            return Err(impossible(
                format!("{at}.mode"),
                "a partitioned PMU needs a VHE host (machine.host_mode = \"vhe\"): an nVHE \
                 host kernel at EL1 cannot reach counters at or above MDCR_EL2.HPMN; use \
                 mode = \"emulated\"",
            ));
        }
        if pmu.mode == PmuMode::Partitioned && limit == 0 && !hw.hpmn0 {
            return Err(impossible(
                format!("{at}.mode"),
                format!(
                    "a partitioned PMU needs MDCR_EL2.HPMN = counters - pmu_reserved_counters \
                     = {} - {reserved} = 0, which needs FEAT_HPMN0 (machine.cpus.pmu.hpmn0 = \
                     true); or reserve fewer counters for the host",
                    hw.counters
                ),
            ));
        }
        if let Some(n) = pmu.nr_counters {
            check_int(format!("{at}.nr_counters"), n.into(), 0, COUNTERS_MAX_I, 1)?;
            if n > limit {
                return Err(impossible(
                    format!("{at}.nr_counters"),
                    format!(
                        "{n} counters requested but the VM may have at most {limit} \
                         (counters {} - pmu_reserved_counters {reserved})",
                        hw.counters
                    ),
                ));
            }
        }
        let space = hw.version.event_space();
        for (j, f) in pmu.filter.iter().enumerate() {
            let end = u32::from(f.first_event) + u32::from(f.count);
            if end > space {
                return Err(impossible(
                    format!("{at}.filter[{j}].count"),
                    format!(
                        "events {:#x}..{end:#x} go beyond the PMU's {space} event numbers \
                         (version {})",
                        f.first_event, hw.version
                    ),
                ));
            }
        }
        let n = pmu.nr_counters.unwrap_or(limit);
        let why = format!("the VM has {n} counters ({at}.nr_counters)");
        self.check_events(&format!("{at}.events"), &pmu.events, n, &why)
    }

    fn check_vm_spe(
        &self,
        vm_index: usize,
        at: &str,
        vm: &VmSpec,
        spe: &VmSpeSpec,
    ) -> Result<(), Violation> {
        check_int(
            format!("{at}.irq"),
            spe.irq.into(),
            PPI_FIRST_I,
            PPI_LAST_I,
            1,
        )?;
        if let Some(pmu) = &vm.pmu {
            if pmu.irq == spe.irq {
                return Err(impossible(
                    format!("{at}.irq"),
                    format!(
                        "PPI {} is already the VM's PMU interrupt ({at_pmu}.irq): the two \
                         interrupts must differ",
                        spe.irq,
                        at_pmu = at.trim_end_matches(".spe").to_string() + ".pmu"
                    ),
                ));
            }
        }
        let units = self.spe_units();
        if units.is_empty() {
            return Err(impossible(
                at.to_string(),
                "guest SPE needs a CPU with an SPE unit, and no CPU group has one \
                 ([machine.cpus.spe])",
            ));
        }
        // The SPU: every CPU the VM's vCPUs run on must have the same one.
        let cpus = self.vm_cpus(vm_index);
        let mut spu: Option<(usize, &SpeUnitSpec)> = None;
        let mut without: Vec<usize> = Vec::new();
        for &cpu in &cpus {
            match self.machine.group_of(cpu).and_then(|g| g.spe.as_ref()) {
                None => without.push(cpu),
                Some(u) => match spu {
                    None => spu = Some((cpu, u)),
                    Some((c0, u0)) if !u0.same_spu(u) => {
                        return Err(impossible(
                            at.to_string(),
                            format!(
                                "the VM's vCPUs run on CPUs {c0} and {cpu}, whose SPE units \
                                 differ, but a VM uses one SPU; {}",
                                self.schedule_hint()
                            ),
                        ));
                    }
                    Some(_) => {}
                },
            }
        }
        if !without.is_empty() {
            return Err(impossible(
                at.to_string(),
                format!(
                    "the VM's vCPUs run on CPUs {} that have no SPE unit, where KVM refuses \
                     to run a vCPU with guest SPE; {}",
                    cpu_list(&without),
                    self.schedule_hint()
                ),
            ));
        }
        let Some((_, unit)) = spu else {
            // No CPU at all: check_machine has reported it.
            return Ok(());
        };
        let mine: Vec<_> = units
            .iter()
            .filter(|(_, _, u)| u.same_spu(unit))
            .cloned()
            .collect();
        let Some((unit_at, unit_group, _)) = mine.first().cloned() else {
            return Ok(());
        };
        let own = unit.max_buffer_size;
        check_int(
            format!("{at}.max_buffer_size"),
            spe.max_buffer_size,
            0,
            I64_MAX,
            1,
        )?;
        if spe.max_buffer_size != 0 {
            check_representable(format!("{at}.max_buffer_size"), spe.max_buffer_size)?;
            if own != 0 && spe.max_buffer_size > own {
                return Err(impossible(
                    format!("{at}.max_buffer_size"),
                    format!(
                        "{} is above the SPU's maximum, {unit_at}.max_buffer_size = {} \
                         (KVM answers ERANGE)",
                        bytes(spe.max_buffer_size),
                        bytes(own)
                    ),
                ));
            }
            if !unit_group.fgt && spe.max_buffer_size != own {
                return Err(impossible(
                    format!("{at}.max_buffer_size"),
                    format!(
                        "the VM's CPUs have no FEAT_FGT, so PMBIDR_EL1 cannot be trapped and \
                         the guest must see the SPU's own maximum ({}); leave max_buffer_size \
                         out or set it to that",
                        bytes(own)
                    ),
                ));
            }
        }
        let max = if spe.max_buffer_size != 0 {
            spe.max_buffer_size
        } else {
            own
        };
        let Some(session) = spe.session() else {
            // A VM that boots an image: its own driver picks the session
            // (check_vm_guest refused the keys there).
            return Ok(());
        };
        self.check_session(at, session.interval, session.buffer_kib, &mine)?;
        let buffer = session.buffer_bytes();
        if max != 0 && buffer > max {
            return Err(impossible(
                format!("{at}.buffer_kib"),
                format!(
                    "a {} buffer is larger than the VM's maximum buffer size, {}",
                    bytes(buffer),
                    bytes(max)
                ),
            ));
        }
        let ram = vm.ram_bytes();
        let usable = ram - ram / 8;
        if buffer > usable {
            return Err(impossible(
                format!("{at}.buffer_kib"),
                format!(
                    "a {} buffer does not fit in the VM's RAM below its page tables (the top \
                     eighth of {}): at most {}",
                    bytes(buffer),
                    bytes(ram),
                    bytes(usable)
                ),
            ));
        }
        if let Some(kib) = vm.memlock_kib {
            let memlock = kib.saturating_mul(1024);
            let vm_at = at.trim_end_matches(".spe");
            if max == 0 {
                return Err(impossible(
                    format!("{at}.max_buffer_size"),
                    format!(
                        "the SPU has no maximum buffer size, and an unlimited one needs an \
                         unlimited memlock (KVM answers ENOMEM); set max_buffer_size, or \
                         remove {vm_at}.memlock_kib"
                    ),
                ));
            }
            if max > memlock {
                return Err(impossible(
                    format!("{at}.max_buffer_size"),
                    format!(
                        "the maximum buffer size, {}, exceeds {vm_at}.memlock_kib ({}) \
                         (KVM answers ENOMEM)",
                        bytes(max),
                        bytes(memlock)
                    ),
                ));
            }
            // Each vCPU pins its buffer and at least the stage-1 table pages
            // that translate it: one last-level table per 2 MiB and one
            // page for each of the three levels above.
            let tables = (buffer.div_ceil(2 << 20) + 3) * PAGE_BYTES;
            let pinned = (buffer + tables).saturating_mul(u64::from(vm.vcpus));
            if pinned > memlock {
                return Err(impossible(
                    format!("{vm_at}.memlock_kib"),
                    format!(
                        "{} vCPU(s) pin at least {} (a {} buffer and its table pages each), \
                         more than the memlock limit of {}",
                        vm.vcpus,
                        bytes(pinned),
                        bytes(buffer),
                        bytes(memlock)
                    ),
                ));
            }
        }
        Ok(())
    }

    fn schedule_hint(&self) -> &'static str {
        match self.run.schedule {
            Schedule::Rotate => {
                "with schedule = \"rotate\" every vCPU runs on every CPU: give every CPU group \
                 the same SPE unit, or use schedule = \"pinned\""
            }
            Schedule::Pinned => {
                "with schedule = \"pinned\" vCPU i (counting every VM's vCPUs in order) runs on \
                 CPU i % cpus: reorder the VMs or the CPU groups"
            }
        }
    }
}
