//! The hyperprof command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use hyperprof::error::{Error, ExitStatus, Result};
use hyperprof::spe;
use hyperprof::spe::input::TraceFile;

/// SPE and partitioned-PMU virtualization for arm64, on a deterministic model
/// of the Arm profiling hardware.
#[derive(Parser)]
#[command(
    name = "hyperprof",
    version,
    about,
    long_about = None,
    after_help = concat!(
        "With no command, runs the built-in default scenario (see `hyperprof scenario print-default`) and writes its artifacts to ./hyperprof-out.\n\n",
        "Exit status:\n",
        "  0  success\n",
        "  1  the run completed but an invariant did not hold\n",
        "  2  bad input: usage, or a file that cannot be read or is malformed\n",
        "  3  the run could not complete (a failure or no progress)\n",
        "  4  writing an output failed"
    )
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Read, write and inspect Arm SPE traces (raw buffers or perf.data).
    #[command(subcommand)]
    Spe(SpeCommand),
    /// Run a scenario on the simulated machine and report what it measured.
    ///
    /// With neither a file nor --scenario, runs the built-in default
    /// scenario.
    Run {
        /// A scenario file (TOML; `hyperprof scenario print-default` prints
        /// one to start from).
        #[arg(conflicts_with = "scenario")]
        file: Option<PathBuf>,
        /// A built-in scenario instead of a file.
        #[arg(long, value_enum)]
        scenario: Option<Scenario>,
        /// Seed of every random choice: equal seeds give equal results
        /// [default: the file's, or 1].
        #[arg(long)]
        seed: Option<u64>,
        /// User operations per CPU (bare-metal) or per workload VM (a VM
        /// that boots an image runs until it stops or reaches its
        /// max_insns) [default: the file's guest_ops, or 20000000].
        #[arg(long)]
        ops: Option<u64>,
        /// CPUs (bare-metal only; default 4).
        #[arg(long)]
        cpus: Option<usize>,
        /// Artifact directory: perf.data files, flame graphs and
        /// report.json [default: ./hyperprof-out for scenario files and the
        /// default; none for the --scenario built-ins].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
        /// Write into an --out directory that is not empty (a previous
        /// run's), replacing its files; without it such a directory is
        /// refused.
        #[arg(long)]
        force: bool,
    },
    /// Boot a real AArch64 image as a VM on a virt-compatible board beside
    /// a profiling host. stdout carries exactly what the guest writes to its
    /// UART; a summary goes to stderr. Exit status: 0 the guest powered off
    /// through PSCI, 1 an invariant failed, 2 a bad image or usage, 3
    /// --max-insns ran out or the guest can never wake.
    Boot(BootCli),
    /// Print the report of a run again, from its artifact directory.
    Report {
        /// The directory `hyperprof run` wrote (holding report.json).
        dir: PathBuf,
        /// Print the report as JSON.
        #[arg(long)]
        json: bool,
    },
    /// Scenario files.
    #[command(subcommand)]
    Scenario(ScenarioCommand),
    /// Add the symbol files (*.elf) of an artifact directory to perf's
    /// build-id cache (`perf buildid-cache -a`), so that perf report,
    /// script, mem and c2c name the functions of its perf.data files; prints
    /// the commands instead when perf is not installed.
    PerfSetup {
        /// The directory `hyperprof run` wrote.
        dir: PathBuf,
        /// The perf program to run.
        #[arg(long, default_value = "perf")]
        perf: String,
    },
    /// Model-check the VHE SPE world switch: every interleaving of the
    /// host's PMBIRQ handler, preemption and migration with vCPU load,
    /// run and put, up to a bound on injected events.
    Explore {
        /// Injected events per schedule at most.
        #[arg(long, default_value_t = 2)]
        bound: usize,
        /// Explore a mutation of the switch instead (see --catalogue).
        #[arg(long)]
        mutation: Option<String>,
        /// The switch as it is and then every mutation, summarised.
        #[arg(long, conflicts_with = "mutation")]
        catalogue: bool,
        /// On an nVHE host (the switch as it is only).
        #[arg(long, conflicts_with_all = ["mutation", "catalogue"])]
        nvhe: bool,
    },
    /// Synthesise an SPE trace, export it as perf.data and report on it
    /// (the codec alone, without the machine).
    Demo {
        /// Directory for the artifacts.
        #[arg(long, default_value = "hyperprof-out")]
        out: PathBuf,
        /// PRNG seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

/// `hyperprof boot`'s options.
#[derive(clap::Args)]
struct BootCli {
    /// An ELF64 AArch64 image (loaded by its program headers), a raw image
    /// (loaded at RAM + 0x80000), or builtin:NAME (every program of
    /// guests/, e.g. hello, selftest, spin, smp, gic, timer, profiler).
    image: String,
    /// The kernel command line (/chosen/bootargs).
    #[arg(long, default_value = "")]
    append: String,
    /// Guest RAM in MiB.
    #[arg(long, default_value_t = 128)]
    mem: u64,
    /// An nVHE host (the host kernel at EL1).
    #[arg(long)]
    nvhe: bool,
    /// The guest PMU.
    #[arg(long, value_enum, default_value = "partitioned")]
    pmu: BootPmu,
    /// Event counters of the guest PMU [default: all the host leaves].
    #[arg(long)]
    pmu_counters: Option<u8>,
    /// Give the guest SPE.
    #[arg(long)]
    spe: bool,
    /// The most bytes of SPE records the guest's profiler may hand over
    /// [default: 256 MiB]; what does not fit is refused and reported.
    #[arg(long, default_value_t = 0)]
    guest_records_limit: u64,
    /// SPE_MAX_BUFFER_SIZE in bytes [default: 4 MiB, or the SPU's own
    /// maximum when that is smaller].
    #[arg(long, default_value_t = 0)]
    spe_max_buffer: u64,
    /// Instructions the guest may retire.
    #[arg(long, default_value_t = 10_000_000_000)]
    max_insns: u64,
    /// Write the run's figures as JSON to this file.
    #[arg(long)]
    report: Option<PathBuf>,
    /// Seed of the host's workload.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Write the host's SPE profile here: host.perf.data and the symbol
    /// files perf needs (`hyperprof perf-setup DIR`, then perf report);
    /// and, when the guest's profiler handed records over, guest.perf.data,
    /// vmlinux-guest.elf, guest.svg and guest.json.
    #[arg(long)]
    out: Option<PathBuf>,
    /// vCPUs of the VM, 1 to 123 (the GICv3 redistributor region's
    /// frames): vCPU 0 boots, the others wait for PSCI CPU_ON.
    #[arg(long, default_value_t = 1)]
    smp: usize,
    /// Physical CPUs of the machine, 1 to 16. Each round the host runs on
    /// every CPU, then up to one vCPU per CPU runs a slice, the round's
    /// vCPUs side by side (in turns of 64 instructions); vCPUs take rounds
    /// round-robin and move between CPUs from lap to lap.
    #[arg(long, default_value_t = hyperprof::boot::DEFAULT_CPUS)]
    cpus: usize,
    /// Guest instructions per slice: a vCPU is loaded on a CPU, runs this
    /// many at most, and is put.
    #[arg(long, default_value_t = hyperprof::boot::DEFAULT_SLICE)]
    slice: u64,
}

#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum BootPmu {
    Partitioned,
    Emulated,
    Off,
}

/// Scenarios `hyperprof run` knows.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
enum Scenario {
    /// The host alone, profiling itself with SPE and the PMU on every CPU.
    BareMetal,
    /// Two VMs profiling themselves with guest SPE on a two-CPU host that
    /// profiles its own kernel; the vCPUs move between CPUs.
    GuestSpe,
    /// The same with an nVHE host: the host kernel at EL1, its buffer
    /// drained and disabled at every guest entry.
    GuestSpeNvhe,
    /// A VM with a partitioned PMU and a VM with an emulated PMU counting
    /// their user space beside a host counting its kernel on its reserved
    /// counters; the vCPUs swap CPUs.
    GuestPmu,
    /// Guest SPE buffer pinning designs side by side on per-task perf
    /// record in a guest (a table for a mailing-list reply).
    Pinning,
}

#[derive(Subcommand)]
enum ScenarioCommand {
    /// Print the built-in default scenario as a file to start from.
    PrintDefault,
    /// Check a scenario file and say what it describes.
    Check {
        /// The file.
        file: PathBuf,
    },
}

/// Formats `spe export` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ExportFormat {
    /// A perf.data file.
    PerfData,
    /// Three Parquet tables.
    Parquet,
    /// Three CSV tables.
    Csv,
}

#[derive(Subcommand)]
enum SpeCommand {
    /// Print one line per packet, exactly as `perf report -D` prints them.
    Dump {
        /// A raw SPE buffer or a perf.data file (detected by its magic).
        file: PathBuf,
        /// Print undecodable bytes as perf does ("Bad packet!") and go on,
        /// instead of stopping with an error.
        #[arg(long)]
        keep_going: bool,
        /// Threads formatting text [default: the CPUs available].
        #[arg(long, value_parser = clap::value_parser!(u16).range(1..=256))]
        jobs: Option<u16>,
    },
    /// Decode and aggregate: records, packets, ops, events, latencies, ELs.
    Stats {
        /// A raw SPE buffer or a perf.data file.
        file: PathBuf,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Wrap raw SPE buffers into a perf.data file that perf reads, or
    /// (--format parquet|csv) write a trace's records as the three tables
    /// of Arm's spe-parser (PREFIX-ldst, PREFIX-br, PREFIX-other) in a
    /// directory.
    Export {
        /// Raw SPE buffers, one AUXTRACE record each (perf-data); one raw
        /// buffer or perf.data file (parquet, csv).
        #[arg(required = true)]
        raw: Vec<PathBuf>,
        /// The perf.data file to write (perf-data), or the directory of the
        /// tables (parquet, csv).
        #[arg(short, long)]
        output: PathBuf,
        /// What to write.
        #[arg(long, value_enum, default_value = "perf-data")]
        format: ExportFormat,
        /// CPU the buffers are attributed to.
        #[arg(long, default_value_t = 0)]
        cpu: u32,
        /// Dynamic PMU type of the SPE PMU recorded in the file.
        #[arg(long, default_value_t = spe::export::DEFAULT_PMU_TYPE)]
        pmu_type: u32,
    },
    /// Write a deterministic synthetic raw SPE trace.
    Synth {
        /// The raw trace to write.
        #[arg(short, long)]
        output: PathBuf,
        /// Records to generate.
        #[arg(long, default_value_t = 262_144)]
        records: u64,
        /// Bytes per record (records are padded with PAD).
        #[arg(long, default_value_t = 64)]
        record_size: usize,
        /// PRNG seed.
        #[arg(long, default_value_t = 1)]
        seed: u64,
    },
}

fn write_stdout(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::output("<stdout>", e)),
        _ => Ok(()),
    }
}

fn write_file(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    hyperprof::files::write_atomically(path, bytes)
}

fn run_spe(cmd: SpeCommand) -> Result<()> {
    match cmd {
        SpeCommand::Dump {
            file,
            keep_going,
            jobs,
        } => {
            let f = TraceFile::open(&file)?;
            let mut opts = spe::dump::DumpOptions {
                keep_going,
                ..Default::default()
            };
            if let Some(jobs) = jobs {
                opts.jobs = jobs as usize;
            }
            let s = spe::dump::dump(&f, std::io::stdout().lock(), opts)?;
            if s.bad_packets > 0 {
                eprintln!(
                    "hyperprof: {}: {} byte(s) did not decode (printed as \"Bad packet!\")",
                    file.display(),
                    s.bad_packets
                );
            }
            Ok(())
        }
        SpeCommand::Stats { file, json } => {
            let f = TraceFile::open(&file)?;
            let s = spe::stats::stats(&f)?;
            if json {
                let text =
                    serde_json::to_string_pretty(&s).map_err(|e| Error::Usage(e.to_string()))?;
                write_stdout(&(text + "\n"))
            } else {
                write_stdout(&spe::stats::render(&s))
            }
        }
        SpeCommand::Export {
            raw,
            output,
            format: format @ (ExportFormat::Parquet | ExportFormat::Csv),
            cpu,
            ..
        } => {
            let [file] = raw.as_slice() else {
                return Err(Error::Usage(
                    "--format parquet|csv exports one trace file at a time".into(),
                ));
            };
            let trace = TraceFile::open(file)?;
            let symbols = spe::table::Symbols::beside(&trace);
            let format = if format == ExportFormat::Parquet {
                spe::table::TableFormat::Parquet
            } else {
                spe::table::TableFormat::Csv
            };
            let e = spe::table::export_tables(&trace, &output, format, cpu, &symbols)?;
            let mut text = Vec::new();
            spe::table::render(&e, &mut text).map_err(|e| Error::io("<stdout>", e))?;
            write_stdout(&String::from_utf8_lossy(&text))
        }
        SpeCommand::Export {
            raw,
            output,
            cpu,
            pmu_type,
            ..
        } => {
            let files = raw
                .iter()
                .map(|p| TraceFile::open(p))
                .collect::<Result<Vec<_>>>()?;
            spe::export::export(&files, &output, cpu, pmu_type)
        }
        SpeCommand::Synth {
            output,
            records,
            record_size,
            seed,
        } => {
            let bytes = spe::synth::synth(&spe::synth::SynthConfig {
                records,
                record_size,
                seed,
            })?;
            write_file(&output, &bytes)
        }
    }
}

fn demo(out: PathBuf, seed: u64) -> Result<()> {
    std::fs::create_dir_all(&out).map_err(|e| Error::output(&out, e))?;
    let raw = spe::synth::synth(&spe::synth::SynthConfig {
        records: 65_536,
        record_size: 64,
        seed,
    })?;
    let raw_path = out.join("demo.spe");
    let data_path = out.join("demo.perf.data");
    write_file(&raw_path, &raw)?;
    spe::synth::write_profile(&out, "demo.perf.data", &raw)?;
    let stats = spe::stats::stats(&TraceFile::open(&data_path)?)?;
    let mut text = format!(
        "hyperprof demo: a synthetic SPE trace (seed {seed}), exported for perf\n\
         raw trace:  {}\nperf.data:  {}  (hyperprof perf-setup {}, then perf report --stdio --itrace=i1i -i {})\n\n",
        raw_path.display(),
        data_path.display(),
        out.display(),
        data_path.display()
    );
    text += &spe::stats::render(&stats);
    write_stdout(&text)
}

/// `scenario check`: exactly the validation `run` does, the file and then
/// the system built (machine, hypervisor, VMs, vCPUs, host drivers) without
/// running a round.
fn check_scenario(file: &std::path::Path) -> Result<()> {
    let s = hyperprof::scenario::Scenario::load(file)?;
    let system = hyperprof::run::from_scenario::build_checked(&s)
        .map_err(|e| Error::Usage(format!("{}: {e}", file.display())))?;
    let setup = system.setup();
    write_stdout(&format!(
        "{}: scenario {:?}: {} CPUs ({} with SPE), {} host, {} VM(s) ({} booting an image), {} \
         guest operations each\n",
        file.display(),
        setup.name,
        setup.machine.pes.len(),
        setup.machine.pes.iter().filter(|p| p.spe.is_some()).count(),
        if setup.nvhe { "nVHE" } else { "VHE" },
        setup.vms.len(),
        setup.vms.iter().filter(|v| v.image.is_some()).count(),
        s.run.guest_ops
    ))
}

fn run_scenario(
    scenario: Scenario,
    seed: u64,
    ops: u64,
    cpus: Option<usize>,
    out: Option<PathBuf>,
    json: bool,
) -> Result<()> {
    use hyperprof::run::{bare_metal, report};
    let mut wrote = Vec::new();
    let (text, holds) = match scenario {
        Scenario::BareMetal => {
            let opts = bare_metal::Options {
                seed,
                ops,
                cpus: cpus.unwrap_or(4),
            };
            let pes = with_ticks("bare-metal", || bare_metal::run(&opts))?;
            let rep = report::from_pe_reports("bare-metal", seed, &pes);
            if let Some(dir) = &out {
                wrote.extend(bare_metal::write_profile(dir, &opts, &pes)?);
            }
            let holds = rep.invariants.iter().all(|v| v.holds);
            let text = if json {
                serde_json::to_string_pretty(&rep).map_err(|e| Error::Usage(e.to_string()))? + "\n"
            } else {
                report::render(&rep)
            };
            (text, holds)
        }
        Scenario::GuestSpe | Scenario::GuestSpeNvhe => {
            if cpus.is_some() {
                return Err(Error::Usage(
                    "--cpus applies to the bare-metal scenario; the guest-spe scenarios run on two CPUs".into(),
                ));
            }
            let nvhe = matches!(scenario, Scenario::GuestSpeNvhe);
            let setup = hyperprof::run::presets::guest_spe(seed, ops, nvhe);
            return run_system(&setup, out, json);
        }
        Scenario::Pinning => {
            if cpus.is_some() || out.is_some() {
                return Err(Error::Usage(
                    "--cpus and --out do not apply to the pinning scenario (one CPU, a table)"
                        .into(),
                ));
            }
            let rep = hyperprof::run::pinning::run(&hyperprof::run::pinning::Options::builtin(
                seed, ops,
            ))?;
            let text = if json {
                serde_json::to_string_pretty(&rep).map_err(|e| Error::Usage(e.to_string()))? + "\n"
            } else {
                hyperprof::run::pinning::render(&rep)
            };
            (text, rep.violations.is_empty())
        }
        Scenario::GuestPmu => {
            if cpus.is_some() {
                return Err(Error::Usage(
                    "--cpus applies to the bare-metal scenario; guest-pmu runs on two CPUs".into(),
                ));
            }
            let setup = hyperprof::run::presets::guest_pmu(seed, ops);
            return run_system(&setup, out, json);
        }
    };
    let mut text = text;
    if !json && !wrote.is_empty() {
        text += "\n";
        for p in &wrote {
            text += &if p.extension().is_some_and(|e| e == "elf") {
                format!("symbols:  {}\n", p.display())
            } else {
                format!(
                    "SPE data: {}  (perf report --stdio --itrace=i1i -i {})\n",
                    p.display(),
                    p.display()
                )
            };
        }
    }
    write_stdout(&text)?;
    if !holds {
        return Err(Error::Invariant(
            "an invariant did not hold (see the report)".into(),
        ));
    }
    Ok(())
}

/// A progress bar on stderr, drawn only when stderr is a terminal and the
/// run has taken more than a second, and redrawn at most ten times a second.
struct Progress {
    start: std::time::Instant,
    last: Option<std::time::Instant>,
    shown: bool,
    tty: bool,
}

/// Shortest time between two redraws.
const REDRAW: std::time::Duration = std::time::Duration::from_millis(100);

impl Progress {
    fn new() -> Progress {
        use std::io::IsTerminal;
        Progress {
            start: std::time::Instant::now(),
            last: None,
            shown: false,
            tty: std::io::stderr().is_terminal(),
        }
    }

    /// Whether to draw now: a terminal, over a second in, and the last
    /// drawing at least [`REDRAW`] ago.
    fn due(&mut self) -> bool {
        let now = std::time::Instant::now();
        if !self.tty
            || now.duration_since(self.start).as_secs_f64() < 1.0
            || self.last.is_some_and(|t| now.duration_since(t) < REDRAW)
        {
            return false;
        }
        self.last = Some(now);
        self.shown = true;
        true
    }

    fn update(&mut self, done: u64, total: u64) {
        if total == 0 || !self.due() {
            return;
        }
        let frac = (done as f64 / total as f64).min(1.0);
        let filled = (frac * 30.0) as usize;
        eprint!(
            "\r[{}{}] {:>3}%  {done} of {total} guest operations",
            "#".repeat(filled),
            " ".repeat(30 - filled),
            (frac * 100.0) as u32
        );
    }

    /// A run whose share done is not known: the time it has taken.
    fn tick(&mut self, what: &str) {
        if self.due() {
            eprint!(
                "\r{what}: running for {:.1} s",
                self.start.elapsed().as_secs_f64()
            );
        }
    }

    fn finish(&self) {
        if self.shown {
            eprint!("\r{}\r", " ".repeat(80));
        }
    }
}

/// Runs `work` on a thread while the progress line ticks on this one.
fn with_ticks<T: Send>(what: &str, work: impl FnOnce() -> T + Send) -> T {
    let mut progress = Progress::new();
    let result = std::thread::scope(|s| {
        let worker = s.spawn(work);
        while !worker.is_finished() {
            std::thread::sleep(std::time::Duration::from_millis(20));
            progress.tick(what);
        }
        worker.join()
    });
    progress.finish();
    match result {
        Ok(r) => r,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// Runs a system setup, writes its artifacts into `out` (when given) and
/// prints its report.
fn run_system(
    setup: &hyperprof::run::engine::Setup,
    out: Option<PathBuf>,
    json: bool,
) -> Result<()> {
    use hyperprof::run::engine;
    let system = engine::build(setup)?;
    run_built(system, out, json)
}

/// Runs a built system, writes its artifacts into `out` (when given) and
/// prints its report.
fn run_built(
    system: hyperprof::run::engine::System,
    out: Option<PathBuf>,
    json: bool,
) -> Result<()> {
    use hyperprof::run::{artifacts, system};
    let mut progress = Progress::new();
    let o = system.run(&mut |d, t| progress.update(d, t));
    progress.finish();
    let o = o?;
    let (mut rep, stacks) = system::build(&o);
    if let Some(dir) = out {
        artifacts::write(&dir, &o, &mut rep, &stacks)?;
    }
    print_system(&rep, json)
}

fn print_system(rep: &hyperprof::run::system::SystemReport, json: bool) -> Result<()> {
    let text = if json {
        serde_json::to_string_pretty(rep).map_err(|e| Error::Usage(e.to_string()))? + "\n"
    } else {
        hyperprof::run::system::render(rep)
    };
    write_stdout(&text)?;
    if !rep.invariants.iter().all(|v| v.holds) {
        return Err(Error::Invariant(
            "an invariant did not hold (see the report)".into(),
        ));
    }
    Ok(())
}

/// `hyperprof run` with its arguments.
struct RunArgs {
    file: Option<PathBuf>,
    scenario: Option<Scenario>,
    seed: Option<u64>,
    ops: Option<u64>,
    cpus: Option<usize>,
    out: Option<PathBuf>,
    json: bool,
    /// Replace the files of a previous run in `out`.
    force: bool,
    /// The bare `hyperprof` (the main job): it replaces the previous run in
    /// ./hyperprof-out, saying so, as there is no command line to add
    /// --force to.
    main_job: bool,
}

fn run(a: RunArgs) -> Result<()> {
    if let Some(s) = a.scenario {
        let seed = a.seed.unwrap_or(1);
        let ops = a.ops.unwrap_or(20_000_000);
        if let Some(dir) = &a.out {
            hyperprof::files::prepare_out_dir(dir, a.force)?;
        }
        return run_scenario(s, seed, ops, a.cpus, a.out, a.json);
    }
    if a.cpus.is_some() {
        return Err(Error::Usage(
            "--cpus applies to the bare-metal scenario; a scenario file describes its machine"
                .into(),
        ));
    }
    let mut scenario = match &a.file {
        Some(path) => hyperprof::scenario::Scenario::load(path)?,
        None => hyperprof::scenario::Scenario::builtin_default(),
    };
    if let Some(seed) = a.seed {
        scenario.seed = seed;
    }
    if let Some(ops) = a.ops {
        scenario.run.guest_ops = ops;
    }
    let setup =
        hyperprof::run::from_scenario::build_checked(&scenario).map_err(|e| match &a.file {
            Some(p) => Error::Usage(format!("{}: {e}", p.display())),
            None => Error::Usage(format!("the built-in default scenario: {e}")),
        })?;
    let out = a.out.unwrap_or_else(|| PathBuf::from("hyperprof-out"));
    if a.main_job && hyperprof::files::prepare_out_dir(&out, false).is_err() {
        eprintln!(
            "hyperprof: replacing the previous run's files in {}",
            out.display()
        );
    }
    hyperprof::files::prepare_out_dir(&out, a.force || a.main_job)?;
    run_built(setup, Some(out), a.json)
}

/// The command line, or the exit of a help or version request or of a usage
/// error, which is one line (clap's first) and [`ExitStatus::BadInput`].
fn parse_args() -> std::result::Result<Cli, ExitCode> {
    use clap::error::ErrorKind;
    match Cli::try_parse() {
        Ok(cli) => Ok(cli),
        Err(e) if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) => {
            // Help and version print as clap formats them.
            let _ = e.print();
            Err(ExitCode::from(ExitStatus::Success.code()))
        }
        Err(e) if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => {
            let _ = e.print();
            Err(ExitCode::from(ExitStatus::BadInput.code()))
        }
        Err(e) => {
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad command line");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("hyperprof: {first} (see hyperprof --help)");
            Err(ExitCode::from(ExitStatus::BadInput.code()))
        }
    }
}

fn main() -> ExitCode {
    let cli = match parse_args() {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    let result = match cli.command {
        Some(Command::Boot(args)) => return boot(args),
        Some(Command::Spe(cmd)) => run_spe(cmd),
        Some(Command::Demo { out, seed }) => demo(out, seed),
        Some(Command::Explore {
            bound,
            mutation,
            catalogue,
            nvhe,
        }) => hyperprof::explore::run(bound, mutation.as_deref(), catalogue, nvhe).and_then(
            |(text, ok)| {
                write_stdout(&text)?;
                if ok {
                    Ok(())
                } else {
                    Err(Error::Usage(
                        "explore: the switch broke an invariant, or a mutation went uncaught"
                            .into(),
                    ))
                }
            },
        ),
        Some(Command::Run {
            file,
            scenario,
            seed,
            ops,
            cpus,
            out,
            json,
            force,
        }) => run(RunArgs {
            file,
            scenario,
            seed,
            ops,
            cpus,
            out,
            json,
            force,
            main_job: false,
        }),
        Some(Command::Report { dir, json }) => {
            hyperprof::run::artifacts::read_report(&dir).and_then(|r| print_system(&r, json))
        }
        Some(Command::Scenario(ScenarioCommand::PrintDefault)) => {
            write_stdout(hyperprof::scenario::Scenario::default_text())
        }
        Some(Command::Scenario(ScenarioCommand::Check { file })) => check_scenario(&file),
        Some(Command::PerfSetup { dir, perf }) => hyperprof::perf::setup::setup(&dir, &perf)
            .and_then(|r| write_stdout(&hyperprof::perf::setup::render(&r, &perf))),
        // The main job: the built-in default scenario, artifacts in ./hyperprof-out.
        None => run(RunArgs {
            file: None,
            scenario: None,
            seed: None,
            ops: None,
            cpus: None,
            out: None,
            json: false,
            force: false,
            main_job: true,
        }),
    };
    match result {
        Ok(()) => ExitCode::from(ExitStatus::Success.code()),
        Err(e) => {
            eprintln!("hyperprof: {e}");
            ExitCode::from(e.exit_status().code())
        }
    }
}

/// `hyperprof boot`: its own exit statuses (see its help).
fn boot(args: BootCli) -> ExitCode {
    use hyperprof::boot::{BootArgs, BootEnd, PmuMode};
    let image = match hyperprof::boot::builtin(&args.image) {
        Some(b) => Ok(b.to_vec()),
        None if args.image.starts_with("builtin:") => Err(Error::Usage(format!(
            "boot: no built-in image {:?} (there are: {})",
            args.image,
            hyperprof::builtin::names().join(", ")
        ))),
        None => std::fs::read(&args.image).map_err(|e| Error::io(&args.image, e)),
    };
    let run = image.and_then(|image| {
        let a = BootArgs {
            name: args.image.clone(),
            image,
            append: args.append,
            mem_mib: args.mem,
            nvhe: args.nvhe,
            pmu: match args.pmu {
                BootPmu::Partitioned => PmuMode::Partitioned,
                BootPmu::Emulated => PmuMode::Emulated,
                BootPmu::Off => PmuMode::Off,
            },
            pmu_counters: args.pmu_counters,
            spe: args.spe,
            spe_max_buffer: args.spe_max_buffer,
            max_insns: args.max_insns,
            seed: args.seed,
            out: args.out,
            smp: args.smp,
            records_limit: args.guest_records_limit,
            cpus: args.cpus,
            slice: args.slice,
        };
        hyperprof::boot::boot(&a, &mut std::io::stdout().lock())
    });
    let outcome = match run {
        Ok(o) => o,
        Err(e) => {
            eprintln!("hyperprof: {e}");
            return ExitCode::from(e.exit_status().code());
        }
    };
    eprint!("{}", outcome.summary());
    if let Some(path) = &args.report {
        let text = serde_json::to_string_pretty(&outcome.json()).unwrap_or_default();
        if let Err(e) = hyperprof::spe::export::write_atomically(path, (text + "\n").as_bytes()) {
            eprintln!("hyperprof: {e}");
            return ExitCode::from(e.exit_status().code());
        }
    }
    if !outcome.problems.is_empty() {
        return ExitCode::from(1);
    }
    match outcome.end {
        BootEnd::PowerOff => ExitCode::SUCCESS,
        BootEnd::Reset => ExitCode::SUCCESS,
        BootEnd::Budget | BootEnd::Wedged => ExitCode::from(3),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_a_terminal(ran_for: std::time::Duration) -> Progress {
        Progress {
            start: std::time::Instant::now() - ran_for,
            last: None,
            shown: false,
            tty: true,
        }
    }

    #[test]
    fn progress_shows_after_a_second_and_redraws_at_most_ten_times_a_second() {
        let mut p = on_a_terminal(std::time::Duration::from_millis(0));
        assert!(!p.due(), "drawn before a second");
        let mut p = on_a_terminal(std::time::Duration::from_secs(2));
        assert!(p.due(), "not drawn after two seconds");
        assert!(!p.due(), "redrawn at once");
        p.last = Some(std::time::Instant::now() - REDRAW);
        assert!(p.due(), "not redrawn after {REDRAW:?}");
        let mut p = on_a_terminal(std::time::Duration::from_secs(2));
        p.tty = false;
        assert!(!p.due(), "drawn on a pipe");
    }
}
