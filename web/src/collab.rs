//! The pages of patches and issues: lists, and one with its discussion (and a patch's
//! revisions and reviews), as the node replays their signed changes.

use guts_api::collab::{CommentReport, IssueReport, PatchReport};
use maud::{Markup, html};

use crate::pages::{date, layout, short};

fn comments(list: &[CommentReport]) -> Markup {
    html! {
        @for c in list {
            div.comment id={ "c-" (c.id) } {
                p.muted { span.id { (short(&c.author, 16)) } ", " (date(c.timestamp as i64))
                    @if c.edited { " (edited)" } }
                @if c.body.trim().is_empty() { p.muted { "(no text)" } } @else { pre.msg { (c.body) } }
            }
        }
    }
}

fn labels(labels: &[String]) -> Markup {
    html! { @if !labels.is_empty() { p { "labels: " (labels.join(", ")) } } }
}

/// The issues of repository `id`.
pub fn issues(id: &str, list: &[IssueReport]) -> Markup {
    let body = html! {
        p.crumbs { a href={ "/" (id) } { "repository" } }
        h1 { "Issues" }
        @if list.is_empty() { p.muted { "None." } }
        div.scroll { table {
            @for i in list {
                tr {
                    td { a href={ "/" (id) "/issues/" (i.id) } { (i.title) } }
                    td { (i.state) }
                    td.wide.muted { (date(i.updated as i64)) }
                }
            }
        } }
    };
    layout("issues", body)
}

/// One issue.
pub fn issue(id: &str, i: &IssueReport) -> Markup {
    let body = html! {
        p.crumbs { a href={ "/" (id) } { "repository" } " / " a href={ "/" (id) "/issues" } { "issues" } }
        h1 { (i.title) }
        p { (i.state) ", opened by " span.id { (short(&i.author, 16)) } " on " (date(i.opened as i64)) }
        (labels(&i.labels))
        (comments(&i.comments))
    };
    layout(&i.title, body)
}

/// The patches of repository `id`.
pub fn patches(id: &str, list: &[PatchReport]) -> Markup {
    let body = html! {
        p.crumbs { a href={ "/" (id) } { "repository" } }
        h1 { "Patches" }
        @if list.is_empty() { p.muted { "None." } }
        div.scroll { table {
            @for p in list {
                tr {
                    td { a href={ "/" (id) "/patches/" (p.id) } { (p.title) } }
                    td { (p.state) }
                    td.wide { "to " (p.target) }
                    td.wide.muted { (date(p.updated as i64)) }
                }
            }
        } }
    };
    layout("patches", body)
}

/// One patch: its revisions (each a commit range to read), reviews and discussion.
pub fn patch(id: &str, p: &PatchReport) -> Markup {
    let body = html! {
        p.crumbs { a href={ "/" (id) } { "repository" } " / " a href={ "/" (id) "/patches" } { "patches" } }
        h1 { (p.title) }
        p { (p.state) ", to " (p.target) ", opened by " span.id { (short(&p.author, 16)) }
            " on " (date(p.opened as i64)) }
        (labels(&p.labels))
        h2 { "Revisions" }
        @for (n, r) in p.revisions.iter().enumerate() {
            div.revision {
                p { "Revision " (n + 1) " by " span.id { (short(&r.author, 16)) } ": "
                    a.id href={ "/" (id) "/commit/" (r.head) } { (short(&r.head, 12)) }
                    " on " span.id { (short(&r.base, 12)) }
                    @if p.merged_revision.as_deref() == Some(r.id.as_str()) { " (merged)" } }
                @if !r.note.is_empty() { pre.msg { (r.note) } }
                @for review in &r.reviews {
                    p.muted { "Review by " span.id { (short(&review.author, 16)) } ": "
                        (review.verdict.as_deref().unwrap_or("comment")) }
                    @if !review.summary.is_empty() { pre.msg { (review.summary) } }
                    @for c in &review.comments { p { code { (c.path) } } pre.msg { (c.body) } }
                }
            }
        }
        h2 { "Discussion" }
        (comments(&p.comments))
    };
    layout(&p.title, body)
}
