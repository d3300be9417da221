//! Tests of the keys for VMs that boot images and of `[[migrate]]` steps:
//! what each accepts, and the field and words of every refusal.

use std::path::Path;

use super::*;

/// A machine with SPE and a VHE host that reserves two of eight counters,
/// and the `[[vm]]` tables `vms`.
fn scenario(vms: &str) -> String {
    format!(
        r#"name = "t"
seed = 7
[run]
guest_ops = 1000
host_ops = 1000
[machine]
host_mode = "vhe"
ram_mib = 512
[[machine.cpus]]
count = 2
[machine.cpus.pmu]
counters = 8
version = "3.5"
[machine.cpus.spe]
[host]
workload = "kernel-mix"
pmu_reserved_counters = 2
{vms}"#
    )
}

const CODE_VM: &str = r#"
[[vm]]
name = "c"
ram_mib = 128
image = "builtin:spe"
bootargs = "quiet"
max_insns = 5000
[vm.pmu]
mode = "partitioned"
[vm.spe]
max_buffer_size = 65536
"#;

fn pmu_vm(name: &str, seed: u64, mode: &str) -> String {
    format!(
        r#"
[[vm]]
name = "{name}"
ram_mib = 64
workload = "mix"
seed = {seed}
[vm.pmu]
mode = "{mode}"
[[vm.pmu.events]]
event = "inst_retired"
period = 1000
"#
    )
}

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    Scenario::parse(text, Path::new("t.toml"))
}

/// The field and kind of the refusal of `text`.
fn refusal(text: &str) -> (String, ErrorKind) {
    match parse(text) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => (e.field, e.kind),
    }
}

fn reason(kind: &ErrorKind) -> String {
    kind.to_string()
}

#[test]
fn a_code_vm_names_its_image_bootargs_and_budget() {
    let s = parse(&scenario(CODE_VM)).unwrap();
    let vm = &s.vms[0];
    assert!(vm.is_code());
    assert_eq!(vm.image.as_deref(), Some("builtin:spe"));
    assert_eq!(vm.bootargs.as_deref(), Some("quiet"));
    assert_eq!(vm.max_insns(), 5000);
    assert_eq!(vm.spe.as_ref().map(|s| s.session()), Some(None));
    assert_eq!(image_label("builtin:spe"), "spe");
    assert_eq!(
        image_label("/x/a-rather-long-image-name.elf"),
        "a-rather-long-i"
    );
    let text = scenario(&CODE_VM.replace("max_insns = 5000\n", ""));
    assert_eq!(
        parse(&text).unwrap().vms[0].max_insns(),
        guest_image::DEFAULT_MAX_INSNS
    );
}

#[test]
fn a_vm_runs_a_workload_or_an_image_with_only_the_keys_that_apply() {
    let both = scenario(&CODE_VM.replace("image =", "workload = \"mix\"\nimage ="));
    let (field, kind) = refusal(&both);
    assert_eq!(field, "vm[0].workload");
    assert!(
        reason(&kind).contains("either a workload or an image"),
        "{kind}"
    );

    let neither = scenario(&CODE_VM.replace("image = \"builtin:spe\"\n", ""));
    assert_eq!(
        refusal(&neither),
        ("vm[0].workload".into(), ErrorKind::MissingKey)
    );

    let session = scenario(&CODE_VM.replace("max_buffer_size", "interval = 1024\nmax_buffer_size"));
    let (field, kind) = refusal(&session);
    assert_eq!(field, "vm[0].spe.interval");
    assert!(reason(&kind).contains("its own SPE driver"), "{kind}");

    let events = scenario(&CODE_VM.replace(
        "[vm.spe]",
        "[[vm.pmu.events]]\nevent = \"inst_retired\"\n[vm.spe]",
    ));
    assert_eq!(refusal(&events).0, "vm[0].pmu.events");

    let seeded = scenario(&CODE_VM.replace("bootargs", "seed = 3\nbootargs"));
    assert_eq!(refusal(&seeded).0, "vm[0].seed");

    let long = scenario(&CODE_VM.replace("\"quiet\"", &format!("\"{}\"", "a".repeat(5000))));
    assert_eq!(refusal(&long).0, "vm[0].bootargs");

    let workload_bootargs =
        scenario(&pmu_vm("w", 1, "emulated").replace("seed = 1", "bootargs = \"x\""));
    let (field, kind) = refusal(&workload_bootargs);
    assert_eq!(field, "vm[0].bootargs");
    assert!(reason(&kind).contains("boots an image"), "{kind}");

    let no_session =
        scenario("\n[[vm]]\nname = \"w\"\nram_mib = 64\nworkload = \"mix\"\n[vm.spe]\n");
    assert_eq!(
        refusal(&no_session),
        ("vm[0].spe.interval".into(), ErrorKind::MissingKey)
    );
}

#[test]
fn an_unknown_builtin_lists_the_known_ones_at_its_line() {
    let text = scenario(&CODE_VM.replace("builtin:spe", "builtin:nope"));
    let e = parse(&text).unwrap_err();
    assert_eq!(e.field, "vm[0].image");
    let line = text.lines().position(|l| l.starts_with("image")).unwrap() + 1;
    assert_eq!(e.line, Some(line as u32));
    let msg = e.to_string();
    assert!(
        msg.contains("image builtin:nope: no such built-in image"),
        "{msg}"
    );
    for name in crate::builtin::names() {
        assert!(msg.contains(&name), "{msg}");
    }
}

#[test]
fn a_relative_image_path_is_read_from_the_scenarios_directory() {
    let text = scenario(&CODE_VM.replace("builtin:spe", "missing.elf"));
    let e = Scenario::parse(&text, Path::new("/some/dir/t.toml")).unwrap_err();
    assert_eq!(e.field, "vm[0].image");
    assert!(
        e.to_string().contains("image /some/dir/missing.elf: "),
        "relative to the scenario's directory: {e}"
    );
}

#[test]
fn migrations_move_workload_vms_with_a_vpmu_to_a_possible_destination() {
    let two = pmu_vm("a", 5, "partitioned") + &pmu_vm("b", 5, "partitioned");
    let step = |extra: &str| format!("{two}\n[[migrate]]\nvm = \"a\"\nround = 3\n{extra}");
    let s = parse(&scenario(&step("pmu = \"emulated\"\ntwin = \"b\"\n"))).unwrap();
    assert_eq!(s.migrations_of("a").len(), 1);
    assert_eq!(s.migrations[0].pmu, Some(PmuMode::Emulated));

    let (field, kind) = refusal(&scenario(&step("").replace("vm = \"a\"", "vm = \"z\"")));
    assert_eq!(field, "migrate[0].vm");
    assert!(reason(&kind).contains("no [[vm]] is named \"z\""), "{kind}");

    let code = scenario(&format!("{CODE_VM}\n[[migrate]]\nvm = \"c\"\nround = 2\n"));
    let (field, kind) = refusal(&code);
    assert_eq!(field, "migrate[0].vm");
    assert!(reason(&kind).contains("boots an image"), "{kind}");

    let spe = scenario(
        "\n[[vm]]\nname = \"s\"\nram_mib = 64\nworkload = \"mix\"\n[vm.pmu]\nmode = \"emulated\"\n\
         [vm.spe]\ninterval = 1024\nbuffer_kib = 64\n\n[[migrate]]\nvm = \"s\"\nround = 2\n",
    );
    assert!(reason(&refusal(&spe).1).contains("one-reg does not carry"));

    let no_pmu = scenario("\n[[vm]]\nname = \"p\"\nram_mib = 64\nworkload = \"mix\"\n\n[[migrate]]\nvm = \"p\"\nround = 2\n");
    assert!(reason(&refusal(&no_pmu).1).contains("has no vPMU"));

    let again = step("") + "\n[[migrate]]\nvm = \"a\"\nround = 3\n";
    assert_eq!(refusal(&scenario(&again)).0, "migrate[1].round");

    let zero = step("").replace("round = 3", "round = 0");
    assert!(matches!(
        refusal(&scenario(&zero)).1,
        ErrorKind::OutOfRange { .. }
    ));

    let self_twin = step("twin = \"a\"\n");
    assert!(reason(&refusal(&scenario(&self_twin)).1).contains("never moves"));

    let other_seed = format!(
        "{}{}\n[[migrate]]\nvm = \"a\"\nround = 3\ntwin = \"b\"\n",
        pmu_vm("a", 5, "partitioned"),
        pmu_vm("b", 6, "partitioned")
    );
    let (field, kind) = refusal(&scenario(&other_seed));
    assert_eq!(field, "migrate[0].twin");
    assert!(reason(&kind).contains("the same seed"), "{kind}");

    let nvhe = scenario(
        &step("pmu = \"partitioned\"\n").replace("partitioned\"\n[[vm.pmu", "emulated\"\n[[vm.pmu"),
    )
    .replace("host_mode = \"vhe\"", "host_mode = \"nvhe\"");
    let (field, _) = refusal(&nvhe);
    assert_eq!(field, "migrate[0].pmu");

    // Each move takes a destination VM's RAM from the machine.
    let crowded = scenario(&step("")).replace("ram_mib = 512", "ram_mib = 192");
    let (field, kind) = refusal(&crowded);
    assert_eq!(field, "machine.ram_mib");
    assert!(
        reason(&kind).contains("with a destination VM per migration"),
        "{kind}"
    );
    parse(&scenario(&step("")).replace("ram_mib = 512", "ram_mib = 256")).unwrap();

    let unknown = step("when = 3\n");
    let (field, kind) = refusal(&scenario(&unknown));
    assert!(field.starts_with("migrate[0]"), "{field}");
    assert!(matches!(kind, ErrorKind::UnknownKey { .. }), "{kind}");
}
