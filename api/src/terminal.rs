//! Text that came from peers (agent strings, addresses, error messages, names) is
//! escaped before it reaches a terminal, so a peer cannot move the cursor, rewrite
//! earlier lines, set the window title or reorder text with bidirectional controls.

use std::borrow::Cow;

/// `text` with control characters (C0, DEL, C1) and Unicode bidirectional controls
/// replaced by `\u{…}` escapes; borrowed when there is nothing to escape.
pub fn safe(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.extend(c.escape_unicode());
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// Like [`safe`], but newlines and tabs are kept (multi-line error messages).
pub fn safe_lines(text: &str) -> Cow<'_, str> {
    if !text
        .chars()
        .any(|c| c != '\n' && c != '\t' && needs_escape(c))
    {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.split('\n')
            .map(|l| safe(l))
            .collect::<Vec<_>>()
            .join("\n"),
    )
}

fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200e}' | '\u{200f}' | '\u{061c}')
        || ('\u{202a}'..='\u{202e}').contains(&c)
        || ('\u{2066}'..='\u{2069}').contains(&c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_and_bidi_characters_are_escaped() {
        assert!(matches!(safe("rust-libp2p/0.57"), Cow::Borrowed(_)));
        assert_eq!(safe("a\x1b[2Jb"), "a\\u{1b}[2Jb");
        assert_eq!(safe("x\u{9b}31m"), "x\\u{9b}31m");
        assert_eq!(safe("evil\u{202e}txt.exe"), "evil\\u{202e}txt.exe");
        assert_eq!(safe("line\nbreak\r"), "line\\u{a}break\\u{d}");
        assert_eq!(safe("\x7f"), "\\u{7f}");
        assert_eq!(safe("héllo ✓"), "héllo ✓");
        assert_eq!(safe_lines("one\ntwo\x07"), "one\ntwo\\u{7}");
    }
}
