//! The rules a tree entry's name and a `.gitmodules` blob must meet: git's own fsck rules
//! for what a checkout would write (`.git` in every spelling a file system folds to it,
//! `.`, `..`, separators; submodule names, urls, paths and update commands), kept as a
//! hand copy behind git's `index-pack --strict` for packs the store did not index itself
//! (a push area's), and tested against git's verdict on the same objects.

/// Refuses names git would refuse to check out (or that would write outside the working
/// tree, or into `.git`, on some filesystem).
pub fn check_entry_name(name: &[u8]) -> Result<(), String> {
    let shown = || format!("{:?}", String::from_utf8_lossy(name));
    if name.is_empty() {
        return Err("an entry with an empty name".into());
    }
    if name == b"." || name == b".." {
        return Err(format!("an entry named {}", shown()));
    }
    if name.contains(&b'/') || name.contains(&0) {
        return Err(format!("an entry name with a path separator: {}", shown()));
    }
    if names_dotgit(name, b"git") {
        return Err(format!("an entry named {} (git's own directory)", shown()));
    }
    Ok(())
}

/// Whether `name`, or any part of it after a backslash (a directory separator on
/// Windows), is `.<what>` as some file system sees it: git's fsck looks at both.
pub(super) fn names_dotgit(name: &[u8], what: &[u8]) -> bool {
    is_dotgit_name(name, what)
        || (name.contains(&b'\\')
            && name
                .split(|b| *b == b'\\')
                .skip(1)
                .any(|part| is_dotgit_name(part, what)))
}

/// Whether `name` is `.<what>` as some filesystem sees it: any case, with trailing dots or
/// spaces or an alternate data stream (`.git::$INDEX_ALLOCATION`, NTFS), with characters
/// HFS+ ignores, or as NTFS's 8.3 short name (`git~1` for `.git`).
fn is_dotgit_name(name: &[u8], what: &[u8]) -> bool {
    // A plain ASCII name has nothing to fold away but trailing dots and spaces and case:
    // it can only be `.<what>` if it starts with a dot, or the short name if it holds a
    // tilde. Most names are neither, and need no allocation.
    if name.is_ascii() && name.first() != Some(&b'.') && !name.contains(&b'~') {
        return false;
    }
    let Ok(text) = std::str::from_utf8(name) else {
        return false;
    };
    // NTFS reads what follows a colon as a stream of the file before it.
    let text = text.split(':').next().unwrap_or_default();
    let folded: String = text
        .chars()
        .filter(|c| !is_hfs_ignorable(*c))
        .collect::<String>()
        .trim_end_matches(['.', ' '])
        .to_ascii_lowercase();
    let what = std::str::from_utf8(what).unwrap_or_default();
    let short = format!("{}~1", &what[..what.len().min(6)]);
    folded.strip_prefix('.') == Some(what) || folded == short
}

/// Code points HFS+ drops when it compares names (so `.g\u{200c}it` is `.git` there).
fn is_hfs_ignorable(c: char) -> bool {
    matches!(
        c,
        '\u{200c}'..='\u{200f}' | '\u{202a}'..='\u{202e}' | '\u{206a}'..='\u{206f}' | '\u{feff}'
    )
}

/// Refuses a `.gitmodules` that would make `git submodule` run an option or a command, or
/// leave the repository: a name with `..`, a url or path starting with `-`, an `update`
/// that runs a command. Read as git reads config: section and key names in any case,
/// quoted values, and a value continued onto the next line by a trailing backslash.
pub fn check_gitmodules(content: &[u8]) -> Result<(), String> {
    let text = String::from_utf8_lossy(content);
    // Continuation lines joined first: `url = \` then `-oProxyCommand=...` is one value.
    let joined = text.replace("\\\r\n", "").replace("\\\n", "");
    let mut in_submodule = false;
    for line in joined.lines() {
        let line = line.trim();
        if let Some(header) = line.strip_prefix('[') {
            let header = header.split(']').next().unwrap_or_default().trim();
            let (section, name) = match header.split_once(|c: char| c.is_whitespace() || c == '.') {
                Some((section, name)) => (section, name.trim().trim_matches('"')),
                None => (header, ""),
            };
            in_submodule = section.eq_ignore_ascii_case("submodule");
            if in_submodule && name.split(['/', '\\']).any(|part| part == "..") {
                return Err(format!(".gitmodules names a submodule {name:?}"));
            }
            continue;
        }
        if !in_submodule {
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim().trim_matches('"').trim_start();
        let refused = match key.as_str() {
            "url" | "path" => value.starts_with('-'),
            "update" => value.starts_with('!'),
            _ => false,
        };
        if refused {
            return Err(format!(".gitmodules sets {key} to {value:?}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use guts_crafted::Crafted;

    /// A blob entry's file mode.
    const MODE_BLOB: i32 = 0o100644;

    #[test]
    fn names_git_refuses_are_refused() {
        for bad in [
            &b""[..],
            b".",
            b"..",
            b"a/b",
            b".git",
            b".GIT",
            b".Git.",
            b".git ",
            b"git~1",
            b"GIT~1",
            b".git...",
            ".g\u{200c}it".as_bytes(),
        ] {
            assert!(check_entry_name(bad).is_err(), "{bad:?} passed");
        }
        for good in [
            &b"git"[..],
            b".gitignore",
            b".github",
            b"src",
            b"...",
            b"git~2",
            b"GIT",
            b" .git",
            b"a.git",
        ] {
            assert_eq!(check_entry_name(good), Ok(()), "{good:?}");
        }
    }

    /// git's verdict on a tree holding one entry named `name` (and `.gitmodules`
    /// holding `modules`, if any), with the severities the store gives index-pack.
    fn git_refuses(name: &[u8], modules: Option<&[u8]>) -> bool {
        let mut crafted = Crafted::new();
        let blob = crafted.blob(modules.unwrap_or(b"x\n"));
        let root = crafted.tree(&[(name, MODE_BLOB, blob)]);
        crafted.commit(root);
        let strict = guts_git::INDEX_PACK_STRICT.trim_start_matches("--strict=");
        let mut command = guts_git::in_dir(crafted.repo.path());
        for setting in strict.split(',') {
            let (id, severity) = setting.split_once('=').unwrap();
            command.arg("-c").arg(format!("fsck.{id}={severity}"));
        }
        let out = command
            .args(["fsck", "--strict", "--no-dangling"])
            .output()
            .unwrap();
        !out.status.success()
    }

    #[test]
    fn the_hand_check_agrees_with_git_fsck() {
        let names: [&[u8]; 22] = [
            b".git",
            b".GIT",
            b".Git.",
            b".git ",
            b"git~1",
            b".git...",
            b".git::$INDEX_ALLOCATION",
            b".git:stream",
            b"GIT~1:x",
            b"a\\.git",
            b"a\\.GIT.\\b",
            b"x\\git~1",
            b"..",
            b"git",
            b".gitignore",
            b".github",
            b"a.git",
            b"git~2",
            b"a\\b",
            b"src",
            b".gi:t",
            b"...",
        ];
        for name in names {
            assert_eq!(
                check_entry_name(name).is_err(),
                git_refuses(name, None),
                "{:?}: the store and git disagree",
                String::from_utf8_lossy(name)
            );
        }
        let modules: [&[u8]; 8] = [
            b"[submodule \"x\"]\n\tpath = x\n\turl = https://example.invalid/x\n",
            b"[submodule \"x\"]\n\tpath = x\n\turl = --upload-pack=evil\n",
            b"[SUBMODULE \"x\"]\n\tpath = x\n\tURL = -oProxyCommand=evil\n",
            b"[Submodule \"../../hooks\"]\n\tpath = x\n\turl = ../x\n",
            b"[submodule \"x\"]\n\tpath = x\n\turl = \\\n-oProxyCommand=evil\n",
            b"[submodule \"x\"]\n\tpath = -x\n\turl = ../x\n",
            b"[submodule \"x\"]\n\tpath = x\n\turl = ../x\n\tupdate = !sh evil\n",
            b"[core]\n\tbare = false\n",
        ];
        for content in modules {
            assert_eq!(
                check_gitmodules(content).is_err(),
                git_refuses(b".gitmodules", Some(content)),
                "{:?}: the store and git disagree",
                String::from_utf8_lossy(content)
            );
        }
        // .gitmodules reached through a backslash or as a short name is checked too.
        assert!(names_dotgit(b"a\\.gitmodules", b"gitmodules"));
        assert!(git_refuses(
            b"a\\.gitmodules",
            Some(b"[submodule \"x\"]\n\turl = -x\n")
        ));
    }

    #[test]
    fn gitmodules_option_injection_is_refused() {
        let ok = b"[submodule \"lib\"]\n\tpath = lib\n\turl = https://example.invalid/lib\n";
        assert_eq!(check_gitmodules(ok), Ok(()));
        let url = b"[submodule \"x\"]\n\tpath = x\n\turl = --upload-pack=touch /tmp/pwned\n";
        assert!(check_gitmodules(url).is_err());
        let path = b"[submodule \"x\"]\n\tpath = -x\n\turl = ../x\n";
        assert!(check_gitmodules(path).is_err());
        let name = b"[submodule \"../../hooks\"]\n\tpath = a\n\turl = ../x\n";
        assert!(check_gitmodules(name).is_err());
        assert!(is_dotgit_name(b".GITMODULES", b"gitmodules"));
        assert!(is_dotgit_name(b"gitmod~1", b"gitmodules"));
    }
}
