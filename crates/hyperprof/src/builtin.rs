//! The guest images built into the binary: the ELF files of guests/images
//! (built from guests/ by `make -C guests`), so that `hyperprof run` and a
//! scenario's `image = "builtin:NAME"` need nothing installed. The ELF
//! form keeps each image's symbol table, from which a code VM's profile
//! names its functions.

/// The prefix a scenario writes before the name of a built-in image.
pub const PREFIX: &str = "builtin:";

/// `(name, ELF image)` of every built-in image, by name.
pub const IMAGES: &[(&str, &[u8])] = &[
    (
        "handover",
        include_bytes!("../../../guests/images/handover.elf"),
    ),
    ("hello", include_bytes!("../../../guests/images/hello.elf")),
    (
        "icount",
        include_bytes!("../../../guests/images/icount.elf"),
    ),
    ("pmu", include_bytes!("../../../guests/images/pmu.elf")),
    (
        "selftest",
        include_bytes!("../../../guests/images/selftest.elf"),
    ),
    ("spe", include_bytes!("../../../guests/images/spe.elf")),
    (
        "spesuite",
        include_bytes!("../../../guests/images/spesuite.elf"),
    ),
    ("spin", include_bytes!("../../../guests/images/spin.elf")),
    ("smp", include_bytes!("../../../guests/images/smp.elf")),
    ("gic", include_bytes!("../../../guests/images/gic.elf")),
    ("timer", include_bytes!("../../../guests/images/timer.elf")),
    (
        "profiler",
        include_bytes!("../../../guests/images/profiler.elf"),
    ),
];

/// The built-in image `name` (without the prefix).
pub fn find(name: &str) -> Option<&'static [u8]> {
    IMAGES.iter().find(|(n, _)| *n == name).map(|(_, b)| *b)
}

/// Every built-in image as a scenario names it (`builtin:hello`, ...).
pub fn names() -> Vec<String> {
    IMAGES.iter().map(|(n, _)| format!("{PREFIX}{n}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_builtin_is_an_aarch64_elf_with_functions() {
        for (name, bytes) in IMAGES {
            assert_eq!(&bytes[..4], b"\x7fELF", "{name}");
            let symbols = crate::perf::elf::read_functions(bytes)
                .unwrap_or_else(|| panic!("{name}: no symbols"));
            assert!(symbols.iter().any(|s| s.name == "main"), "{name}");
        }
        assert!(find("spe").is_some_and(|b| b.len() > 4096));
        assert!(find("nope").is_none());
        assert!(names().contains(&"builtin:spin".to_string()));
    }
}
