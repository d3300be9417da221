//! The hyperprof command line.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

use hyperprof::error::{Error, Result};
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
    after_help = "With no command, runs the built-in default scenario (see `hyperprof scenario print-default`) and writes its artifacts to ./hyperprof-out."
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
        /// User operations per CPU (bare-metal) or per VM [default: the
        /// file's guest_ops, or 20000000].
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
    },
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
    /// Wrap raw SPE buffers into a perf.data file that perf reads.
    Export {
        /// Raw SPE buffers, one AUXTRACE record each.
        #[arg(required = true)]
        raw: Vec<PathBuf>,
        /// The perf.data file to write.
        #[arg(short, long)]
        output: PathBuf,
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
        Err(e) if e.kind() != std::io::ErrorKind::BrokenPipe => Err(Error::io("<stdout>", e)),
        _ => Ok(()),
    }
}

fn write_file(path: &PathBuf, bytes: &[u8]) -> Result<()> {
    std::fs::write(path, bytes).map_err(|e| Error::io(path, e))
}

fn run_spe(cmd: SpeCommand) -> Result<()> {
    match cmd {
        SpeCommand::Dump {
            file,
            keep_going,
            jobs,
        } => {
            let f = TraceFile::read(&file)?;
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
            let f = TraceFile::read(&file)?;
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
            cpu,
            pmu_type,
        } => {
            let files = raw
                .iter()
                .map(|p| TraceFile::read(p))
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
    std::fs::create_dir_all(&out).map_err(|e| Error::io(&out, e))?;
    let raw = spe::synth::synth(&spe::synth::SynthConfig {
        records: 65_536,
        record_size: 64,
        seed,
    })?;
    let raw_path = out.join("demo.spe");
    let data_path = out.join("demo.perf.data");
    write_file(&raw_path, &raw)?;
    let file = TraceFile {
        path: raw_path.clone(),
        bytes: raw,
    };
    spe::export::export(
        std::slice::from_ref(&file),
        &data_path,
        0,
        spe::export::DEFAULT_PMU_TYPE,
    )?;
    let stats = spe::stats::stats(&TraceFile::read(&data_path)?)?;
    let mut text = format!(
        "hyperprof demo: a synthetic SPE trace (seed {seed}), exported for perf\n\
         raw trace:  {}\nperf.data:  {}  (open with: perf report -D -i {})\n\n",
        raw_path.display(),
        data_path.display(),
        data_path.display()
    );
    text += &spe::stats::render(&stats);
    write_stdout(&text)
}

fn write_perf_data(path: &std::path::Path, buffers: &[(u32, &[u8])]) -> Result<()> {
    let buffers: Vec<_> = buffers
        .iter()
        .filter(|(_, d)| !d.is_empty())
        .map(|&(cpu, data)| hyperprof_spe::perf_data::AuxBuffer {
            cpu,
            aux_offset: 0,
            data,
        })
        .collect();
    let bytes = spe::export::perf_data_bytes(&buffers, spe::export::DEFAULT_PMU_TYPE);
    spe::export::write_atomically(path, &bytes)
}

fn check_scenario(file: &std::path::Path) -> Result<()> {
    let s = hyperprof::scenario::Scenario::load(file).map_err(|e| Error::Usage(e.to_string()))?;
    let setup = hyperprof::run::from_scenario::setup(&s)
        .map_err(|e| Error::Usage(format!("{}: {e}", file.display())))?;
    write_stdout(&format!(
        "{}: scenario {:?}: {} CPUs ({} with SPE), {} host, {} VM(s), {} guest operations each\n",
        file.display(),
        setup.name,
        setup.machine.pes.len(),
        setup.machine.pes.iter().filter(|p| p.spe.is_some()).count(),
        if setup.nvhe { "nVHE" } else { "VHE" },
        setup.vms.len(),
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
    if let Some(dir) = &out {
        std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    }
    let mut wrote = Vec::new();
    let (text, holds) = match scenario {
        Scenario::BareMetal => {
            let opts = bare_metal::Options {
                seed,
                ops,
                cpus: cpus.unwrap_or(4),
            };
            let pes = bare_metal::run(&opts)?;
            let rep = report::from_pe_reports("bare-metal", seed, &pes);
            if let Some(dir) = &out {
                let path = dir.join("host.perf.data");
                let bufs: Vec<_> = pes
                    .iter()
                    .map(|p| (p.cpu as u32, p.spe_data.as_slice()))
                    .collect();
                write_perf_data(&path, &bufs)?;
                wrote.push(path);
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
            text += &format!(
                "SPE data: {}  (perf report -D -i {})\n",
                p.display(),
                p.display()
            );
        }
    }
    write_stdout(&text)?;
    if !holds {
        return Err(Error::Usage(
            "an invariant did not hold (see the report)".into(),
        ));
    }
    Ok(())
}

/// A progress bar on stderr, drawn only when stderr is a terminal and the
/// run has taken more than a second.
struct Progress {
    start: std::time::Instant,
    shown: bool,
    tty: bool,
}

impl Progress {
    fn new() -> Progress {
        use std::io::IsTerminal;
        Progress {
            start: std::time::Instant::now(),
            shown: false,
            tty: std::io::stderr().is_terminal(),
        }
    }

    fn update(&mut self, done: u64, total: u64) {
        if !self.tty || self.start.elapsed().as_secs_f64() < 1.0 || total == 0 {
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
        self.shown = true;
    }

    fn finish(&self) {
        if self.shown {
            eprint!("\r{}\r", " ".repeat(80));
        }
    }
}

/// Runs a system setup, writes its artifacts into `out` (when given) and
/// prints its report.
fn run_system(
    setup: &hyperprof::run::engine::Setup,
    out: Option<PathBuf>,
    json: bool,
) -> Result<()> {
    use hyperprof::run::{artifacts, engine, system};
    let mut progress = Progress::new();
    let o = engine::run(setup, &mut |d, t| progress.update(d, t));
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
        return Err(Error::Usage(
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
}

fn run(a: RunArgs) -> Result<()> {
    if let Some(s) = a.scenario {
        let seed = a.seed.unwrap_or(1);
        let ops = a.ops.unwrap_or(20_000_000);
        return run_scenario(s, seed, ops, a.cpus, a.out, a.json);
    }
    if a.cpus.is_some() {
        return Err(Error::Usage(
            "--cpus applies to the bare-metal scenario; a scenario file describes its machine"
                .into(),
        ));
    }
    let mut scenario = match &a.file {
        Some(path) => {
            hyperprof::scenario::Scenario::load(path).map_err(|e| Error::Usage(e.to_string()))?
        }
        None => hyperprof::scenario::Scenario::builtin_default(),
    };
    if let Some(seed) = a.seed {
        scenario.seed = seed;
    }
    if let Some(ops) = a.ops {
        scenario.run.guest_ops = ops;
    }
    let setup = hyperprof::run::from_scenario::setup(&scenario).map_err(|e| match &a.file {
        Some(p) => Error::Usage(format!("{}: {e}", p.display())),
        None => Error::Usage(format!("the built-in default scenario: {e}")),
    })?;
    let out = a.out.unwrap_or_else(|| PathBuf::from("hyperprof-out"));
    run_system(&setup, Some(out), a.json)
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
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
        }) => run(RunArgs {
            file,
            scenario,
            seed,
            ops,
            cpus,
            out,
            json,
        }),
        Some(Command::Report { dir, json }) => {
            hyperprof::run::artifacts::read_report(&dir).and_then(|r| print_system(&r, json))
        }
        Some(Command::Scenario(ScenarioCommand::PrintDefault)) => {
            write_stdout(hyperprof::scenario::Scenario::default_text())
        }
        Some(Command::Scenario(ScenarioCommand::Check { file })) => check_scenario(&file),
        // The main job: the built-in default scenario, artifacts in ./hyperprof-out.
        None => run(RunArgs {
            file: None,
            scenario: None,
            seed: None,
            ops: None,
            cpus: None,
            out: None,
            json: false,
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("hyperprof: {e}");
            ExitCode::from(2)
        }
    }
}
