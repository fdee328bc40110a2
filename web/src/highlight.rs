//! Syntax highlighting of a file page, by syntect (Sublime Text's syntaxes) into classes
//! the page's stylesheet colours. Only files small enough to highlight quickly are; the
//! rest are shown plain.

use std::sync::OnceLock;

use maud::{Markup, PreEscaped};
use syntect::html::{ClassStyle, ClassedHTMLGenerator};
use syntect::parsing::SyntaxSet;
use syntect::util::LinesWithEndings;

/// Largest file highlighted; a larger one is shown plain.
pub const MAX_HIGHLIGHTED: usize = 128 * 1024;

fn syntaxes() -> &'static SyntaxSet {
    static SET: OnceLock<SyntaxSet> = OnceLock::new();
    SET.get_or_init(SyntaxSet::load_defaults_newlines)
}

/// `text` of the file named `name` as highlighted HTML (escaped by syntect), or `None`
/// when no syntax fits, it is too large, or highlighting fails.
pub fn highlight(name: &str, text: &str) -> Option<Markup> {
    if text.len() > MAX_HIGHLIGHTED {
        return None;
    }
    let set = syntaxes();
    let extension = name.rsplit('.').next().unwrap_or(name);
    let syntax = set
        .find_syntax_by_extension(extension)
        .or_else(|| set.find_syntax_by_first_line(text.lines().next()?))?;
    if syntax.name == "Plain Text" {
        return None;
    }
    let mut generator = ClassedHTMLGenerator::new_with_class_style(
        syntax,
        set,
        ClassStyle::SpacedPrefixed { prefix: "s-" },
    );
    for line in LinesWithEndings::from(text) {
        generator
            .parse_html_for_line_which_includes_newline(line)
            .ok()?;
    }
    Some(PreEscaped(generator.finalize()))
}

/// The stylesheet for the classes [`highlight`] uses: a few scopes, quiet colours.
pub const STYLE: &str = ".s-comment{color:#6a737d}.s-string{color:#032f62}\
.s-constant{color:#005cc5}.s-keyword,.s-storage{color:#d73a49}\
.s-entity.s-name{color:#6f42c1}.s-support{color:#005cc5}.s-variable.s-parameter{color:#e36209}";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rust_is_highlighted_and_escaped_and_unknown_text_is_not() {
        let html = highlight("lib.rs", "// <b>\nfn main() { let s = \"</pre>\"; }\n")
            .unwrap()
            .into_string();
        assert!(
            html.contains("s-comment") && html.contains("s-keyword"),
            "{html}"
        );
        assert!(!html.contains("<b>") && !html.contains("</pre>"), "{html}");
        assert!(html.contains("&lt;b&gt;"));
        assert!(highlight("notes.unknownext", "just words").is_none());
        assert!(highlight("big.rs", &"x".repeat(MAX_HIGHLIGHTED + 1)).is_none());
    }
}
