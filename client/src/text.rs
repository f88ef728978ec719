//! Text written by peers, made safe to show in a terminal: control characters (escape sequences
//! among them) and the bidirectional overrides and isolates that could redraw the screen or
//! disguise what a message says are shown as visible `\u{..}` escapes. One function, so the
//! command line and the full-screen client can never disagree on what is escaped.

/// How line breaks in peer text are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breaks {
    /// As an indented continuation, so a message cannot fake a new line of output (tabs kept).
    Indent,
    /// As a space: one line of a full-screen layout (tabs too).
    Space,
}

/// `text` with every character that could act on the terminal made visible.
pub fn visible(text: &str, breaks: Breaks) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match (c, breaks) {
            ('\n', Breaks::Indent) => out.push_str("\n        "),
            ('\t', Breaks::Indent) => out.push('\t'),
            ('\n' | '\t', Breaks::Space) => out.push(' '),
            (c, _)
                if c.is_control()
                    || ('\u{2028}'..='\u{202e}').contains(&c)
                    || ('\u{2066}'..='\u{2069}').contains(&c) =>
            {
                out.push_str(&format!("\\u{{{:x}}}", u32::from(c)));
            }
            (c, _) => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_controls_overrides_and_isolates_in_both_layouts() {
        let hostile = "ok\u{1b}[2J\u{202e}gnp.exe\u{2066}x\u{2069}";
        for breaks in [Breaks::Indent, Breaks::Space] {
            let shown = visible(hostile, breaks);
            assert_eq!(shown, "ok\\u{1b}[2J\\u{202e}gnp.exe\\u{2066}x\\u{2069}");
        }
        assert_eq!(visible("a\nb\tc", Breaks::Indent), "a\n        b\tc");
        assert_eq!(visible("a\nb\tc", Breaks::Space), "a b c");
    }
}
