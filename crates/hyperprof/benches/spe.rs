//! Throughput of the SPE codec on a 16 MiB trace of 64-byte records:
//! decoding to records, perf-style formatting on one core, and the whole
//! `spe dump` path (all cores) into a sink.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use hyperprof::spe::dump::{dump, DumpOptions};
use hyperprof::spe::input::TraceFile;
use hyperprof::spe::synth::{synth, SynthConfig};
use hyperprof_spe::text::{write_dump_line, DumpWalker, Sink};
use hyperprof_spe::RecordDecoder;

const RECORDS: u64 = 16 << 20 >> 6;

fn trace() -> Vec<u8> {
    synth(&SynthConfig {
        records: RECORDS,
        record_size: 64,
        seed: 1,
    })
    .expect("valid configuration")
}

struct Bytes(Vec<u8>);

impl Sink for Bytes {
    fn put(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
}

/// Decodes every record of `buf`, folding one field so the work is used.
#[inline(never)]
fn decode_all(buf: &[u8]) -> u64 {
    let mut n = 0u64;
    for r in RecordDecoder::new(buf) {
        let (_, rec) = r.expect("valid trace");
        n += rec.total_latency.unwrap_or(0) as u64;
    }
    n
}

fn benches(c: &mut Criterion) {
    let raw = trace();
    let mut g = c.benchmark_group("spe-16MiB");
    g.throughput(Throughput::Bytes(raw.len() as u64));
    g.sample_size(20);

    g.bench_function("decode-records", |b| {
        b.iter(|| decode_all(std::hint::black_box(&raw)))
    });

    let mut text = Bytes(Vec::with_capacity(raw.len() * 16));
    g.bench_function("dump-format-one-core", |b| {
        b.iter(|| {
            text.0.clear();
            for item in DumpWalker::new(&raw, 0) {
                write_dump_line(&mut text, &raw, &item);
            }
            text.0.len()
        })
    });

    // The command streams its input from a file, as `spe dump` does.
    let path = std::env::temp_dir().join(format!("hyperprof-bench-{}.spe", std::process::id()));
    std::fs::write(&path, &raw).expect("temporary trace written");
    let file = TraceFile::open(&path).expect("temporary trace opened");
    for jobs in [1, 2] {
        let opts = DumpOptions {
            keep_going: false,
            jobs,
        };
        g.bench_function(format!("spe-dump-command-jobs{jobs}"), |b| {
            b.iter(|| {
                dump(&file, std::io::sink(), opts)
                    .expect("valid trace")
                    .lines
            })
        });
    }
    g.finish();
    let _ = std::fs::remove_file(&path);
}

criterion_group!(spe_benches, benches);
criterion_main!(spe_benches);
