//! The shape of the code, checked: the top-level modules import each other
//! without a cycle (so each can be read knowing only what it imports), and
//! no source file outgrows what a reader takes in at once.
//!
//! `cargo test --test architecture -- --nocapture` prints the import graph.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Longest source file allowed, in lines (test-only files excepted).
const MAX_LINES: usize = 420;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            rust_files(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// The top-level module a library file belongs to (`src/auth/x.rs` → `auth`).
fn module_of(src: &Path, file: &Path) -> Option<String> {
    let rel = file.strip_prefix(src).ok()?;
    let first = rel.components().next()?.as_os_str().to_str()?;
    let name = first.trim_end_matches(".rs");
    (name != "lib" && name != "cli").then(|| name.to_string())
}

/// Every `crate::name` a file mentions, braces included (`crate::{a, b::c}`).
fn crate_refs(text: &str) -> BTreeSet<String> {
    let mut refs = BTreeSet::new();
    for (i, _) in text.match_indices("crate::") {
        let rest = &text[i + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let end = group.find('}').unwrap_or(group.len());
            for part in group[..end].split(',') {
                let name: String = part
                    .trim()
                    .chars()
                    .take_while(|c| c.is_alphanumeric() || *c == '_')
                    .collect();
                if !name.is_empty() {
                    refs.insert(name);
                }
            }
        } else {
            let name: String = rest
                .chars()
                .take_while(|c| c.is_alphanumeric() || *c == '_')
                .collect();
            refs.insert(name);
        }
    }
    refs
}

fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut graph: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(module) = module_of(&src, file) else {
            continue;
        };
        let text = std::fs::read_to_string(file).unwrap();
        let deps = graph.entry(module.clone()).or_default();
        for r in crate_refs(&text) {
            if r != module && src.join(format!("{r}.rs")).exists() {
                deps.insert(r);
            }
        }
    }
    graph
}

/// A cycle through `start`, if there is one (depth-first search).
fn cycle_from(
    graph: &BTreeMap<String, BTreeSet<String>>,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    let here = path.last().unwrap().clone();
    for next in graph.get(&here).into_iter().flatten() {
        if let Some(at) = path.iter().position(|m| m == next) {
            let mut cycle = path[at..].to_vec();
            cycle.push(next.clone());
            return Some(cycle);
        }
        if done.contains(next) {
            continue;
        }
        path.push(next.clone());
        if let Some(c) = cycle_from(graph, path, done) {
            return Some(c);
        }
        path.pop();
    }
    done.insert(here);
    None
}

#[test]
fn top_level_modules_import_each_other_without_a_cycle() {
    let graph = graph();
    for (m, deps) in &graph {
        let deps: Vec<&str> = deps.iter().map(String::as_str).collect();
        println!("{m} -> {}", deps.join(" "));
    }
    let mut done = BTreeSet::new();
    for m in graph.keys() {
        if let Some(cycle) = cycle_from(&graph, &mut vec![m.clone()], &mut done) {
            panic!("module cycle: {}", cycle.join(" -> "));
        }
    }
}

#[test]
fn the_checker_finds_a_cycle_when_there_is_one() {
    let mut g = BTreeMap::new();
    g.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    g.insert("b".to_string(), BTreeSet::from(["c".to_string()]));
    g.insert("c".to_string(), BTreeSet::from(["a".to_string()]));
    let found = cycle_from(&g, &mut vec!["a".into()], &mut BTreeSet::new());
    assert_eq!(found.unwrap(), ["a", "b", "c", "a"]);
    assert_eq!(
        crate_refs("use crate::{auth::x, conn};\nlet y = crate::policy::Facts;"),
        BTreeSet::from(["auth".into(), "conn".into(), "policy".into()])
    );
}

// === Circles between files ===
//
// The check above sees only the top-level modules; inside one, two files
// can still need each other, and then neither can be read first. Here every
// `crate::…`, `super::…` and `self::…` path in a file (in `use` or inline;
// comments and `mod tests` left out) is resolved to the file that defines
// its deepest module, and the files must import each other without a
// circle. A module file reaching into its own folder (`auth.rs` using or
// re-exporting `auth/state.rs`) is the folder's front door, not an import
// between peers: only files outside a file's own folder count.

/// Circles between files that are allowed for now, as (file, file) under
/// `src/`. Nothing may join this list.
const FILE_CIRCLES_ALLOWED: &[(&str, &str)] = &[];

/// A file's crate folder and module path: `src/auth/ntlm.rs` is `auth::ntlm`
/// in the library (root `src/lib.rs`); `src/cli/join.rs` is `join` in the
/// binary (root `src/cli/main.rs`).
fn file_module(src: &Path, file: &Path) -> (PathBuf, Vec<String>) {
    let bin = src.join("cli");
    let root = if file.starts_with(&bin) {
        bin
    } else {
        src.to_path_buf()
    };
    let rel = file.strip_prefix(&root).unwrap().with_extension("");
    let mut path: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if path == ["lib"] || path == ["main"] {
        path.clear();
    }
    if path.last().is_some_and(|l| l == "mod") {
        path.pop();
    }
    (root, path)
}

/// The file that defines the module at `path` in the crate at `root`.
fn module_file(root: &Path, path: &[String]) -> Option<PathBuf> {
    if path.is_empty() {
        return ["lib.rs", "main.rs"]
            .iter()
            .map(|f| root.join(f))
            .find(|f| f.exists());
    }
    let dir = path.iter().fold(root.to_path_buf(), |d, s| d.join(s));
    [dir.with_extension("rs"), dir.join("mod.rs")]
        .into_iter()
        .find(|f| f.exists())
}

fn skip_space(s: &[u8], i: &mut usize) {
    while *i < s.len() && s[*i].is_ascii_whitespace() {
        *i += 1;
    }
}

fn word(s: &[u8], i: &mut usize) -> String {
    let start = *i;
    while *i < s.len() && (s[*i].is_ascii_alphanumeric() || s[*i] == b'_') {
        *i += 1;
    }
    String::from_utf8_lossy(&s[start..*i]).into_owned()
}

/// Every path of the path tree at `s[*i..]`, after `segs`:
/// `crate::a::{b as c, d::{self, e}}` gives `crate::a::b`, `crate::a::d`
/// and `crate::a::d::e`.
fn path_tree(s: &[u8], i: &mut usize, mut segs: Vec<String>, out: &mut Vec<Vec<String>>) {
    loop {
        skip_space(s, i);
        if s.get(*i) == Some(&b'{') {
            *i += 1;
            loop {
                skip_space(s, i);
                match s.get(*i) {
                    None => return,
                    Some(b'}') => {
                        *i += 1;
                        return;
                    }
                    Some(b',') => *i += 1,
                    Some(_) => {
                        let before = *i;
                        path_tree(s, i, segs.clone(), out);
                        if *i == before {
                            *i += 1;
                        }
                    }
                }
            }
        }
        let w = word(s, i);
        if w.is_empty() {
            // `*`, or the end of the path.
            out.push(segs);
            return;
        }
        if w != "self" || segs.is_empty() {
            segs.push(w);
        }
        if s[*i..].starts_with(b"::") {
            *i += 2;
            continue;
        }
        // `name as other`: the other name is no part of the path.
        let mut j = *i;
        skip_space(s, &mut j);
        if s[j..].starts_with(b"as") && s.get(j + 2).is_some_and(u8::is_ascii_whitespace) {
            j += 2;
            skip_space(s, &mut j);
            word(s, &mut j);
            *i = j;
        }
        out.push(segs);
        return;
    }
}

/// Every `crate::`, `super::` and `self::` path in `text`, made absolute from
/// the module at `here`.
fn file_paths(text: &str, here: &[String]) -> Vec<Vec<String>> {
    let code = &text[..text.find("mod tests {").unwrap_or(text.len())];
    let code: String = code
        .lines()
        .filter(|l| !l.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    let s = code.as_bytes();
    let mut found = Vec::new();
    for start in ["crate::", "super::", "self::"] {
        for (at, _) in code.match_indices(start) {
            let before = at.checked_sub(1).map(|b| s[b]);
            if before.is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b':') {
                continue;
            }
            path_tree(s, &mut at.clone(), Vec::new(), &mut found);
        }
    }
    found
        .into_iter()
        .map(|p| {
            let mut base = here.to_vec();
            let mut rest = p.as_slice();
            match rest.first().map(String::as_str) {
                Some("crate") => {
                    base.clear();
                    rest = &rest[1..];
                }
                Some("self") => rest = &rest[1..],
                _ => {
                    while rest.first().is_some_and(|s| s == "super") {
                        base.pop();
                        rest = &rest[1..];
                    }
                }
            }
            base.extend(rest.iter().cloned());
            base
        })
        .collect()
}

/// Which file imports which, by paths relative to `src/`; a file's own
/// folder left out.
fn file_graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let name = |f: &Path| f.strip_prefix(&src).unwrap().to_string_lossy().into_owned();
    let mut graph = BTreeMap::new();
    for file in files
        .iter()
        .filter(|f| !f.to_string_lossy().ends_with("_tests.rs"))
    {
        let (root, here) = file_module(&src, file);
        let text = std::fs::read_to_string(file).unwrap();
        let deps: &mut BTreeSet<String> = graph.entry(name(file)).or_default();
        for path in file_paths(&text, &here) {
            // The deepest module of the path that is a file of its own.
            let Some(n) = (0..=path.len())
                .rev()
                .find(|&n| module_file(&root, &path[..n]).is_some())
            else {
                continue;
            };
            if path[..n].starts_with(&here) {
                continue; // itself, or its own folder
            }
            deps.insert(name(&module_file(&root, &path[..n]).unwrap()));
        }
    }
    graph
}

#[test]
fn files_import_each_other_without_a_circle() {
    let mut graph = file_graph();
    for (a, b) in FILE_CIRCLES_ALLOWED {
        let imports = |x: &str, y: &str| graph.get(x).is_some_and(|d| d.contains(y));
        assert!(
            imports(a, b) && imports(b, a),
            "{a} and {b} no longer import each other: take them off FILE_CIRCLES_ALLOWED"
        );
        graph.get_mut(*a).unwrap().remove(*b);
        graph.get_mut(*b).unwrap().remove(*a);
    }
    let mut done = BTreeSet::new();
    for f in graph.keys() {
        if let Some(circle) = cycle_from(&graph, &mut vec![f.clone()], &mut done) {
            panic!("files import each other: {}", circle.join(" -> "));
        }
    }
}

#[test]
fn the_file_checker_reads_paths_as_rustc_does() {
    let here: Vec<String> = vec!["auth".into(), "ntlm".into()];
    let paths = file_paths(
        "use super::{header::Bad, spnego};\n\
         // use crate::commented::Out;\n\
         use crate::conn::{self as c, slots::{Slot, take}};\n\
         let x = super::super::policy::Facts::new();\n\
         mod tests {\n use crate::only_in_tests::X;\n}\n",
        &here,
    );
    let paths: BTreeSet<String> = paths.iter().map(|p| p.join("::")).collect();
    assert_eq!(
        paths,
        BTreeSet::from(
            [
                "auth::header::Bad",
                "auth::spnego",
                "conn",
                "conn::slots::Slot",
                "conn::slots::take",
                "policy::Facts::new",
            ]
            .map(String::from)
        )
    );
}

#[test]
fn no_source_file_is_too_long_to_read_at_once() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    rust_files(&src, &mut files);
    let mut long: Vec<String> = files
        .iter()
        .filter(|f| !f.to_string_lossy().ends_with("_tests.rs"))
        .filter_map(|f| {
            let lines = std::fs::read_to_string(f).unwrap().lines().count();
            (lines > MAX_LINES).then(|| format!("{} ({lines} lines)", f.display()))
        })
        .collect();
    long.sort();
    assert!(long.is_empty(), "over {MAX_LINES} lines: {long:#?}");
}

/// Longest README allowed, in lines: a front door; the manual lives in `docs/`.
const MAX_README_LINES: usize = 300;

#[test]
fn the_readme_is_a_front_door_not_the_manual() {
    let readme = Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let lines = std::fs::read_to_string(&readme).unwrap().lines().count();
    assert!(
        lines <= MAX_README_LINES,
        "README.md has {lines} lines, over {MAX_README_LINES}: move the detail into docs/"
    );
}

/// The targets of a Markdown file's inline links (`[text](target)`), outside
/// fenced code blocks and code spans.
fn markdown_links(text: &str) -> Vec<String> {
    let mut links = Vec::new();
    let mut fenced = false;
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        // Code spans (`...`) are not links: keep only the text outside them.
        let prose: String = line
            .split('`')
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, part)| part)
            .collect::<Vec<_>>()
            .join(" ");
        for (i, _) in prose.match_indices("](") {
            let rest = &prose[i + 2..];
            if let Some(end) = rest.find(')') {
                let target = rest[..end].split_whitespace().next().unwrap_or("");
                links.push(target.to_string());
            }
        }
    }
    links
}

/// Relative links of a Markdown file that name no existing file or folder.
fn broken_links(file: &Path) -> Vec<String> {
    let text = std::fs::read_to_string(file).unwrap();
    let dir = file.parent().unwrap();
    markdown_links(&text)
        .into_iter()
        .filter(|t| !t.is_empty() && !t.starts_with('#') && !t.contains("://"))
        .filter(|t| !t.starts_with("mailto:"))
        .filter(|t| {
            let path = t.split('#').next().unwrap();
            !dir.join(path).exists()
        })
        .map(|t| {
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            format!("{}: {t}", file.strip_prefix(root).unwrap_or(file).display())
        })
        .collect()
}

#[test]
fn every_relative_link_in_the_readme_and_docs_names_a_file() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let mut files = vec![root.join("README.md")];
    for entry in std::fs::read_dir(root.join("docs")).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "md") {
            files.push(path);
        }
    }
    let mut broken: Vec<String> = files.iter().flat_map(|f| broken_links(f)).collect();
    broken.sort();
    assert!(broken.is_empty(), "links to nothing: {broken:#?}");
}

#[test]
fn the_link_checker_reads_links_and_skips_code() {
    let text = "See [config](docs/configuration.md#keys) and [web](https://x.test).\n\
                `[not](a-link.md)` here\n```\n[nor](this.md)\n```\n[top](#top)";
    assert_eq!(
        markdown_links(text),
        ["docs/configuration.md#keys", "https://x.test", "#top"]
    );
}
