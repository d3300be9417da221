//! Flame graphs: folded stacks in, a standalone SVG 1.1 document out.
//!
//! The input is the classic "folded" form of sampled call stacks: one line
//! per distinct stack, frames root-first and separated by `;`, then
//! whitespace and the number of samples that had that stack
//! (`main;parse;lex 123`). [`FoldedStacks`] holds such a set, merging equal
//! stacks and keeping them sorted by their frames, so every traversal is in
//! one deterministic order.
//!
//! [`render_svg`] draws the set as a flame graph: a frame called `all` at the
//! bottom spans the whole plot, and every frame sits on top of its caller
//! with a width proportional to the samples under it. Siblings are laid out
//! left to right in byte order of their names, and a frame's own samples
//! (those with no deeper frame) are the gap at its right-hand end. Colours
//! come from a hash of the frame's name, so a function has the same colour
//! in every graph, and the same input always gives byte-identical output.
//!
//! Nothing here recurses over the stack depth, so a stack of any depth
//! renders without exhausting the thread's stack.

use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The name of the frame under every stack, spanning the whole plot.
const ROOT_NAME: &str = "all";
/// What [`FoldedStacks::add`] stores for a frame name that is empty.
const UNKNOWN_FRAME: &str = "[unknown]";
/// Horizontal margin on each side of the plot, in pixels.
const X_PAD: f64 = 10.0;
/// Vertical margin under the plot, in pixels.
const BOTTOM_PAD: f64 = 10.0;
/// The narrowest document [`render_svg`] produces, in pixels.
const MIN_DOCUMENT_WIDTH: u32 = 100;
/// Space between a frame's left edge and its label, and at its right end.
const TEXT_PAD: f64 = 3.0;
/// Estimated advance of one character, as a fraction of the font size (the
/// labels use a monospace font, whose advance is close to 0.6 em).
const CHAR_WIDTH_EM: f64 = 0.6;
/// A frame whose box holds fewer characters than this gets no label.
const MIN_LABEL_CHARS: usize = 3;
/// What replaces the cut-off end of a label that does not fit.
const ELLIPSIS: &str = "..";

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
    /// The heading drawn above the graph (also the document's `<title>`).
    pub title: String,
    /// The document's width in pixels; the plot is this less a 10-pixel
    /// margin on each side. Values under 100 are treated as 100.
    pub width_px: u32,
    /// The height of one row of frames in pixels; labels use a font of
    /// three quarters of it. Zero is treated as 1.
    pub frame_height_px: u32,
    /// Frames narrower than this many pixels are not drawn, nor is anything
    /// above them; their samples still count toward their caller's width.
    /// The `all` frame at the bottom is always drawn.
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

/// Renders `stacks` as a standalone SVG 1.1 flame graph.
///
/// The document has an XML declaration, the SVG 1.1 doctype, `width`,
/// `height` and `viewBox`, a heading with `opts.title`, and one
/// `<g class="frame">` per drawn frame holding a `<title>` tooltip
/// (`name (N samples, P.PP%)`), the frame's `<rect class="frame">` and, when
/// the box is wide enough for at least three characters, a `<text>` label
/// (cut short with `..` if the name does not fit). Names and the title are
/// XML-escaped. An empty set renders a document saying "no samples".
/// Equal inputs give byte-identical output.
pub fn render_svg(stacks: &FoldedStacks, opts: &FlameOptions) -> String {
    let geometry = Geometry::new(opts);
    let nodes = build_tree(stacks);
    let total = nodes[0].value;
    let boxes = if total == 0 {
        Vec::new()
    } else {
        layout(&nodes, &geometry, opts.min_width_px)
    };
    let rows = boxes.iter().map(|b| b.depth + 1).max().unwrap_or(0);
    // An empty graph keeps two rows of room for its "no samples" notice.
    let plot_rows = if rows == 0 { 2 } else { rows };
    let height = (geometry.top + plot_rows as f64 * geometry.frame_height + BOTTOM_PAD).ceil();

    let mut out = String::new();
    out.push_str("<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n");
    out.push_str(
        "<!DOCTYPE svg PUBLIC \"-//W3C//DTD SVG 1.1//EN\" \
         \"http://www.w3.org/Graphics/SVG/1.1/DTD/svg11.dtd\">\n",
    );
    let _ = writeln!(
        out,
        "<svg version=\"1.1\" xmlns=\"http://www.w3.org/2000/svg\" \
         width=\"{w}\" height=\"{h}\" viewBox=\"0 0 {w} {h}\">",
        w = geometry.width,
        h = height,
    );
    let title = escape_xml(&opts.title);
    let _ = writeln!(out, "<title>{title}</title>");
    let _ = writeln!(
        out,
        "<rect x=\"0\" y=\"0\" width=\"{}\" height=\"{}\" fill=\"rgb(250,248,240)\"/>",
        geometry.width, height
    );
    let centre = f64::from(geometry.width) / 2.0;
    let _ = writeln!(
        out,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-family=\"sans-serif\" \
         font-size=\"{}\" fill=\"rgb(0,0,0)\">{title}</text>",
        num(centre),
        num(geometry.title_font * 1.5),
        num(geometry.title_font),
    );

    if boxes.is_empty() {
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\" font-family=\"sans-serif\" \
             font-size=\"{}\" fill=\"rgb(0,0,0)\">no samples</text>",
            num(centre),
            num(geometry.top + geometry.frame_height * 1.25),
            num(geometry.font),
        );
    } else {
        let _ = writeln!(
            out,
            "<g font-family=\"monospace\" font-size=\"{}\" fill=\"rgb(0,0,0)\">",
            num(geometry.font)
        );
        for frame in &boxes {
            write_frame(&mut out, &nodes, frame, rows, total, &geometry);
        }
        out.push_str("</g>\n");
    }
    out.push_str("</svg>\n");
    out
}

/// Sizes derived from the options, with out-of-range values clamped.
struct Geometry {
    /// Document width in pixels.
    width: u32,
    /// Width of the plot (the `all` frame) in pixels.
    plot_width: f64,
    /// Height of one row of frames.
    frame_height: f64,
    /// Font size of the labels.
    font: f64,
    /// Font size of the heading.
    title_font: f64,
    /// Height of the area above the plot, which holds the heading.
    top: f64,
}

impl Geometry {
    fn new(opts: &FlameOptions) -> Geometry {
        let width = opts.width_px.max(MIN_DOCUMENT_WIDTH);
        let frame_height = f64::from(opts.frame_height_px.max(1));
        let font = (frame_height * 0.75).floor().max(1.0);
        let title_font = (font * 1.5).floor().max(1.0);
        Geometry {
            width,
            plot_width: f64::from(width) - 2.0 * X_PAD,
            frame_height,
            font,
            title_font,
            top: (title_font * 2.0).ceil(),
        }
    }
}

/// One node of the call tree: a frame reached by one path from the root.
struct Node {
    name: String,
    /// Samples in this frame and everything it called.
    value: u128,
    /// Indices of the callees, in byte order of their names.
    children: Vec<usize>,
}

/// The call tree of `stacks` as an arena; index 0 is the `all` root.
fn build_tree(stacks: &FoldedStacks) -> Vec<Node> {
    let mut nodes = vec![Node {
        name: ROOT_NAME.to_string(),
        value: 0,
        children: Vec::new(),
    }];
    // Stacks come sorted frame by frame, so the callees of any node are
    // first met in sorted order, and a stack sharing a prefix with the
    // previous one continues from the node's last callee.
    for (frames, count) in stacks.iter() {
        let count = u128::from(count);
        nodes[0].value = nodes[0].value.saturating_add(count);
        let mut current = 0;
        for frame in frames {
            let existing = nodes[current]
                .children
                .last()
                .copied()
                .filter(|&child| nodes[child].name == *frame);
            let child = match existing {
                Some(child) => child,
                None => {
                    let id = nodes.len();
                    nodes.push(Node {
                        name: frame.clone(),
                        value: 0,
                        children: Vec::new(),
                    });
                    nodes[current].children.push(id);
                    id
                }
            };
            nodes[child].value = nodes[child].value.saturating_add(count);
            current = child;
        }
    }
    nodes
}

/// A frame to draw.
struct FrameBox {
    node: usize,
    /// Row, 0 being the `all` frame at the bottom.
    depth: usize,
    /// Left edge in document pixels.
    x: f64,
    /// Width in pixels.
    width: f64,
}

/// The frames to draw, callers before callees and siblings in order, leaving
/// out frames narrower than `min_width` and everything above them.
fn layout(nodes: &[Node], geometry: &Geometry, min_width: f64) -> Vec<FrameBox> {
    let scale = geometry.plot_width / nodes[0].value as f64;
    let mut boxes = Vec::new();
    // (node, depth, samples to the left of the node within the plot)
    let mut todo: Vec<(usize, usize, u128)> = vec![(0, 0, 0)];
    while let Some((id, depth, offset)) = todo.pop() {
        let node = &nodes[id];
        let width = node.value as f64 * scale;
        if id != 0 && width < min_width {
            continue;
        }
        boxes.push(FrameBox {
            node: id,
            depth,
            x: X_PAD + offset as f64 * scale,
            width,
        });
        let first = todo.len();
        let mut child_offset = offset;
        for &child in &node.children {
            todo.push((child, depth + 1, child_offset));
            child_offset = child_offset.saturating_add(nodes[child].value);
        }
        // Popped last-in first-out: reverse so the first callee comes first.
        todo[first..].reverse();
    }
    boxes
}

/// Writes one frame's group: tooltip, rectangle and (if it fits) label.
fn write_frame(
    out: &mut String,
    nodes: &[Node],
    frame: &FrameBox,
    rows: usize,
    total: u128,
    geometry: &Geometry,
) {
    let node = &nodes[frame.node];
    let row_from_top = rows.saturating_sub(frame.depth + 1);
    let y = geometry.top + row_from_top as f64 * geometry.frame_height;
    let rect_height = if geometry.frame_height > 1.0 {
        geometry.frame_height - 1.0
    } else {
        geometry.frame_height
    };
    let percent = node.value as f64 / total as f64 * 100.0;
    let tooltip = format!("{} ({} samples, {:.2}%)", node.name, node.value, percent);
    let (r, g, b) = frame_colour(&node.name);
    out.push_str("<g class=\"frame\">\n");
    let _ = writeln!(out, "<title>{}</title>", escape_xml(&tooltip));
    let _ = writeln!(
        out,
        "<rect class=\"frame\" x=\"{}\" y=\"{}\" width=\"{}\" height=\"{}\" \
         rx=\"2\" ry=\"2\" fill=\"rgb({r},{g},{b})\"/>",
        num(frame.x),
        num(y),
        num(frame.width),
        num(rect_height),
    );
    if let Some(label) = fit_label(&node.name, frame.width, geometry.font) {
        let _ = writeln!(
            out,
            "<text x=\"{}\" y=\"{}\">{}</text>",
            num(frame.x + TEXT_PAD),
            num(y + geometry.frame_height * 0.75),
            escape_xml(&label),
        );
    }
    out.push_str("</g>\n");
}

/// The label for a box `width` pixels wide at font size `font`: the whole
/// name if it fits, else its start followed by `..`, or `None` when the box
/// holds fewer than three characters.
fn fit_label(name: &str, width: f64, font: f64) -> Option<String> {
    let room = (width - 2.0 * TEXT_PAD) / (font * CHAR_WIDTH_EM);
    // A NaN width (from a NaN option) gives no label either.
    if room.is_nan() || room < MIN_LABEL_CHARS as f64 {
        return None;
    }
    // `room` is finite and at least 3 here; the cast saturates regardless.
    let max_chars = room.floor() as usize;
    if name.chars().count() <= max_chars {
        return Some(name.to_string());
    }
    let kept = max_chars.saturating_sub(ELLIPSIS.len());
    let mut label: String = name.chars().take(kept).collect();
    label.push_str(ELLIPSIS);
    Some(label)
}

/// A warm (red to yellow) colour for a frame name, stable across runs,
/// builds and platforms.
fn frame_colour(name: &str) -> (u8, u8, u8) {
    let hash = name_hash(name);
    let red = 215 + (hash % 41) as u8; // 215..=255
    let green = 70 + ((hash >> 16) % 131) as u8; // 70..=200
    let blue = 10 + ((hash >> 32) % 51) as u8; // 10..=60
    (red, green, blue)
}

/// A 64-bit hash of `name`: FNV-1a over the UTF-8 bytes, then a
/// multiply-xorshift finalizer so that every bit depends on every byte.
fn name_hash(name: &str) -> u64 {
    const FNV_OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const FNV_PRIME: u64 = 0x0000_0100_0000_01b3;
    let mut hash = FNV_OFFSET;
    for &byte in name.as_bytes() {
        hash ^= u64::from(byte);
        hash = hash.wrapping_mul(FNV_PRIME);
    }
    hash ^= hash >> 31;
    hash = hash.wrapping_mul(0x7fb5_d329_728e_a185);
    hash ^= hash >> 27;
    hash = hash.wrapping_mul(0x81da_def4_bc2d_d44d);
    hash ^ (hash >> 33)
}

/// `text` with the five XML special characters escaped and characters that
/// XML 1.0 does not allow (most C0 controls, U+FFFE, U+FFFF) replaced by
/// U+FFFD.
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
            c if c < ' ' || c == '\u{fffe}' || c == '\u{ffff}' => out.push('\u{fffd}'),
            c => out.push(c),
        }
    }
    out
}

/// A coordinate with two decimals.
fn num(value: f64) -> String {
    format!("{value:.2}")
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

    /// Checks XML well-formedness as far as this module's output needs:
    /// declarations, doctype and comments skipped; tags balanced with one
    /// root element; attributes quoted, unique and free of `<`; every `&` in
    /// text and attribute values starting a known or numeric entity; no
    /// text outside the root element.
    fn check_well_formed(doc: &str) -> Result<(), String> {
        let mut open: Vec<&str> = Vec::new();
        let mut roots = 0;
        let mut rest = doc;
        while !rest.is_empty() {
            if let Some(after) = rest.strip_prefix("<?") {
                let end = after.find("?>").ok_or("unterminated <?")?;
                if roots > 0 {
                    return Err("processing instruction after the root".into());
                }
                rest = &after[end + 2..];
            } else if let Some(after) = rest.strip_prefix("<!--") {
                let end = after.find("-->").ok_or("unterminated comment")?;
                rest = &after[end + 3..];
            } else if let Some(after) = rest.strip_prefix("<!") {
                let end = after.find('>').ok_or("unterminated <!")?;
                if roots > 0 {
                    return Err("doctype after the root".into());
                }
                rest = &after[end + 1..];
            } else if let Some(after) = rest.strip_prefix("</") {
                let end = after.find('>').ok_or("unterminated end tag")?;
                let name = after[..end].trim_end();
                match open.pop() {
                    Some(top) if top == name => {}
                    other => return Err(format!("</{name}> closes {other:?}")),
                }
                rest = &after[end + 1..];
            } else if let Some(after) = rest.strip_prefix('<') {
                let name_end = after
                    .find(|c: char| c.is_whitespace() || c == '/' || c == '>')
                    .ok_or("unterminated start tag")?;
                let name = &after[..name_end];
                if name.is_empty()
                    || !name
                        .chars()
                        .all(|c| c.is_ascii_alphanumeric() || "-_:.".contains(c))
                {
                    return Err(format!("bad element name {name:?}"));
                }
                if open.is_empty() {
                    roots += 1;
                    if roots > 1 {
                        return Err("more than one root element".into());
                    }
                }
                let mut attrs = &after[name_end..];
                let mut seen: Vec<&str> = Vec::new();
                loop {
                    attrs = attrs.trim_start();
                    if let Some(tail) = attrs.strip_prefix("/>") {
                        rest = tail;
                        break;
                    }
                    if let Some(tail) = attrs.strip_prefix('>') {
                        open.push(name);
                        rest = tail;
                        break;
                    }
                    let eq = attrs.find('=').ok_or("attribute without =")?;
                    let attr = attrs[..eq].trim_end();
                    if attr.is_empty() || attr.contains(|c: char| "<>\"'/".contains(c)) {
                        return Err(format!("bad attribute name {attr:?}"));
                    }
                    if seen.contains(&attr) {
                        return Err(format!("duplicate attribute {attr}"));
                    }
                    seen.push(attr);
                    let value_part = attrs[eq + 1..].trim_start();
                    let quote = value_part.chars().next().ok_or("missing value")?;
                    if quote != '"' && quote != '\'' {
                        return Err(format!("unquoted value of {attr}"));
                    }
                    let body = &value_part[1..];
                    let close = body.find(quote).ok_or("unterminated value")?;
                    let value = &body[..close];
                    if value.contains('<') {
                        return Err(format!("< in value of {attr}"));
                    }
                    check_entities(value)?;
                    attrs = &body[close + 1..];
                }
            } else {
                let end = rest.find('<').unwrap_or(rest.len());
                let text = &rest[..end];
                if open.is_empty() && !text.trim().is_empty() {
                    return Err(format!("text outside the root: {text:?}"));
                }
                check_entities(text)?;
                rest = &rest[end..];
            }
        }
        if !open.is_empty() {
            return Err(format!("unclosed elements {open:?}"));
        }
        if roots != 1 {
            return Err("no root element".into());
        }
        Ok(())
    }

    /// Every `&` in `text` must start an entity reference.
    fn check_entities(text: &str) -> Result<(), String> {
        for (at, _) in text.match_indices('&') {
            let tail = &text[at + 1..];
            let end = tail.find(';').ok_or("& without ;")?;
            let entity = &tail[..end];
            let ok = match entity {
                "amp" | "lt" | "gt" | "quot" | "apos" => true,
                _ => match entity.strip_prefix("#x") {
                    Some(hex) => !hex.is_empty() && hex.chars().all(|c| c.is_ascii_hexdigit()),
                    None => entity.strip_prefix('#').is_some_and(is_decimal),
                },
            };
            if !ok {
                return Err(format!("bad entity &{entity};"));
            }
        }
        Ok(())
    }

    /// A drawn frame as read back from the SVG.
    #[derive(Debug)]
    struct Drawn {
        tooltip: String,
        label: Option<String>,
        x: f64,
        y: f64,
        width: f64,
    }

    fn attr(tag: &str, name: &str) -> f64 {
        let key = format!(" {name}=\"");
        let start = tag.find(&key).expect("attribute present") + key.len();
        let len = tag[start..].find('"').expect("closing quote");
        tag[start..start + len].parse().expect("numeric attribute")
    }

    fn between<'a>(text: &'a str, open: &str, close: &str) -> Option<&'a str> {
        let start = text.find(open)? + open.len();
        let len = text[start..].find(close)?;
        Some(&text[start..start + len])
    }

    /// The frame groups of a rendered graph, in document order.
    fn drawn(svg: &str) -> Vec<Drawn> {
        svg.split("<g class=\"frame\">")
            .skip(1)
            .map(|group| {
                let group = &group[..group.find("</g>").expect("group closed")];
                let rect = between(group, "<rect", "/>").expect("rect in group");
                Drawn {
                    tooltip: between(group, "<title>", "</title>")
                        .expect("tooltip")
                        .to_string(),
                    label: between(group, "\">", "</text>").map(str::to_string),
                    x: attr(rect, "x"),
                    y: attr(rect, "y"),
                    width: attr(rect, "width"),
                }
            })
            .collect()
    }

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
    fn xml_checker_rejects_malformed_documents() {
        assert!(check_well_formed("<a><b/><c x=\"1\">t &amp; &#38; &#x26;</c></a>").is_ok());
        for bad in [
            "<a><b></a></b>",
            "<a>",
            "<a></a><b></b>",
            "<a>fish & chips</a>",
            "<a>&bogus;</a>",
            "<a x=\"<\"/>",
            "<a x=1/>",
            "<a x=\"1\" x=\"2\"/>",
            "text<a/>",
            "",
        ] {
            assert!(check_well_formed(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn svg_is_well_formed() {
        let opts = FlameOptions {
            title: "hyperprof \"cycles\" & friends".to_string(),
            ..FlameOptions::default()
        };
        let svg = render_svg(&sample(), &opts);
        check_well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert!(svg.starts_with("<?xml version=\"1.0\""));
        assert!(svg.contains("<svg version=\"1.1\" xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains("viewBox=\"0 0 1200 "));
        assert!(svg.contains("<title>hyperprof &quot;cycles&quot; &amp; friends</title>"));
        // all, main, parse, lex, eval, add, mul, idle
        assert_eq!(drawn(&svg).len(), 8);
    }

    #[test]
    fn frames_are_laid_out_as_a_flame_graph() {
        let svg = render_svg(&sample(), &FlameOptions::default());
        let frames = drawn(&svg);
        let find = |name: &str| {
            frames
                .iter()
                .find(|f| f.tooltip.starts_with(&format!("{name} (")))
                .unwrap_or_else(|| panic!("{name} drawn"))
        };
        let (all, main, idle) = (find("all"), find("main"), find("idle"));
        let (eval, parse, lex) = (find("eval"), find("parse"), find("lex"));
        assert_eq!(all.tooltip, "all (26 samples, 100.00%)");
        assert_eq!(main.tooltip, "main (13 samples, 50.00%)");
        assert_eq!(parse.tooltip, "parse (9 samples, 34.62%)");
        // The root at the bottom, callees one row above their callers.
        assert!(all.y > main.y);
        assert_eq!(all.y - main.y, 16.0);
        assert_eq!(main.y - parse.y, 16.0);
        assert_eq!(parse.y - lex.y, 16.0);
        assert_eq!(all.width, 1180.0);
        // Siblings in byte order of their names, left to right.
        assert!(idle.x < main.x);
        assert!(eval.x < parse.x);
        assert!((main.x - (idle.x + idle.width)).abs() < 0.01);
        assert!((lex.width / parse.width - 7.0 / 9.0).abs() < 1e-3);
        assert_eq!(main.label.as_deref(), Some("main"));
        let fill = |name: &str| {
            let start = svg.find(&format!("<title>{name} (")).expect("group");
            between(&svg[start..], "fill=\"", "\"")
                .expect("fill")
                .to_string()
        };
        let (r, g, b) = frame_colour("main");
        assert_eq!(fill("main"), format!("rgb({r},{g},{b})"));
        assert_ne!(fill("main"), fill("parse"));
    }

    #[test]
    fn root_level_widths_sum_to_plot_width() {
        let mut stacks = FoldedStacks::new();
        for (i, count) in [1u64, 2, 3, 7, 11, 13, 17].into_iter().enumerate() {
            let name = format!("root{i}");
            stacks.add(&[&name, "leaf"], count);
        }
        let svg = render_svg(&stacks, &FlameOptions::default());
        let frames = drawn(&svg);
        let bottom = frames.iter().map(|f| f.y).fold(f64::MIN, f64::max);
        let level1: Vec<&Drawn> = frames.iter().filter(|f| f.y == bottom - 16.0).collect();
        assert_eq!(level1.len(), 7);
        let sum: f64 = level1.iter().map(|f| f.width).sum();
        assert!((sum - 1180.0).abs() <= 0.005 * 7.0, "sum {sum}");
        // Contiguous from the left margin to the right margin.
        let mut edge = X_PAD;
        for frame in &level1 {
            assert!((frame.x - edge).abs() <= 0.01, "{frame:?} at {edge}");
            edge = frame.x + frame.width;
        }
        assert!((edge - (1200.0 - X_PAD)).abs() <= 0.05);
    }

    #[test]
    fn narrow_frames_are_merged_into_their_caller() {
        let mut stacks = FoldedStacks::new();
        stacks.add(&["main", "big"], 1000);
        stacks.add(&["main", "tiny"], 1);
        stacks.add(&["main", "tiny", "deeper"], 1);
        let opts = FlameOptions {
            min_width_px: 5.0,
            ..FlameOptions::default()
        };
        let svg = render_svg(&stacks, &opts);
        check_well_formed(&svg).expect("well-formed");
        assert!(!svg.contains("tiny"));
        assert!(!svg.contains("deeper"));
        let frames = drawn(&svg);
        assert_eq!(frames.len(), 3);
        assert!(frames
            .iter()
            .any(|f| f.tooltip == "main (1002 samples, 100.00%)"));
        // With the default threshold the tiny frame (about 2.4 px) is drawn,
        // but too narrow for a label.
        let svg = render_svg(&stacks, &FlameOptions::default());
        let frames = drawn(&svg);
        assert_eq!(frames.len(), 5);
        let tiny = frames
            .iter()
            .find(|f| f.tooltip.starts_with("tiny ("))
            .expect("tiny drawn");
        assert!(tiny.width < 3.0);
        assert_eq!(tiny.label, None);
    }

    #[test]
    fn labels_are_truncated_to_fit() {
        assert_eq!(fit_label("main", 100.0, 12.0).as_deref(), Some("main"));
        // 50 px less padding holds 6 characters of 7.2 px.
        assert_eq!(
            fit_label("parse_expression", 50.0, 12.0).as_deref(),
            Some("pars..")
        );
        assert_eq!(fit_label("äöüßéè€", 50.0, 12.0).as_deref(), Some("äöüß.."));
        assert_eq!(fit_label("ab", 27.6, 12.0).as_deref(), Some("ab"));
        assert_eq!(fit_label("abcdef", 27.6, 12.0).as_deref(), Some("a.."));
        assert_eq!(fit_label("abc", 27.0, 12.0), None);
        assert_eq!(fit_label("abc", f64::NAN, 12.0), None);
    }

    #[test]
    fn script_like_names_are_escaped() {
        let mut stacks = FoldedStacks::new();
        stacks.add(&["main", "<script>alert('x&y')</script>", "\"q\">"], 4);
        let opts = FlameOptions {
            title: "<script>evil()</script>".to_string(),
            ..FlameOptions::default()
        };
        let svg = render_svg(&stacks, &opts);
        check_well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert!(!svg.contains("<script"));
        assert!(!svg.contains("'x"));
        assert!(svg.contains(
            "<title>&lt;script&gt;alert(&apos;x&amp;y&apos;)&lt;/script&gt; (4 samples, 100.00%)</title>"
        ));
        assert!(svg.contains("<title>&lt;script&gt;evil()&lt;/script&gt;</title>"));
        assert!(svg.contains("&quot;q&quot;&gt;"));
        assert_eq!(escape_xml("a\u{0}b\u{ffff}\t"), "a\u{fffd}b\u{fffd}\t");
    }

    #[test]
    fn rendering_is_deterministic() {
        let build = || {
            let mut stacks = FoldedStacks::new();
            stacks.add(&["z", "y"], 5);
            stacks.add(&["a", "b", "c"], 3);
            stacks.add(&["z"], 2);
            stacks
        };
        let opts = FlameOptions::default();
        let first = render_svg(&build(), &opts);
        let second = render_svg(&build(), &opts);
        assert_eq!(first, second);
        // Insertion order does not matter either.
        let mut reordered = FoldedStacks::new();
        reordered.add(&["z"], 2);
        reordered.add(&["a", "b", "c"], 3);
        reordered.add(&["z", "y"], 5);
        assert_eq!(render_svg(&reordered, &opts), first);
        // Colours come from a fixed hash: pinned values, warm ranges.
        assert_eq!(name_hash(""), name_hash(""));
        assert_ne!(name_hash("main"), name_hash("mainx"));
        for name in ["main", "parse", "", "[unknown]", "äöü"] {
            let (r, g, b) = frame_colour(name);
            assert!(r >= 215 && (70..=200).contains(&g) && (10..=60).contains(&b));
            assert!(r > g && g > b, "{name}: {r},{g},{b} is not warm");
        }
    }

    #[test]
    fn empty_input_says_no_samples() {
        let svg = render_svg(&FoldedStacks::new(), &FlameOptions::default());
        check_well_formed(&svg).unwrap_or_else(|e| panic!("{e}\n{svg}"));
        assert!(svg.contains(">no samples</text>"));
        assert!(svg.contains("viewBox=\"0 0 1200 "));
        assert!(drawn(&svg).is_empty());
        let parsed = FoldedStacks::from_folded_text("\n  \n").expect("blank text");
        assert!(parsed.is_empty());
        assert_eq!(render_svg(&parsed, &FlameOptions::default()), svg);
    }

    #[test]
    fn odd_options_and_deep_stacks_do_not_panic() {
        let deep: Vec<String> = (0..20_000).map(|i| format!("f{i}")).collect();
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
            check_well_formed(&svg).unwrap_or_else(|e| panic!("{opts:?}: {e}"));
            assert!(!drawn(&svg).is_empty(), "the all frame is always drawn");
        }
        let mut huge = FoldedStacks::new();
        huge.add(&["a"], u64::MAX);
        huge.add(&["b"], u64::MAX);
        let svg = render_svg(&huge, &FlameOptions::default());
        check_well_formed(&svg).expect("well-formed");
        assert!(svg.contains("all (36893488147419103230 samples, 100.00%)"));
    }
}
