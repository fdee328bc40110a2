//! Every git the Guts node or `git-remote-guts` runs, it runs through [`command`]: with
//! nothing from the system's or the user's git config, and with the settings below put
//! above whatever the repository's own config says (an imported directory's config is
//! its owner's, not the node's). So no repository makes the node's git run a command of
//! its choosing (hooks, an fsmonitor, a lazy fetch's `remote.*.uploadpack`), reach the
//! network, or read objects through replace refs.
//!
//! Needs git 2.31 or later (`GIT_CONFIG_COUNT`); lazy fetches are off on any version,
//! as no transport is allowed.

use std::ffi::OsStr;
use std::process::Command;

/// The git program (`GUTS_GIT` names another).
pub fn program() -> std::ffi::OsString {
    std::env::var_os("GUTS_GIT").unwrap_or_else(|| "git".into())
}

/// Settings given to every git the node runs, above the repository's own config (git's
/// command-line scope outranks a repository's).
pub const SETTINGS: &[(&str, &str)] = &[
    // No hooks, whatever a repository's config points at.
    ("core.hooksPath", "/dev/null"),
    ("core.fsmonitor", "false"),
    // Used by upload-pack for alternates: a command.
    ("core.alternateRefsCommand", ""),
    // No transport at all: a partial clone's lazy fetch, or a submodule, would run one.
    ("protocol.allow", "never"),
    ("credential.helper", ""),
    ("core.askPass", "/bin/false"),
    // No background work in someone else's repository.
    ("gc.auto", "0"),
    ("maintenance.auto", "false"),
];

/// Variables removed from what git inherits: they would point it at other object
/// stores, config or programs than the ones the node means.
const REMOVED: &[&str] = &[
    "GIT_DIR",
    "GIT_WORK_TREE",
    "GIT_INDEX_FILE",
    "GIT_OBJECT_DIRECTORY",
    "GIT_ALTERNATE_OBJECT_DIRECTORIES",
    "GIT_COMMON_DIR",
    "GIT_NAMESPACE",
    "GIT_SHALLOW_FILE",
    "GIT_GRAFT_FILE",
    "GIT_REPLACE_REF_BASE",
    "GIT_CONFIG",
    "GIT_CONFIG_PARAMETERS",
    "GIT_CONFIG_SYSTEM",
    "GIT_EXEC_PATH",
    "GIT_SSH",
    "GIT_SSH_COMMAND",
    "GIT_PROXY_COMMAND",
    "GIT_EXTERNAL_DIFF",
    "GIT_ASKPASS",
    "GIT_TEMPLATE_DIR",
];

/// `git` with the fixed environment; the caller adds `--git-dir` (or `GIT_DIR`), the
/// subcommand and its arguments.
pub fn command() -> Command {
    let mut command = Command::new(program());
    apply(&mut command);
    command
}

/// Puts the fixed environment on a `Command` the caller made (one that `exec`s, say).
pub fn apply(command: &mut Command) {
    for var in REMOVED {
        command.env_remove(var);
    }
    command
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_NO_LAZY_FETCH", "1")
        .env("GIT_NO_REPLACE_OBJECTS", "1")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_ALLOW_PROTOCOL", "")
        .env("GIT_PROTOCOL_FROM_USER", "0")
        .env("GIT_CONFIG_COUNT", SETTINGS.len().to_string());
    for (i, (key, value)) in SETTINGS.iter().enumerate() {
        command
            .env(format!("GIT_CONFIG_KEY_{i}"), key)
            .env(format!("GIT_CONFIG_VALUE_{i}"), value);
    }
}

/// The `--strict` argument every `git index-pack` of objects from elsewhere gets: git's
/// own fsck of each object as it is indexed, with the checks git only warns about for
/// tree entries (`.`, `..`, `.git` in any spelling a file system folds to it, empty and
/// full-path names) raised to errors, as a checkout would refuse them; the
/// `.gitmodules` checks are errors already. Malformed author and date lines, which
/// harm no one and which real histories hold (git's fsck refuses them), are only
/// warned about, so such repositories still replicate.
pub const INDEX_PACK_STRICT: &str = "--strict=\
emptyName=error,fullPathname=error,hasDot=error,hasDotdot=error,hasDotgit=error,\
badDate=warn,badDateOverflow=warn,badEmail=warn,badName=warn,badTimezone=warn,\
missingEmail=warn,missingNameBeforeEmail=warn,missingSpaceBeforeDate=warn,\
missingSpaceBeforeEmail=warn,zeroPaddedDate=warn,zeroPaddedFilemode=warn";

/// Lets git fetch from a local path (`git fetch-pack <store>`), and nothing else.
pub fn allow_local_transport(command: &mut Command) {
    command.env("GIT_ALLOW_PROTOCOL", "file");
}

/// Lets git fetch over the network (http, https, git, ssh without prompting) and from a
/// local path or bundle: for an import the node's user asked for by URL, nothing else.
pub fn allow_import_transports(command: &mut Command) {
    command
        .env("GIT_ALLOW_PROTOCOL", "http:https:git:ssh:file")
        .env("GIT_SSH_COMMAND", "ssh -o BatchMode=yes");
}

/// `git --git-dir <dir>` with the fixed environment.
pub fn in_dir(git_dir: impl AsRef<OsStr>) -> Command {
    let mut command = command();
    command.arg("--git-dir").arg(git_dir);
    command
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(repo: &std::path::Path, key: &str) -> String {
        let out = in_dir(repo)
            .args(["config", "--get", key])
            .output()
            .expect("run git");
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    #[test]
    fn the_fixed_settings_outrank_the_repositorys_own() {
        let tmp = tempfile::tempdir().unwrap();
        let repo = tmp.path().join("r.git");
        let out = Command::new("git")
            .args(["init", "-q", "--bare"])
            .arg(&repo)
            .output()
            .unwrap();
        assert!(out.status.success());
        for (key, value) in [
            ("core.hooksPath", "/tmp/evil-hooks"),
            ("core.fsmonitor", "/tmp/evil-monitor"),
            ("protocol.allow", "always"),
        ] {
            let out = Command::new("git")
                .arg("--git-dir")
                .arg(&repo)
                .args(["config", key, value])
                .output()
                .unwrap();
            assert!(out.status.success());
        }
        assert_eq!(config(&repo, "core.hooksPath"), "/dev/null");
        assert_eq!(config(&repo, "core.fsmonitor"), "false");
        assert_eq!(config(&repo, "protocol.allow"), "never");
    }
}
