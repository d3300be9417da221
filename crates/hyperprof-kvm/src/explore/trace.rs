//! Counterexample traces made readable.

/// The key of a trace line's block (`"load cpu0"`), if it is an access.
fn block_of(line: &str) -> Option<&str> {
    let rest = line.strip_prefix('#')?;
    let rest = rest.split_once(' ')?.1.trim_start();
    Some(rest.split_once(':')?.0)
}

/// Blocks of accesses (one phase on one CPU) with nothing injected or left
/// out shrink to one line; the others stay whole.
pub(super) fn compact(trace: Vec<String>) -> Vec<String> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < trace.len() {
        let Some(key) = block_of(&trace[i]) else {
            out.push(trace[i].clone());
            i += 1;
            continue;
        };
        let mut j = i + 1;
        while j < trace.len()
            && (block_of(&trace[j]) == Some(key) || trace[j].starts_with("      "))
        {
            j += 1;
        }
        let block = &trace[i..j];
        if block.len() == 1
            || block
                .iter()
                .any(|l| l.contains(">>") || l.contains("LEFT OUT"))
        {
            out.extend(block.iter().cloned());
        } else {
            let first = block[0].split_whitespace().next().unwrap_or("");
            out.push(format!(
                "{first:<5} {key}: {} accesses, nothing injected",
                block.len()
            ));
        }
        i = j;
    }
    // Runs of one repeated line (an interrupt storm) as one line.
    let mut folded: Vec<String> = Vec::new();
    let mut n = 0;
    for l in out {
        if folded.last() == Some(&l) {
            n += 1;
            continue;
        }
        if n > 0 {
            folded.push(format!("      (the line above {n} more time(s))"));
            n = 0;
        }
        folded.push(l);
    }
    if n > 0 {
        folded.push(format!("      (the line above {n} more time(s))"));
    }
    folded
}
