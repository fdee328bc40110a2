//! docs/configuration.md's tables against the settings the node declares: every setting
//! has a row naming its flag, variable and key, with the default `Config::default` holds,
//! and no row names a setting that does not exist. The declarations are the source; this
//! keeps the page from drifting.

use std::collections::BTreeMap;
use std::path::Path;

use guts_node::Config;

/// A row's cells, keyed by the TOML key it names.
fn rows() -> BTreeMap<String, Vec<String>> {
    let page = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/configuration.md");
    let text = std::fs::read_to_string(&page).expect("docs/configuration.md");
    let mut rows = BTreeMap::new();
    for line in text.lines().filter(|l| l.starts_with("| `--")) {
        let cells: Vec<String> = line
            .trim_matches('|')
            .split(" | ")
            .map(|c| c.trim().to_owned())
            .collect();
        // "`GUTS_X` / `key`"; `--config` has no key.
        let Some(key) = cells[1].split(" / ").nth(1) else {
            continue;
        };
        rows.insert(key.trim_matches('`').to_owned(), cells);
    }
    rows
}

/// A default as the page writes it and as `--help` shows it, made comparable.
fn normalized(value: &str) -> String {
    let value = value.trim_matches('`');
    if let Ok(n) = value.parse::<f64>() {
        return n.to_string();
    }
    // Sizes end in B (4GiB, 4.0 GiB); "1m" is a minute.
    if value.ends_with('B')
        && let Ok(size) = value.replace(' ', "").parse::<bytesize::ByteSize>()
    {
        return size.as_u64().to_string();
    }
    if let Ok(d) = humantime::parse_duration(value) {
        return format!("{d:?}");
    }
    match value {
        "on" | "true" => "true".into(),
        "off" | "false" => "false".into(),
        other => other.to_owned(),
    }
}

#[test]
fn every_setting_has_its_row_with_its_default() {
    let cmd = Config::add_flags(clap::Command::new("node"));
    let mut rows = rows();
    for arg in cmd.get_arguments() {
        let key = arg.get_id().as_str();
        let cells = rows
            .remove(key)
            .unwrap_or_else(|| panic!("docs/configuration.md has no row for `{key}`"));
        let long = arg.get_long().expect("every setting is a long flag");
        assert!(
            cells[0].starts_with(&format!("`--{long}")),
            "{key}: the row's flag is {}, the setting's --{long}",
            cells[0]
        );
        let env = arg.get_env().expect("every setting reads a variable");
        assert!(
            cells[1].starts_with(&format!("`{}`", env.to_string_lossy())),
            "{key}: the row's variable is {}, the setting's {env:?}",
            cells[1]
        );
        // What `--help` shows, from `Config::default`.
        let help = arg.get_help().map(|h| h.to_string()).unwrap_or_default();
        let default = help
            .rsplit_once("[default: ")
            .map(|(_, d)| d.trim_end_matches(']'));
        let documented = cells[2].split_whitespace().next().unwrap_or("");
        match default {
            None => assert_eq!(cells[2], "none", "{key} has no default"),
            // Host-dependent: the home directory, whether the host has IPv6.
            Some(_) if key == "data_dir" || key == "listen" => {}
            Some(d) => assert_eq!(
                normalized(documented),
                normalized(d),
                "{key}: the page says {}, --help {d}",
                cells[2]
            ),
        }
    }
    assert!(
        rows.is_empty(),
        "docs/configuration.md has rows for settings that do not exist: {:?}",
        rows.keys()
    );
}
