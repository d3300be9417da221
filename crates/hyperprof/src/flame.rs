//! Flame graphs: folded stacks in, an interactive SVG out, drawn by the
//! `inferno` crate (the Rust port of Brendan Gregg's flamegraph.pl).
//!
//! The input is the classic "folded" form of sampled call stacks: one line
//! per distinct stack, frames root-first and separated by `;`, then
//! whitespace and the number of samples that had that stack
//! (`main;parse;lex 123`). [`FoldedStacks`] holds such a set, merging equal
//! stacks and keeping them sorted by their frames, so every traversal is in
//! one deterministic order.
//!
//! [`render_svg`] hands the set to inferno with colours from a hash of each
//! frame's name and no randomness, so a function has the same colour in
//! every graph and the same input always gives byte-identical output. An
//! empty set gives a small document saying "no samples" (inferno refuses
//! one).

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The name a frame left empty gets.
const UNKNOWN_FRAME: &str = "[unknown]";
/// The largest total handed to inferno, which adds counts in a `usize`:
/// larger sets are scaled down (each stack keeps at least one sample).
const MAX_TOTAL: u64 = 1 << 48;

/// A malformed line of folded-stack text. Every variant names the 1-based
/// line it was found on.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FlameError {
    /// The line has no whitespace-separated sample count after the stack.
    #[error("line {line}: missing sample count (expected `frame;frame;... COUNT`)")]
    MissingCount {
        /// The 1-based line number.
        line: usize,
    },
    /// The last whitespace-separated word of the line is not a decimal
    /// number.
    #[error("line {line}: sample count `{found}` is not a non-negative decimal number")]
    NonNumericCount {
        /// The 1-based line number.
        line: usize,
        /// The word found where the count should be.
        found: String,
    },
    /// The count is a decimal number too large for 64 bits.
    #[error("line {line}: sample count `{found}` does not fit in 64 bits")]
    CountTooLarge {
        /// The 1-based line number.
        line: usize,
        /// The count as written.
        found: String,
    },
    /// The line has a count but no frame names before it.
    #[error("line {line}: empty stack (a sample count with no frames before it)")]
    EmptyStack {
        /// The 1-based line number.
        line: usize,
    },
    /// One of the `;`-separated frames of the stack is empty.
    #[error("line {line}: frame {frame} of the stack is empty")]
    EmptyFrame {
        /// The 1-based line number.
        line: usize,
        /// The 1-based position of the empty frame, counted from the root.
        frame: usize,
    },
}

/// A set of sampled call stacks with their sample counts.
///
/// Stacks are kept root-first, merged when equal and sorted by their frames
/// (byte order of the names, frame by frame), so iteration order, the folded
/// text and the rendered graph depend only on the contents.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FoldedStacks {
    stacks: BTreeMap<Vec<String>, u64>,
}

impl FoldedStacks {
    /// An empty set.
    pub fn new() -> FoldedStacks {
        FoldedStacks::default()
    }

    /// Adds `count` samples of the stack `frames` (root first), merging them
    /// into an equal stack already present. Counts saturate at `u64::MAX`.
    ///
    /// A stack with no frames or a count of zero adds nothing. Frame names
    /// are normalized so that every stored stack survives
    /// [`to_folded_text`](Self::to_folded_text) unchanged: `;` becomes `:`,
    /// control characters (line breaks, tabs, ...) become spaces, leading and
    /// trailing whitespace is removed, and a name left empty becomes
    /// `[unknown]`.
    pub fn add(&mut self, frames: &[&str], count: u64) {
        if frames.is_empty() || count == 0 {
            return;
        }
        let key: Vec<String> = frames.iter().map(|frame| normalize_frame(frame)).collect();
        let slot = self.stacks.entry(key).or_insert(0);
        *slot = slot.saturating_add(count);
    }

    /// The number of samples in all stacks, saturating at `u64::MAX`.
    pub fn total(&self) -> u64 {
        self.stacks
            .values()
            .fold(0u64, |sum, &count| sum.saturating_add(count))
    }

    /// The number of distinct stacks.
    pub fn len(&self) -> usize {
        self.stacks.len()
    }

    /// True when the set holds no samples.
    pub fn is_empty(&self) -> bool {
        self.stacks.is_empty()
    }

    /// The distinct stacks (root first) and their counts, sorted by frames.
    pub fn iter(&self) -> impl Iterator<Item = (&[String], u64)> + '_ {
        self.stacks
            .iter()
            .map(|(frames, &count)| (frames.as_slice(), count))
    }

    /// Parses folded-stack text: one `frame;frame;... COUNT` line per stack.
    ///
    /// The count is the last whitespace-separated word of the line, so frame
    /// names may contain spaces. Surrounding whitespace (including a `\r`
    /// before the line break and a leading byte-order mark) is ignored,
    /// blank lines are skipped, frames are trimmed, equal stacks are merged
    /// and lines with a count of zero add nothing. The error for a
    /// malformed line names its 1-based line number.
    pub fn from_folded_text(text: &str) -> Result<FoldedStacks, FlameError> {
        let mut stacks = FoldedStacks::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let raw = if index == 0 {
                raw.strip_prefix('\u{feff}').unwrap_or(raw)
            } else {
                raw
            };
            let trimmed = raw.trim();
            if trimmed.is_empty() {
                continue;
            }
            let Some((stack, count_text)) = trimmed.rsplit_once(char::is_whitespace) else {
                // A lone word: a count with nothing before it, or a stack
                // with nothing after it.
                return Err(if is_decimal(trimmed) {
                    FlameError::EmptyStack { line }
                } else {
                    FlameError::MissingCount { line }
                });
            };
            let count = parse_count(count_text, line)?;
            let frames: Vec<&str> = stack.split(';').map(str::trim).collect();
            if frames.iter().all(|frame| frame.is_empty()) {
                return Err(FlameError::EmptyStack { line });
            }
            if let Some(position) = frames.iter().position(|frame| frame.is_empty()) {
                return Err(FlameError::EmptyFrame {
                    line,
                    frame: position + 1,
                });
            }
            stacks.add(&frames, count);
        }
        Ok(stacks)
    }

    /// The set as folded-stack text, one `frame;frame;... COUNT` line per
    /// stack in sorted order, each ending in `\n`.
    /// [`from_folded_text`](Self::from_folded_text) of the result gives back
    /// an equal set.
    pub fn to_folded_text(&self) -> String {
        let mut out = String::new();
        for (frames, count) in self.iter() {
            out.push_str(&frames.join(";"));
            let _ = writeln!(out, " {count}");
        }
        out
    }
}

/// How [`render_svg`] draws a flame graph.
#[derive(Debug, Clone, PartialEq)]
pub struct FlameOptions {
    /// The heading drawn above the graph.
    pub title: String,
    /// The document's width in pixels. Values under 100 are treated as
    /// 100, over 100,000 as 100,000.
    pub width_px: u32,
    /// The height of one row of frames in pixels (1 to 1,000).
    pub frame_height_px: u32,
    /// Frames narrower than this many pixels are not drawn (0 to 1,000; a
    /// value that is not a number counts as 0.1).
    pub min_width_px: f64,
}

impl Default for FlameOptions {
    fn default() -> FlameOptions {
        FlameOptions {
            title: "Flame Graph".to_string(),
            width_px: 1200,
            frame_height_px: 16,
            min_width_px: 0.1,
        }
    }
}

/// The folded lines inferno draws: the stacks, scaled down when their total
/// exceeds [`MAX_TOTAL`].
fn inferno_lines(stacks: &FoldedStacks) -> Vec<String> {
    let total = stacks.total();
    let divisor = if total > MAX_TOTAL {
        total / MAX_TOTAL + 1
    } else {
        1
    };
    stacks
        .iter()
        .map(|(frames, count)| format!("{} {}", frames.join(";"), (count / divisor).max(1)))
        .collect()
}

/// Renders `stacks` as a standalone SVG flame graph with inferno: frames
/// with `<title>` tooltips (`name (N samples, P%)`), search and zoom.
/// Names and the title are XML-escaped. An empty set renders a document
/// saying "no samples". Equal inputs give byte-identical output.
pub fn render_svg(stacks: &FoldedStacks, opts: &FlameOptions) -> String {
    if stacks.is_empty() {
        return no_samples(opts);
    }
    let mut o = inferno::flamegraph::Options::default();
    o.title = opts.title.clone();
    o.count_name = "samples".to_string();
    o.image_width = Some(opts.width_px.clamp(100, 100_000) as usize);
    o.frame_height = opts.frame_height_px.clamp(1, 1_000) as usize;
    o.min_width = if opts.min_width_px.is_nan() {
        0.1
    } else {
        opts.min_width_px.clamp(0.0, 1_000.0)
    };
    o.hash = true;
    o.deterministic = true;
    let lines = inferno_lines(stacks);
    let mut svg = Vec::new();
    match inferno::flamegraph::from_lines(&mut o, lines.iter().map(String::as_str), &mut svg) {
        Ok(()) => String::from_utf8(svg)
            .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
        // Writing to memory cannot fail and the lines are well formed; a
        // refusal still leaves a document, one that says so.
        Err(e) => message_svg(opts, &format!("no graph: {e}")),
    }
}

/// The document of an empty set.
fn no_samples(opts: &FlameOptions) -> String {
    message_svg(opts, "no samples")
}

/// A document with the title and one line of text.
fn message_svg(opts: &FlameOptions, message: &str) -> String {
    let width = opts.width_px.clamp(100, 100_000);
    let centre = width / 2;
    let title = escape_xml(&opts.title);
    let message = escape_xml(message);
    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n");
    let _ = writeln!(
        out,
        "<svg version=\"1.1\" xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" \
         height=\"80\" viewBox=\"0 0 {width} 80\">"
    );
    let _ = writeln!(out, "<title>{title}</title>");
    let _ = writeln!(
        out,
        "<rect x=\"0\" y=\"0\" width=\"{width}\" height=\"80\" fill=\"rgb(250,248,240)\"/>"
    );
    let _ = writeln!(
        out,
        "<text x=\"{centre}\" y=\"24\" text-anchor=\"middle\" font-family=\"sans-serif\" \
         font-size=\"17\">{title}</text>"
    );
    let _ = writeln!(
        out,
        "<text x=\"{centre}\" y=\"56\" text-anchor=\"middle\" font-family=\"sans-serif\" \
         font-size=\"12\">{message}</text>"
    );
    out.push_str("</svg>\n");
    out
}

/// `text` escaped for XML text and attribute values; characters XML 1.0
/// does not allow become U+FFFD.
fn escape_xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            '\t' | '\n' | '\r' => out.push(c),
            c if (c as u32) < 0x20 || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A frame name as [`FoldedStacks::add`] stores it.
fn normalize_frame(frame: &str) -> String {
    let cleaned: String = frame
        .chars()
        .map(|c| match c {
            ';' => ':',
            c if c.is_control() => ' ',
            c => c,
        })
        .collect();
    let trimmed = cleaned.trim();
    if trimmed.is_empty() {
        UNKNOWN_FRAME.to_string()
    } else {
        trimmed.to_string()
    }
}

/// True when `word` is one or more ASCII digits.
fn is_decimal(word: &str) -> bool {
    !word.is_empty() && word.bytes().all(|b| b.is_ascii_digit())
}

/// The sample count at the end of line `line`.
fn parse_count(word: &str, line: usize) -> Result<u64, FlameError> {
    if word.is_empty() {
        return Err(FlameError::MissingCount { line });
    }
    if !is_decimal(word) {
        return Err(FlameError::NonNumericCount {
            line,
            found: word.to_string(),
        });
    }
    word.parse().map_err(|_| FlameError::CountTooLarge {
        line,
        found: word.to_string(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> FoldedStacks {
        FoldedStacks::from_folded_text(
            "main;parse;lex 7\n\
             main;parse 2\n\
             main;eval;add 3\n\
             main;eval;mul 1\n\
             idle 13\n",
        )
        .expect("valid folded text")
    }

    #[test]
    fn folded_text_round_trip() {
        let text = "b;c 5\r\n\n  a;x y;z   12  \n\u{1}weird\t;q 3\na 1\n";
        let stacks = FoldedStacks::from_folded_text(text).expect("valid");
        let folded = stacks.to_folded_text();
        assert_eq!(folded, "a 1\na;x y;z 12\nb;c 5\nweird;q 3\n");
        let again = FoldedStacks::from_folded_text(&folded).expect("own output parses");
        assert_eq!(again, stacks);
        assert_eq!(again.to_folded_text(), folded);
        assert_eq!(stacks.total(), 21);
    }

    #[test]
    fn add_merges_duplicates_and_sorts_by_frames() {
        let mut stacks = FoldedStacks::new();
        stacks.add(&["main", "work"], 3);
        stacks.add(&["main"], 1);
        stacks.add(&["main", "work"], 4);
        stacks.add(&["alpha"], 2);
        stacks.add(&[], 9);
        stacks.add(&["main", "zero"], 0);
        assert_eq!(stacks.len(), 3);
        assert_eq!(stacks.total(), 10);
        let listed: Vec<(Vec<&str>, u64)> = stacks
            .iter()
            .map(|(frames, count)| (frames.iter().map(String::as_str).collect(), count))
            .collect();
        assert_eq!(
            listed,
            vec![
                (vec!["alpha"], 2),
                (vec!["main"], 1),
                (vec!["main", "work"], 7)
            ]
        );
        stacks.add(&["alpha"], u64::MAX);
        assert_eq!(stacks.total(), u64::MAX);
    }

    #[test]
    fn add_normalizes_names_so_text_round_trips() {
        let mut stacks = FoldedStacks::new();
        stacks.add(&["a;b", " line\nbreak ", ""], 2);
        let folded = stacks.to_folded_text();
        assert_eq!(folded, "a:b;line break;[unknown] 2\n");
        assert_eq!(FoldedStacks::from_folded_text(&folded), Ok(stacks));
    }

    #[test]
    fn malformed_lines_name_their_line() {
        let cases: [(&str, FlameError); 7] = [
            ("a;b 1\nmain;work\n", FlameError::MissingCount { line: 2 }),
            (
                "a 1\n\nb 2\nmain;work lots\n",
                FlameError::NonNumericCount {
                    line: 4,
                    found: "lots".into(),
                },
            ),
            (
                "a -3\n",
                FlameError::NonNumericCount {
                    line: 1,
                    found: "-3".into(),
                },
            ),
            ("a 1\n   42\n", FlameError::EmptyStack { line: 2 }),
            ("a 1\nb 1\n;; 5\n", FlameError::EmptyStack { line: 3 }),
            (
                "main;;work 5\n",
                FlameError::EmptyFrame { line: 1, frame: 2 },
            ),
            (
                "x 1\ny 18446744073709551616\n",
                FlameError::CountTooLarge {
                    line: 2,
                    found: "18446744073709551616".into(),
                },
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                FoldedStacks::from_folded_text(text),
                Err(expected.clone()),
                "{text:?}"
            );
        }
        let message = FoldedStacks::from_folded_text("ok 1\nok 2\nbroken\n")
            .expect_err("missing count")
            .to_string();
        assert!(
            message.starts_with("line 3: missing sample count"),
            "{message}"
        );
        let message = FoldedStacks::from_folded_text("f x1\n")
            .expect_err("non-numeric")
            .to_string();
        assert_eq!(
            message,
            "line 1: sample count `x1` is not a non-negative decimal number"
        );
    }

    #[test]
    fn graphs_name_every_function_and_are_deterministic() {
        let svg = render_svg(&sample(), &FlameOptions::default());
        assert!(svg.starts_with("<?xml"));
        assert!(svg.contains("<svg"));
        for f in ["main", "parse", "lex", "eval", "add", "mul", "idle"] {
            assert!(svg.contains(&format!(">{f} (")), "{f}");
        }
        assert!(svg.contains("lex (7 samples, 26.92%)"), "{svg}");
        assert_eq!(svg, render_svg(&sample(), &FlameOptions::default()));
        // Insertion order does not matter.
        let mut reordered = FoldedStacks::new();
        for (frames, count) in sample().iter().collect::<Vec<_>>().into_iter().rev() {
            let frames: Vec<&str> = frames.iter().map(String::as_str).collect();
            reordered.add(&frames, count);
        }
        assert_eq!(render_svg(&reordered, &FlameOptions::default()), svg);
    }

    #[test]
    fn names_and_titles_are_escaped() {
        let mut stacks = FoldedStacks::new();
        stacks.add(&["main", "<script>alert('x&y')</script>", "\"q\">"], 4);
        let opts = FlameOptions {
            title: "<script>evil()</script>".to_string(),
            ..FlameOptions::default()
        };
        let svg = render_svg(&stacks, &opts);
        assert!(!svg.contains("<script>alert"));
        assert!(!svg.contains("<script>evil"));
        assert!(svg.contains("&lt;script&gt;alert("), "{svg}");
        assert!(svg.contains("&lt;script&gt;evil()&lt;/script&gt;"));
        assert_eq!(escape_xml("a\u{0}b\u{ffff}\t<"), "a\u{fffd}b\u{fffd}\t&lt;");
    }

    #[test]
    fn empty_input_says_no_samples() {
        let svg = render_svg(&FoldedStacks::new(), &FlameOptions::default());
        assert!(svg.contains(">no samples</text>"));
        assert!(svg.contains("viewBox=\"0 0 1200 80\""));
        let parsed = FoldedStacks::from_folded_text("\n  \n").expect("blank text");
        assert!(parsed.is_empty());
        assert_eq!(render_svg(&parsed, &FlameOptions::default()), svg);
    }

    #[test]
    fn odd_options_deep_stacks_and_huge_counts_do_not_panic() {
        let deep: Vec<String> = (0..2_000).map(|i| format!("f{i}")).collect();
        let deep: Vec<&str> = deep.iter().map(String::as_str).collect();
        let mut stacks = sample();
        stacks.add(&deep, 5);
        for opts in [
            FlameOptions {
                title: "\u{0}\u{7}".to_string(),
                width_px: 0,
                frame_height_px: 0,
                min_width_px: f64::NAN,
            },
            FlameOptions {
                title: String::new(),
                width_px: u32::MAX,
                frame_height_px: u32::MAX,
                min_width_px: -1.0,
            },
            FlameOptions {
                min_width_px: f64::INFINITY,
                ..FlameOptions::default()
            },
        ] {
            let svg = render_svg(&stacks, &opts);
            assert!(svg.contains("<svg"), "{opts:?}");
        }
        let mut huge = FoldedStacks::new();
        huge.add(&["a"], u64::MAX);
        huge.add(&["b"], u64::MAX);
        huge.add(&["c"], 1);
        let svg = render_svg(&huge, &FlameOptions::default());
        assert!(svg.contains(">a (") && svg.contains(">b ("), "{svg}");
        let scaled = inferno_lines(&huge);
        assert_eq!(scaled.len(), 3);
        assert_eq!(scaled[2], "c 1", "every stack keeps a sample");
    }
}
