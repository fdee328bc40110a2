//! What a command printed against what the page says: normalising terminal output,
//! `<name>` placeholders and snapbox matching.

use std::collections::BTreeMap;
use std::sync::LazyLock;

use regex::Regex;
use snapbox::{Assert, Data, Redactions, assert::Action, report::Palette};

/// Placeholder values by name.
pub type Bindings = BTreeMap<String, String>;

static PLACEHOLDER: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"<([a-z][a-z0-9-]*)>").expect("constant regex"));

/// An expected line's pieces: snapbox's `[..]` and placeholders.
static PIECE: LazyLock<Regex> =
    LazyLock::new(|| Regex::new(r"\[\.\.\]|<([a-z][a-z0-9-]*)>").expect("constant regex"));

/// Whether `name` can be written as a placeholder.
pub fn valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_lowercase())
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// What a terminal shows of `raw` output: no ANSI escapes, only the text after the last
/// `\r` of a line (progress updates), no trailing whitespace, no trailing empty lines.
pub fn normalize(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    let plain = anstream::adapter::strip_str(&text).to_string();
    let mut lines: Vec<&str> = plain
        .split('\n')
        .map(|line| {
            let line = line.strip_suffix('\r').unwrap_or(line);
            line.rsplit('\r').next().unwrap_or(line).trim_end()
        })
        .collect();
    while lines.last().is_some_and(|l| l.is_empty()) {
        lines.pop();
    }
    lines.join("\n")
}

/// `command` with each `<name>` replaced by its value; `Err(name)` for the first unbound one.
pub fn substitute(command: &str, bindings: &Bindings) -> Result<String, String> {
    if let Some(unbound) = PLACEHOLDER
        .captures_iter(command)
        .map(|c| c[1].to_string())
        .find(|name| !bindings.contains_key(name))
    {
        return Err(unbound);
    }
    Ok(PLACEHOLDER
        .replace_all(command, |c: &regex::Captures| {
            bindings.get(&c[1]).cloned().unwrap_or_default()
        })
        .into_owned())
}

/// Why output does not match: snapbox's diff, and which placeholder line matched nothing.
#[derive(Debug)]
pub struct Mismatch {
    pub diff: String,
    pub unmatched: Option<String>,
}

/// Checks `actual` (normalised) against `expected`; with `prefix`, `actual` may go on after
/// it. Returns the placeholders it binds.
///
/// Each expected line with an unbound placeholder is first matched, as a regex, against the
/// first actual line after the previous such match, binding the captures; then every bound
/// value is written into `expected` and snapbox compares the whole.
pub fn check(
    expected: &str,
    actual: &str,
    bindings: &Bindings,
    prefix: bool,
) -> Result<Bindings, Mismatch> {
    let mut new = Bindings::new();
    let mut unmatched = None;
    let actual_lines: Vec<&str> = actual.lines().collect();
    let mut from = 0;
    for line in expected.lines() {
        let known = |name: &str| bindings.contains_key(name) || new.contains_key(name);
        if PLACEHOLDER.captures_iter(line).all(|c| known(&c[1])) {
            continue;
        }
        let (regex, names) = line_regex(line, bindings, &new);
        let found = actual_lines[from.min(actual_lines.len())..]
            .iter()
            .enumerate()
            .find_map(|(i, actual)| Some((i, captures(&regex, &names, actual)?)));
        match found {
            Some((i, captured)) => {
                new.extend(captured);
                from += i + 1;
            }
            None => {
                unmatched = Some(line.to_string());
                break;
            }
        }
    }
    let all: Bindings = bindings
        .iter()
        .chain(&new)
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let resolved = PLACEHOLDER.replace_all(expected, |c: &regex::Captures| {
        all.get(&c[1]).cloned().unwrap_or_else(|| c[0].to_string())
    });
    let pattern = match (prefix, resolved.is_empty()) {
        (false, _) => resolved.into_owned(),
        (true, true) => "...".to_string(),
        (true, false) => format!("{resolved}\n..."),
    };
    match (snapbox_eq(&pattern, actual), unmatched) {
        (Ok(()), None) => Ok(new),
        (Ok(()), unmatched) => Err(Mismatch {
            diff: String::new(),
            unmatched,
        }),
        (Err(diff), unmatched) => Err(Mismatch { diff, unmatched }),
    }
}

/// The regex of an expected line: literal text, `[..]` as `.*?`, bound placeholders as
/// their value, unbound ones as groups of non-whitespace; with the name of each group.
fn line_regex(line: &str, bindings: &Bindings, new: &Bindings) -> (Regex, Vec<String>) {
    let mut pattern = String::from("^");
    let mut names = Vec::new();
    let mut last = 0;
    for piece in PIECE.captures_iter(line) {
        let whole = piece.get(0).map_or(0..0, |m| m.range());
        pattern.push_str(&regex::escape(&line[last..whole.start]));
        last = whole.end;
        match piece.get(1).map(|m| m.as_str()) {
            None => pattern.push_str(".*?"),
            Some(name) => match bindings.get(name).or_else(|| new.get(name)) {
                Some(value) => pattern.push_str(&regex::escape(value)),
                None => {
                    pattern.push_str(r"(\S+)");
                    names.push(name.to_string());
                }
            },
        }
    }
    pattern.push_str(&regex::escape(&line[last..]));
    pattern.push('$');
    // Escaped text and fixed pieces: only a huge line can fail, and then matches nothing.
    let regex = Regex::new(&pattern).unwrap_or_else(|_| Regex::new(r"[^\s\S]").expect("constant"));
    (regex, names)
}

/// The placeholders `regex` captures in `actual`, if it matches and a name used twice in
/// the line got the same text both times.
fn captures(regex: &Regex, names: &[String], actual: &str) -> Option<Bindings> {
    let found = regex.captures(actual)?;
    let mut captured = Bindings::new();
    for (i, name) in names.iter().enumerate() {
        let value = found.get(i + 1)?.as_str();
        if captured
            .insert(name.clone(), value.to_string())
            .is_some_and(|v| v != value)
        {
            return None;
        }
    }
    Some(captured)
}

/// snapbox's comparison (`[..]`, `...`), without colours, path or `[EXE]` rewriting.
fn snapbox_eq(expected: &str, actual: &str) -> Result<(), String> {
    let with_newline = |s: &str| {
        if s.is_empty() {
            String::new()
        } else {
            format!("{s}\n")
        }
    };
    Assert::new()
        .action(Action::Verify)
        .palette(Palette::plain())
        .normalize_paths(false)
        .redact_with(Redactions::new())
        .try_eq(
            None,
            Data::text(with_newline(actual)),
            Data::text(with_newline(expected)),
        )
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes_terminal_output() {
        let raw = b"\x1b[1;32mok\x1b[0m  \r\n10%\r50%\r100%\n\n\n";
        assert_eq!(normalize(raw), "ok\n100%");
    }

    #[test]
    fn prefix_and_wildcards() {
        let none = Bindings::new();
        assert!(check("ready", "ready", &none, true).is_ok());
        assert!(check("ready", "ready\nmore\nlines", &none, true).is_ok());
        assert!(check("ready", "ready\nmore", &none, false).is_err());
        assert!(check("a[..]c\n...\nz", "abbc\nx\ny\nz", &none, false).is_ok());
        assert!(check("", "", &none, false).is_ok());
        assert!(check("", "x", &none, false).is_err());
    }

    #[test]
    fn captures_placeholders() {
        let mut bound = Bindings::new();
        let new = check(
            "...\nid: <the-id>\n...",
            "hello\nid: abc123\nbye",
            &bound,
            false,
        )
        .unwrap();
        assert_eq!(new["the-id"], "abc123");
        bound.extend(new);
        assert!(check("<the-id>", "abc123", &bound, false).is_ok());
        assert!(check("<the-id>", "abc124", &bound, false).is_err());
        let miss = check("id: <x>", "nothing", &bound, false).unwrap_err();
        assert_eq!(miss.unmatched.as_deref(), Some("id: <x>"));
        assert_eq!(
            substitute("echo <the-id> < f", &bound).unwrap(),
            "echo abc123 < f"
        );
        assert_eq!(substitute("echo <other>", &bound).unwrap_err(), "other");
    }
}
