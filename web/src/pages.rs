//! The pages, server-rendered with maud (every value escaped): no JavaScript, one small
//! stylesheet inline, readable on a phone. Links are stable paths:
//! `/`, `/<id>`, `/<id>/tree/<ref>/<path>`, `/<id>/blob/<ref>/<path>`, `/<id>/log/<ref>`,
//! `/<id>/commit/<commit>`.

use guts_api::{PeerReport, RepoDetail, RepoSummary, StatusReport};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};

use crate::browse::{At, CommitLine, CommitView, Entry, FileView, MAX_SHOWN, PAGE};

const STYLE: &str = "body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:70rem;\
padding:0 1rem;color:#222}a{color:#0645ad;text-decoration:none}a:hover{text-decoration:underline}\
header{border-bottom:1px solid #ddd;padding:.6rem 0;margin-bottom:1rem}\
header a{font-weight:600}table{border-collapse:collapse;width:100%}\
td,th{text-align:left;padding:.25rem .5rem;border-bottom:1px solid #eee;vertical-align:top}\
code,pre,.id{font:13px/1.4 ui-monospace,monospace}pre{background:#f6f8fa;padding:.75rem;\
overflow-x:auto}.id{overflow-wrap:anywhere}.msg{white-space:pre-wrap}.scroll{overflow-x:auto}.add{color:#116329}.del{color:#82071e}\
.hunk{color:#0550ae}.muted{color:#666}.crumbs a,.crumbs span{margin-right:.25rem}\
.comment,.revision{border-left:3px solid #ddd;padding-left:.75rem;margin:1rem 0}\
@media(max-width:40rem){td,th{padding:.2rem}.wide{display:none}}";

/// What a path segment of a link escapes: whatever would end it, start a query or
/// fragment, or not be a URL character (git allows `"<>#?%` and more in ref and file
/// names).
const SEGMENT: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'<')
    .add(b'>')
    .add(b'?')
    .add(b'`')
    .add(b'{')
    .add(b'}')
    .add(b'|')
    .add(b'\\')
    .add(b'^')
    .add(b'[')
    .add(b']');

/// `path` (ref or file names joined by `/`) as it goes in a link: each segment escaped.
pub(crate) fn url_path(path: &str) -> String {
    utf8_percent_encode(path, SEGMENT).to_string()
}

/// A whole page around `body`.
pub fn layout(title: &str, body: Markup) -> Markup {
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " · guts" }
                style { (PreEscaped(STYLE)) (PreEscaped(crate::highlight::STYLE)) }
            }
            body {
                header { a href="/" { "guts" } " " span.muted { "read-only view of this node" } }
                main { (body) }
            }
        }
    }
}

/// The "not found" page.
pub fn not_found(what: &str) -> Markup {
    layout("not found", html! { h1 { "Not found" } p { (what) } })
}

/// The node: who it is, how it is connected, what it holds.
pub fn node(status: &StatusReport, peers: &[PeerReport], repos: &[RepoSummary]) -> Markup {
    let body = html! {
        h1 { "Node " span.id { (short(&status.peer_id, 16)) } }
        div.scroll { table {
            tr { th { "peer id" } td.id { (status.peer_id) } }
            tr { th { "network" } td { (status.network) } }
            tr { th { "version" } td { (status.version) } }
            tr { th { "reachability" } td { (status.reachability) } }
            tr { th { "DHT" } td { (status.dht_mode) ", " (status.routing_table_size) " peers in the routing table" } }
            tr { th { "listening" } td.id { @for a in &status.listen_addresses { (a) br; } } }
            @if !status.external_addresses.is_empty() {
                tr { th { "external" } td.id { @for a in &status.external_addresses { (a) br; } } }
            }
            tr { th { "sync" } td {
                (status.transfers.fetched_packs) " packs fetched (" (status.transfers.fetched_objects)
                " objects), " (status.transfers.served_packs) " served"
            } }
            tr { th { "connections" } td {
                (status.connections.inbound) " in, " (status.connections.outbound) " out; "
                (status.connections.dials_failed) " dials failed"
            } }
        } }
        h2 { (peers.len()) " connected peers" }
        div.scroll { table {
            tr { th { "peer" } th { "how" } th.wide { "address" } th { "rtt" } th { "score" } }
            @for p in peers {
                tr {
                    td.id { (short(&p.peer_id, 20)) }
                    td { (format!("{:?}", p.direction).to_lowercase()) @if p.relayed { ", relayed" } @else { ", direct" } }
                    td.id.wide { (p.addresses.first().map(String::as_str).unwrap_or("")) }
                    td { @if let Some(ms) = p.last_ping_rtt_ms { (format!("{ms:.1} ms")) } }
                    td { (p.score) }
                }
            }
        } }
        h2 { (repos.len()) " repositories" }
        (repo_list(repos))
    };
    layout("node", body)
}

fn repo_list(repos: &[RepoSummary]) -> Markup {
    html! {
        div.scroll { table {
            tr { th { "name" } th { "id" } th { "refs" } }
            @for r in repos {
                tr {
                    td { a href={ "/" (r.id) } { (r.name.as_deref().unwrap_or("(not fetched yet)")) } }
                    td.id { (r.id) }
                    td { (r.ref_count) }
                }
            }
        } }
    }
}

/// A repository: how to clone it, who signs it, its branches and tags.
pub fn repository(
    detail: &RepoDetail,
    clone_url: &str,
    branches: &[(String, git2::Oid)],
    tags: &[(String, git2::Oid)],
    head: Option<&str>,
    collab: (usize, usize),
) -> Markup {
    let s = &detail.summary;
    let id = &s.id;
    let name = s.name.as_deref().unwrap_or(id);
    let body = html! {
        h1 { (name) }
        p.id { "guts://" (id) }
        pre { "git clone " (clone_url) }
        p {
            @if let Some(h) = head { a href={ "/" (id) "/tree/" (url_path(h)) } { "Browse " (h) } " · " a href={ "/" (id) "/log/" (url_path(h)) } { "history" } " · " }
            a href={ "/" (id) "/patches" } { (collab.0) " patches" } " · "
            a href={ "/" (id) "/issues" } { (collab.1) " issues" }
        }
        h2 { "Signed by" }
        @match &detail.maintainers {
            Some(m) => {
                p { (m.maintainers.len()) " maintainers; a branch moves when " (m.threshold)
                    " of them agree (identity version " (m.version) "). Each maintainer signs a view; the branches below are where the threshold of views agree, checked on this node." }
                div.scroll { table {
                    tr { th { "maintainer key" } th { "signed view" } }
                    @for k in &m.maintainers {
                        tr { td.id { (k.key) } td { @match k.view_sequence { Some(n) => { "sequence " (n) ", signature verified" }, None => { "none yet" } } } }
                    }
                } }
            }
            None => {
                p { "Its owner " span.id { (s.owner.as_deref().unwrap_or("?")) }
                    " signs every snapshot; this node holds snapshot " (s.sequence) ", signature verified." }
            }
        }
        h2 { "Branches" }
        (ref_table(id, branches))
        @if !tags.is_empty() { h2 { "Tags" } (ref_table(id, tags)) }
        @if !detail.forks.is_empty() {
            h2 { "Forks" }
            ul { @for f in &detail.forks { li.id { (f.key) " (sequence " (f.sequence) ")" } } }
        }
    };
    layout(name, body)
}

fn ref_table(id: &str, refs: &[(String, git2::Oid)]) -> Markup {
    html! {
        div.scroll { table {
            @for (name, commit) in refs {
                tr {
                    td { a href={ "/" (id) "/tree/" (url_path(name.as_str())) } { (name) } }
                    td.id { a href={ "/" (id) "/commit/" (commit) } { (short(&commit.to_string(), 12)) } }
                    td { a href={ "/" (id) "/log/" (url_path(name.as_str())) } { "history" } }
                }
            }
        } }
    }
}

/// Links to each directory above `path`.
fn crumbs(id: &str, at: &At, path: &[String]) -> Markup {
    html! {
        p.crumbs {
            a href={ "/" (id) } { "repository" } " / "
            a href={ "/" (id) "/tree/" (url_path(&at.name)) } { (at.name) }
            @for (i, part) in path.iter().enumerate() {
                " / "
                @if i + 1 == path.len() { span { (part) } }
                @else { a href={ "/" (id) "/tree/" (url_path(&at.name)) "/" (url_path(&path[..=i].join("/"))) } { (part) } }
            }
        }
    }
}

/// A directory.
pub fn tree(id: &str, at: &At, path: &[String], entries: &[Entry]) -> Markup {
    let here = path.join("/");
    let prefix = if here.is_empty() {
        String::new()
    } else {
        format!("{here}/")
    };
    let body = html! {
        (crumbs(id, at, path))
        div.scroll { table {
            @for e in entries {
                tr { td {
                    @if e.submodule { (e.name) " (submodule)" }
                    @else if e.dir { a href={ "/" (id) "/tree/" (url_path(&at.name)) "/" (url_path(&prefix)) (url_path(&e.name)) } { (e.name) "/" } }
                    @else { a href={ "/" (id) "/blob/" (url_path(&at.name)) "/" (url_path(&prefix)) (url_path(&e.name)) } { (e.name) } }
                } }
            }
        } }
    };
    layout(if here.is_empty() { &at.name } else { &here }, body)
}

/// A file.
pub fn file(id: &str, at: &At, path: &[String], view: &FileView) -> Markup {
    let body = html! {
        (crumbs(id, at, path))
        @match view {
            FileView::Text(text) => {
                @match crate::highlight::highlight(path.last().map(String::as_str).unwrap_or(""), text) {
                    Some(code) => { pre { (code) } }
                    None => { pre { (text) } }
                }
            }
            FileView::Binary(n) => { p.muted { "Binary file, " (n) " bytes." } }
            FileView::TooLarge(n) => { p.muted { "Too large to show here (" (n) " bytes; at most " (MAX_SHOWN) "). Clone the repository to read it." } }
        }
    };
    layout(&path.join("/"), body)
}

/// A page of history.
pub fn log(id: &str, at: &At, lines: &[CommitLine], skip: usize, more: bool) -> Markup {
    let body = html! {
        (crumbs(id, at, &[]))
        h1 { "History of " (at.name) }
        (commit_table(id, lines))
        @if more { p { a href={ "/" (id) "/log/" (url_path(&at.name)) "?skip=" (skip + PAGE) } { "older" } } }
    };
    layout(&format!("history of {}", at.name), body)
}

fn commit_table(id: &str, lines: &[CommitLine]) -> Markup {
    html! {
        div.scroll { table {
            @for c in lines {
                tr {
                    td.id { a href={ "/" (id) "/commit/" (c.id) } { (short(&c.id.to_string(), 10)) } }
                    td { (c.summary) }
                    td.wide { (c.author) }
                    td.wide.muted { (date(c.time)) }
                }
            }
        } }
    }
}

/// A commit and its diff.
pub fn commit(id: &str, view: &CommitView) -> Markup {
    let body = html! {
        p.crumbs { a href={ "/" (id) } { "repository" } }
        h1.id { (short(&view.line.id.to_string(), 12)) }
        pre.msg { (view.message) }
        p.muted { (view.line.author) ", " (date(view.line.time)) }
        @if !view.parents.is_empty() {
            p { "parents: " @for p in &view.parents { a.id href={ "/" (id) "/commit/" (p) } { (short(&p.to_string(), 12)) } " " } }
        }
        pre {
            @for l in view.diff.lines() {
                @let class = if l.starts_with("@@") { "hunk" } else if l.starts_with('+') { "add" } else if l.starts_with('-') { "del" } else { "" };
                span class=(class) { (l) } "\n"
            }
        }
        @if view.cut { p.muted { "The diff is longer than this page shows; clone the repository for the rest." } }
    };
    layout(&view.line.summary, body)
}

pub(crate) fn short(s: &str, n: usize) -> &str {
    s.get(..n).unwrap_or(s)
}

/// `YYYY-MM-DD` (UTC) of a Unix time: days to a civil date (Howard Hinnant's algorithm),
/// not worth a date crate for one field.
pub(crate) fn date(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_are_civil() {
        assert_eq!(date(0), "1970-01-01");
        assert_eq!(date(951_782_400), "2000-02-29");
        assert_eq!(date(1_796_601_600), "2026-12-07");
    }

    #[test]
    fn markup_in_names_is_escaped() {
        let at = At {
            name: "<script>alert(1)</script>".into(),
            commit: git2::Oid::ZERO_SHA1,
        };
        let page = tree("id", &at, &[], &[]).into_string();
        assert!(!page.contains("<script>alert"), "{page}");
        assert!(page.contains("&lt;script&gt;"));
    }
}
