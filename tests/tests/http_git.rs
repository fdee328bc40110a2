//! Stock git against a node's read-only HTTP endpoint (`--http`), with no helper and no
//! node beside it: clone (protocol v2 and v0), shallow and partial clones, a fetch after a
//! new push; only the canonical branches and tags are listed; a push is refused naming
//! the way that works; a private id and paths that climb out are answered exactly as an
//! unknown id.

use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;

use guts_node::api::types::RepoSummary;
use guts_tests::process::{GutsNode, NodeSpec, guts, http_get};

const WAIT: Duration = Duration::from_secs(30);

/// Plain git, as someone with no guts on the machine runs it.
fn stock_git(dir: &Path, args: &[&str]) -> Output {
    Command::new("git")
        .current_dir(dir)
        .args(args)
        .env("GIT_CONFIG_NOSYSTEM", "1")
        .env("GIT_CONFIG_GLOBAL", "/dev/null")
        .env("GIT_TERMINAL_PROMPT", "0")
        .env("GIT_AUTHOR_NAME", "T")
        .env("GIT_AUTHOR_EMAIL", "t@example.com")
        .env("GIT_COMMITTER_NAME", "T")
        .env("GIT_COMMITTER_EMAIL", "t@example.com")
        .output()
        .expect("run git")
}

fn ok(out: Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// An empty repository `name` under `root`, on branch main, for stock git to commit in.
fn new_work(root: &Path, name: &str) -> std::path::PathBuf {
    let dir = root.join(name);
    std::fs::create_dir(&dir).unwrap();
    ok(stock_git(&dir, &["init", "-q", "-b", "main"]), "git init");
    dir
}

fn commit(dir: &Path, file: &str) -> String {
    std::fs::write(dir.join(file), file).unwrap();
    ok(stock_git(dir, &["add", file]), "git add");
    ok(stock_git(dir, &["commit", "-q", "-m", file]), "git commit");
    ok(stock_git(dir, &["rev-parse", "HEAD"]), "git rev-parse")
}

#[test]
fn stock_git_clones_and_fetches_over_http_and_learns_nothing_private() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let node = NodeSpec::loopback(&root.join("node"))
        .args(["--http", "127.0.0.1:0"])
        .spawn();
    let addr = node.http_addr();

    let work = new_work(root, "work");
    commit(&work, "one");
    commit(&work, "two");
    ok(stock_git(&work, &["tag", "v1"]), "git tag");
    let head = commit(&work, "three");
    let repo = node.import(&work);
    let url = format!("http://{addr}/{}", repo.id);

    // Only the canonical refs (HEAD, the branch, the tag) and the signed record.
    let listed = ok(stock_git(root, &["ls-remote", &url]), "git ls-remote");
    let names: Vec<&str> = listed
        .lines()
        .filter_map(|l| l.split('\t').nth(1))
        .collect();
    assert_eq!(
        names,
        [
            "HEAD",
            "refs/guts/record",
            "refs/heads/main",
            "refs/tags/v1"
        ],
        "{listed}"
    );

    // Clones: protocol v2 (git's default), v0, shallow, partial.
    for (dir, extra) in [
        ("v2", vec![]),
        ("v0", vec!["-c", "protocol.version=0"]),
        ("shallow", vec!["--depth", "1"]),
        ("partial", vec!["--filter=blob:none"]),
    ] {
        let mut args = vec!["clone", "-q"];
        args.extend(extra);
        args.extend([url.as_str(), dir]);
        // `-c` goes before `clone`.
        if args.contains(&"-c") {
            args = vec!["-c", "protocol.version=0", "clone", "-q", &url, dir];
        }
        ok(stock_git(root, &args), &format!("git clone ({dir})"));
        let cloned = root.join(dir);
        assert_eq!(
            ok(stock_git(&cloned, &["rev-parse", "HEAD"]), "rev-parse"),
            head,
            "{dir}"
        );
        assert_eq!(std::fs::read_to_string(cloned.join("two")).unwrap(), "two");
    }
    let depth = ok(
        stock_git(&root.join("shallow"), &["rev-list", "--count", "HEAD"]),
        "rev-list",
    );
    assert_eq!(depth, "1");
    ok(
        stock_git(&root.join("v2"), &["fsck", "--strict"]),
        "git fsck",
    );

    // A new commit pushed through the node reaches a fetch.
    let next = commit(&work, "four");
    ok(
        node.git(&work, &["push", "-q", &repo.url, "main"]),
        "git push guts://",
    );
    ok(
        stock_git(&root.join("v2"), &["pull", "-q", "--ff-only"]),
        "git pull",
    );
    assert_eq!(
        ok(
            stock_git(&root.join("v2"), &["rev-parse", "HEAD"]),
            "rev-parse"
        ),
        next
    );

    // A push over HTTP is refused, naming the way that works.
    let pushed = stock_git(&root.join("v2"), &["push", &url, "main"]);
    assert!(!pushed.status.success());
    let said = String::from_utf8_lossy(&pushed.stderr);
    assert!(said.contains("403") || said.contains("read-only"), "{said}");

    // A private repository is answered as an unknown id; paths that climb out are not
    // found.
    let private: RepoSummary = node.client_json("repo init secret --private").unwrap();
    let secret = new_work(root, "secret");
    commit(&secret, "hidden");
    ok(
        node.git(&secret, &["push", "-q", &private.url, "main"]),
        "git push private",
    );
    let ask =
        |id: &str| http_get(addr, &format!("/{id}/info/refs?service=git-upload-pack")).unwrap();
    let unknown = ask("aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!(unknown.0, 404);
    assert_eq!(
        ask(&private.id),
        unknown,
        "a private id is told apart from an unknown one"
    );
    for path in [
        "/../../etc/passwd/info/refs?service=git-upload-pack",
        "/%2e%2e%2f%2e%2e/info/refs?service=git-upload-pack",
        &format!("/{}/../../info/refs?service=git-upload-pack", repo.id),
    ] {
        let (code, body) = http_get(addr, path).unwrap();
        assert_eq!(code, 404, "{path}");
        assert!(!body.contains("root:"), "{path}: {body}");
    }
    let fetched = stock_git(
        root,
        &["ls-remote", &format!("http://{addr}/{}", private.id)],
    );
    assert!(!fetched.status.success(), "a private repository was listed");

    // A fetch request past the size limit is refused from its head, before git runs.
    let head = format!(
        "POST /{}/git-upload-pack HTTP/1.1\r\nHost: {addr}\r\n\
         Content-Type: application/x-git-upload-pack-request\r\n\
         Content-Length: 100000000\r\n\r\n",
        repo.id
    );
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    std::io::Write::write_all(&mut stream, head.as_bytes()).unwrap();
    let mut answer = [0u8; 12];
    std::io::Read::read_exact(&mut stream, &mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 413");
}

#[test]
fn a_clone_over_http_is_verified_offline_against_what_the_owner_signed() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let mut node = NodeSpec::loopback(&root.join("node"))
        .args(["--http", "127.0.0.1:0"])
        .spawn();
    let addr = node.http_addr();
    let work = new_work(root, "work");
    let first = commit(&work, "one");
    ok(stock_git(&work, &["tag", "v1"]), "git tag");
    commit(&work, "two");
    let repo = node.import(&work);
    let url = format!("http://{addr}/{}", repo.id);
    ok(
        stock_git(
            root,
            &[
                "clone",
                "-q",
                "-c",
                "remote.origin.fetch=+refs/guts/*:refs/guts/*",
                &url,
                "clone",
            ],
        ),
        "git clone",
    );
    let clone = root.join("clone");
    let verify = |args: &[&str]| {
        let mut all = vec!["verify", clone.to_str().unwrap()];
        all.extend(args);
        guts(&all)
    };

    // A new push, pulled: the record that comes with it signs the new commit.
    let next = commit(&work, "three");
    ok(
        node.git(&work, &["push", "-q", &repo.url, "main"]),
        "git push guts://",
    );
    ok(stock_git(&clone, &["pull", "-q", "--ff-only"]), "git pull");
    // Offline: the node is gone.
    node.stop();
    let out = ok(verify(&[]), "guts verify");
    assert!(out.contains("the remote's URL names this id"), "{out}");
    assert!(
        out.contains(&format!("ok        refs/heads/main {}", &next[..12])),
        "{out}"
    );
    assert!(out.contains("ok: all 2 ref(s)"), "{out}");
    let report: serde_json::Value =
        serde_json::from_str(&ok(verify(&["--json"]), "guts verify --json")).unwrap();
    assert_eq!(report["passed"], true, "{report}");
    assert_eq!(report["repository"], repo.id.as_str());

    // What a server that rewound main would have given: caught, and the exit says so.
    ok(
        stock_git(&clone, &["update-ref", "refs/remotes/origin/main", &first]),
        "update-ref",
    );
    let out = verify(&[]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains(&format!(
            "DIFFERS   refs/heads/main: this clone has {}, the maintainers signed {}",
            &first[..12],
            &next[..12]
        )),
        "{said}"
    );
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("1 ref(s) of this clone are not"),
        "{out:?}"
    );

    // A clone made without the record is told how to fetch it.
    let plain = root.join("plain");
    std::fs::create_dir(&plain).unwrap();
    ok(stock_git(&plain, &["init", "-q"]), "git init");
    ok(
        stock_git(&plain, &["remote", "add", "origin", &url]),
        "git remote add",
    );
    let out = guts(&["verify", plain.to_str().unwrap()]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(
        said.contains("git fetch origin '+refs/guts/*:refs/guts/*'"),
        "{said}"
    );
}

#[test]
fn stock_git_pushes_over_http_with_the_api_token_when_pushes_are_on() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let node = NodeSpec::loopback(&root.join("node"))
        .args(["--http", "127.0.0.1:0", "--http-push", "on"])
        .spawn();
    let addr = node.http_addr();
    let repo: RepoSummary = node.client_json("repo init pushed").unwrap();
    let url = format!("http://{addr}/{}", repo.id);
    let with_token = format!("http://guts:{}@{addr}/{}", node.token(), repo.id);
    let work = new_work(root, "work");
    commit(&work, "one");
    // Past git's 1 MiB post buffer: a chunked request, after git's probe.
    let noise: Vec<u8> = (0..3u32 << 20)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(work.join("noise.bin"), noise).unwrap();
    ok(stock_git(&work, &["add", "noise.bin"]), "git add");
    ok(
        stock_git(&work, &["commit", "-q", "-m", "noise"]),
        "git commit",
    );
    let head = ok(stock_git(&work, &["rev-parse", "HEAD"]), "rev-parse");

    // No token, a wrong one: refused, nothing moves.
    for bad in [
        url.clone(),
        format!("http://guts:{}@{addr}/{}", "0".repeat(64), repo.id),
    ] {
        let out = stock_git(&work, &["push", &bad, "main"]);
        assert!(!out.status.success());
        let said = String::from_utf8_lossy(&out.stderr);
        // git asks for a password, or says the one it had failed.
        assert!(
            said.contains("could not read Username") || said.contains("Authentication failed"),
            "{said}"
        );
    }
    let listed = ok(stock_git(root, &["ls-remote", &url]), "ls-remote");
    assert!(!listed.contains("refs/heads/"), "{listed}");

    // With the token: the node signs it, git says so, and it is served.
    let out = stock_git(&work, &["push", &with_token, "main"]);
    let said = ok(out, "git push with the token");
    let listed = ok(
        stock_git(root, &["ls-remote", &url, "refs/heads/main"]),
        "ls-remote",
    );
    assert!(listed.starts_with(&head), "{listed} / {said}");
    let out = stock_git(&work, &["push", &with_token, "main:topic"]);
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("remote: guts: signed snapshot"),
        "{out:?}"
    );

    // An incremental push, a deletion, a rewrite only with --force.
    let next = commit(&work, "two");
    ok(
        stock_git(&work, &["push", "-q", &with_token, "main", ":topic"]),
        "git push",
    );
    let listed = ok(stock_git(root, &["ls-remote", &url]), "ls-remote");
    assert!(
        listed.contains(&format!("{next}\trefs/heads/main")),
        "{listed}"
    );
    assert!(!listed.contains("refs/heads/topic"), "{listed}");
    ok(
        stock_git(&work, &["reset", "-q", "--hard", "HEAD~1"]),
        "reset",
    );
    let out = stock_git(&work, &["push", &with_token, "main"]);
    assert!(!out.status.success(), "a rewrite without --force");
    ok(
        stock_git(&work, &["push", "-q", "--force", &with_token, "main"]),
        "git push --force",
    );
    assert!(
        ok(
            stock_git(root, &["ls-remote", &url, "refs/heads/main"]),
            "ls-remote"
        )
        .starts_with(&head)
    );

    // Patches go through git-remote-guts: said per ref.
    let out = stock_git(&work, &["push", &with_token, "HEAD:refs/patches"]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("git-remote-guts"), "{said}");

    // Ref commands without end are cut off at their bound, before any pack.
    let pkt = {
        let text = format!("{z} {z} refs/heads/b\n", z = "0".repeat(40));
        format!("{:04x}{text}", text.len() + 4)
    };
    let body = pkt.repeat((9 << 20) / pkt.len());
    let head = format!(
        "POST /{}/git-receive-pack HTTP/1.1\r\nHost: {addr}\r\n\
         Authorization: Bearer {}\r\n\
         Content-Type: application/x-git-receive-pack-request\r\n\
         Content-Length: {}\r\n\r\n",
        repo.id,
        node.token(),
        body.len()
    );
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let mut writer = stream.try_clone().unwrap();
    // Written beside the reading: the node answers before it has read it all.
    let sending = std::thread::spawn(move || {
        let _ = std::io::Write::write_all(&mut writer, head.as_bytes());
        let _ = std::io::Write::write_all(&mut writer, body.as_bytes());
    });
    let mut answer = [0u8; 12];
    std::io::Read::read_exact(&mut stream, &mut answer).unwrap();
    assert_eq!(&answer, b"HTTP/1.1 413");
    drop(stream);
    let _ = sending.join();

    // What was pushed verifies from a clone.
    ok(
        stock_git(
            root,
            &[
                "clone",
                "-q",
                "-c",
                "remote.origin.fetch=+refs/guts/*:refs/guts/*",
                &url,
                "clone",
            ],
        ),
        "git clone",
    );
    ok(
        guts(&["verify", root.join("clone").to_str().unwrap()]),
        "guts verify",
    );
}

#[test]
fn the_web_view_shows_the_node_and_its_public_repositories_only() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let node = NodeSpec::loopback(&root.join("node"))
        .args(["--http", "127.0.0.1:0"])
        .spawn();
    let addr = node.http_addr();
    let get = |path: &str| http_get(addr, path).unwrap();

    let work = root.join("work");
    std::fs::create_dir_all(work.join("src")).unwrap();
    ok(stock_git(&work, &["init", "-q", "-b", "main"]), "git init");
    std::fs::write(work.join("src/lib.rs"), "fn answer() -> u32 { 42 }\n").unwrap();
    std::fs::write(work.join("<b>bold<i>.txt"), "markup in a name\n").unwrap();
    std::fs::write(work.join("blob.bin"), [0u8, 1, 2, 3, 255]).unwrap();
    std::fs::write(work.join("odd #1?.txt"), "a name that is not a path\n").unwrap();
    std::fs::write(work.join("huge.txt"), "x".repeat(600 * 1024)).unwrap();
    ok(stock_git(&work, &["add", "."]), "git add");
    ok(
        stock_git(&work, &["commit", "-q", "-m", "first <em>commit</em>"]),
        "git commit",
    );
    let head = commit(&work, "README");
    let repo = node.import(&work);
    let id = &repo.id;

    let (code, page) = get("/");
    assert_eq!(code, 200);
    let status = node.status();
    assert!(
        page.contains(&status.peer_id),
        "the node page names its peer id"
    );
    assert!(page.contains(&format!("href=\"/{id}\"")), "{page}");

    let (code, page) = get(&format!("/{id}"));
    assert_eq!(code, 200);
    assert!(
        page.contains(&format!("git clone http://{addr}/{id}")),
        "{page}"
    );
    assert!(page.contains("signature verified"), "{page}");
    assert!(
        page.contains(&format!("href=\"/{id}/tree/main\"")),
        "{page}"
    );

    let (code, page) = get(&format!("/{id}/tree/main"));
    assert_eq!(code, 200);
    assert!(
        page.contains(&format!("href=\"/{id}/tree/main/src\"")),
        "{page}"
    );
    assert!(page.contains("&lt;b&gt;bold&lt;i&gt;.txt") && !page.contains("<b>bold"));
    // A file name with '#', '?' and a space: its link is escaped and leads to it.
    let odd = format!("/{id}/blob/main/odd%20%231%3F.txt");
    assert!(page.contains(&format!("href=\"{odd}\"")), "{page}");
    let (code, file) = get(&odd);
    assert_eq!(code, 200);
    assert!(file.contains("a name that is not a path"), "{file}");
    let (code, page) = get(&format!("/{id}/blob/main/src/lib.rs"));
    assert_eq!(code, 200);
    // Highlighted (a keyword in its own class), escaped.
    assert!(
        page.contains("s-keyword") && page.contains("answer"),
        "{page}"
    );
    assert!(page.contains("-&gt;") && !page.contains("->"), "{page}");
    assert!(
        get(&format!("/{id}/blob/main/blob.bin"))
            .1
            .contains("Binary file, 5 bytes")
    );
    assert!(
        get(&format!("/{id}/blob/main/huge.txt"))
            .1
            .contains("Too large to show")
    );

    let (code, page) = get(&format!("/{id}/log/main"));
    assert_eq!(code, 200);
    assert!(page.contains("first &lt;em&gt;commit&lt;/em&gt;"), "{page}");
    assert!(page.contains(&format!("/{id}/commit/{head}")), "{page}");
    let (code, page) = get(&format!("/{id}/commit/{head}"));
    assert_eq!(code, 200);
    assert!(
        page.contains("+README"),
        "the diff shows the added file: {page}"
    );

    // An issue and a patch, each listed and shown with its discussion.
    let opened: guts_node::api::types::collab::ChangeResponse = node
        .client_json(&format!(
            "issue open {id} --title <i>Crash</i>-on-start -m It-crashes"
        ))
        .unwrap();
    let issue = opened.object;
    ok(
        stock_git(&work, &["checkout", "-q", "-b", "feature"]),
        "git checkout",
    );
    let feature = commit(&work, "FEATURE");
    ok(
        node.git(&work, &["push", "-q", &repo.url, "HEAD:refs/patches"]),
        "git push HEAD:refs/patches",
    );
    let (code, page) = get(&format!("/{id}"));
    assert_eq!(code, 200);
    assert!(
        page.contains("1 patches") && page.contains("1 issues"),
        "{page}"
    );
    let (code, page) = get(&format!("/{id}/issues"));
    assert_eq!(code, 200);
    assert!(page.contains("&lt;i&gt;Crash&lt;/i&gt;-on-start"), "{page}");
    let (code, page) = get(&format!("/{id}/issues/{issue}"));
    assert_eq!(code, 200);
    assert!(page.contains("It-crashes"), "{page}");
    let (code, page) = get(&format!("/{id}/patches"));
    assert_eq!(code, 200);
    let patch = page
        .split(&format!("/{id}/patches/"))
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .unwrap_or_else(|| panic!("no patch link in {page}"))
        .to_owned();
    let (code, page) = get(&format!("/{id}/patches/{patch}"));
    assert_eq!(code, 200);
    assert!(page.contains(&format!("/{id}/commit/{feature}")), "{page}");
    assert_eq!(get(&format!("/{id}/issues/nosuchissue")).0, 404);

    // Paths that climb, unknown refs and commits: not found.
    for path in [
        format!("/{id}/tree/main/../../../etc"),
        format!("/{id}/blob/main/%2e%2e/%2e%2e/etc/passwd"),
        format!("/{id}/tree/nosuchbranch"),
        format!("/{id}/commit/{}", "0".repeat(40)),
    ] {
        assert_eq!(get(&path).0, 404, "{path}");
    }

    // A private repository is neither listed nor shown: its page is an unknown id's.
    let private: RepoSummary = node.client_json("repo init hidden --private").unwrap();
    let secret = new_work(root, "secret");
    commit(&secret, "hidden");
    ok(
        node.git(&secret, &["push", "-q", &private.url, "main"]),
        "git push",
    );
    assert!(!get("/").1.contains(&private.id));
    let unknown = get("/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa");
    assert_eq!(unknown.0, 404);
    assert_eq!(get(&format!("/{}", private.id)), unknown);
    assert_eq!(
        get(&format!("/{}/tree/main", private.id)).0,
        404,
        "nor any page under it"
    );
}

/// Raises this process's open-file limit to its hard limit (a thousand sockets).
fn raise_file_limit() {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid pointer to a local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

#[test]
fn a_thousand_slow_clients_on_one_host_leave_git_to_everyone_else() {
    raise_file_limit();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let node = NodeSpec::loopback(&root.join("node"))
        .args(["--http", "127.0.0.1:0"])
        .spawn();
    let addr = node.http_addr();
    let work = new_work(root, "work");
    let head = commit(&work, "one");
    let repo = node.import(&work);

    // 1,000 connections from another loopback address, each sending half a request and
    // then nothing, held open.
    let rt = tokio::runtime::Runtime::new().unwrap();
    let slow = rt.block_on(async {
        let mut held = Vec::new();
        for _ in 0..1000 {
            let socket = tokio::net::TcpSocket::new_v4().unwrap();
            socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
            if let Ok(mut s) = socket.connect(addr).await {
                use tokio::io::AsyncWriteExt;
                let _ = s.write_all(b"GET / HTTP/1.1\r\nHost: x\r\n").await;
                held.push(s);
            }
        }
        held
    });
    assert!(
        slow.len() >= 900,
        "only {} slow connections opened",
        slow.len()
    );

    // Meanwhile stock git from this host lists and clones, and a page loads.
    let url = format!("http://{addr}/{}", repo.id);
    let listed = ok(stock_git(root, &["ls-remote", &url]), "git ls-remote");
    assert!(listed.contains(&head), "{listed}");
    ok(
        stock_git(root, &["clone", "-q", &url, "clone"]),
        "git clone",
    );
    let (code, _) = http_get(addr, &format!("/{}", repo.id)).unwrap();
    assert_eq!(code, 200);
    drop(slow);
}

#[test]
fn a_node_imports_from_a_url_and_from_a_bundle_on_stdin() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path();
    let a = NodeSpec::loopback(&root.join("a"))
        .args(["--http", "127.0.0.1:0"])
        .spawn();
    let b = NodeSpec::loopback(&root.join("b")).spawn();
    let work = new_work(root, "work");
    commit(&work, "one");
    ok(stock_git(&work, &["tag", "v1"]), "git tag");
    let head = commit(&work, "two");
    let on_a = a.import(&work);
    let refs_of = |node: &GutsNode, id: &str| {
        let d: guts_node::api::types::RepoDetail =
            node.client_json(&format!("repo show {id}")).unwrap();
        d.refs
    };

    // B takes it by URL (A's HTTP endpoint): B's node fetches it and owns the copy.
    let url = format!("http://{}/{}", a.http_addr(), on_a.id);
    let out = b.client_ok(&["repo", "import", &url, "--name", "copy", "--json"]);
    let copy: guts_node::api::types::ImportResponse = serde_json::from_str(&out).unwrap();
    assert_eq!(refs_of(&b, &copy.repository.id), refs_of(&a, &on_a.id));
    assert_eq!(copy.repository.owner, Some(b.status().key));

    // And a bundle on stdin, as `docker exec -i NODE guts repo import - < x.bundle` does.
    let bundle = root.join("x.bundle");
    ok(
        stock_git(
            &work,
            &["bundle", "create", bundle.to_str().unwrap(), "--all"],
        ),
        "git bundle",
    );
    let out = Command::new(guts_tests::process::guts_bin())
        .args([
            "repo", "import", "-", "--name", "bundled", "--json", "--api",
        ])
        .arg(b.api().to_string())
        .env("GUTS_DATA_DIR", b.data_dir())
        .env("XDG_CONFIG_HOME", guts_tests::process::NO_CONFIG_HOME)
        .stdin(std::fs::File::open(&bundle).unwrap())
        .output()
        .unwrap();
    let out = ok(out, "guts repo import -");
    let bundled: guts_node::api::types::ImportResponse = serde_json::from_str(&out).unwrap();
    let refs = refs_of(&b, &bundled.repository.id);
    assert_eq!(refs.get("refs/heads/main"), Some(&head));
    assert!(refs.contains_key("refs/tags/v1"));

    // What goes wrong is said with git's own words, naming what was asked.
    let failed = b.client(["repo", "import", "http://127.0.0.1:1/nothing.git"]);
    let said = String::from_utf8_lossy(&failed.stderr);
    assert!(!failed.status.success());
    assert!(
        said.contains("http://127.0.0.1:1/nothing.git") && said.to_lowercase().contains("connect"),
        "{said}"
    );
    let unnamed = Command::new(guts_tests::process::guts_bin())
        .args(["repo", "import", "-", "--api"])
        .arg(b.api().to_string())
        .env("GUTS_DATA_DIR", b.data_dir())
        .stdin(std::fs::File::open(&bundle).unwrap())
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&unnamed.stderr);
    assert!(
        !unnamed.status.success() && said.contains("--name"),
        "{said}"
    );
}
