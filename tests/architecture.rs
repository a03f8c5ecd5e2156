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
