//! What `bench/run` relies on. Its report generator, on the fixed sample data of `bench/run
//! --self-test`: the page has a line, marked met or missed, for every budget line of the script's
//! table, the chart is a well-formed SVG, and a page's hand-written text outside the generated part
//! survives. And the defender's switch for benchmarks, `DEFENDER_BENCH_NO_SYNC_WAKEUP`. Nothing
//! here times anything: the measuring itself is `bench/run` without `--self-test`.

mod common;

use std::path::Path;
use std::process::Command;

use common::{defender, output_within, repo_path, require, stderr, stdout};
use serde_json::Value;

const BEGIN: &str = "<!-- bench/run: begin -->";
const END: &str = "<!-- bench/run: end -->";

fn bench_run(args: &[&str]) -> std::process::Output {
    require("python3");
    output_within(Command::new(repo_path("bench/run")).args(args))
}

/// The budget lines, from the script's own table.
fn budgets() -> Vec<Value> {
    let out = bench_run(&["--list-budgets"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let list: Vec<Value> = serde_json::from_str(&stdout(&out)).expect("JSON list of budgets");
    assert!(
        list.len() >= 12,
        "the issue's budget has 12 lines: {list:?}"
    );
    list
}

fn self_test(dir: &Path) -> std::process::Output {
    bench_run(&["--self-test", "--out", dir.to_str().unwrap()])
}

#[test]
fn self_test_page_marks_every_budget_line_and_links_a_valid_svg() {
    let dir = tempfile::tempdir().unwrap();
    let out = self_test(dir.path());
    assert!(out.status.success(), "{}{}", stdout(&out), stderr(&out));
    let page = std::fs::read_to_string(dir.path().join("benchmarks.md")).unwrap();

    let mut marks = Vec::new();
    for budget in budgets() {
        let text = budget["text"].as_str().unwrap();
        let line = page
            .lines()
            .find(|l| l.starts_with(&format!("| {text} |")))
            .unwrap_or_else(|| panic!("no line for the budget {text:?} in:\n{page}"));
        let mark = line.trim_end_matches(" |").rsplit("| ").next().unwrap();
        assert!(
            ["met", "**missed**"].contains(&mark),
            "the budget {text:?} is marked {mark:?}: {line}"
        );
        marks.push(mark.to_owned());
    }
    // The sample is within some budget lines and over others, so both marks are exercised.
    assert!(marks.iter().any(|m| m == "met") && marks.iter().any(|m| m == "**missed**"));
    assert!(
        page.starts_with(BEGIN) && page.trim_end().ends_with(END),
        "{page}"
    );
    assert!(
        page.contains("](benchmarks.svg)"),
        "the chart is not linked: {page}"
    );

    // Parsed by a real XML parser: well-formed, and an SVG document.
    let svg = dir.path().join("benchmarks.svg");
    let parsed = output_within(Command::new(require("python3")).args([
        "-c",
        "import sys, xml.etree.ElementTree as E; r = E.parse(sys.argv[1]).getroot(); \
         print(r.tag, sum(1 for e in r.iter() if e.tag.endswith('rect')))",
        svg.to_str().unwrap(),
    ]));
    assert!(
        parsed.status.success(),
        "not well-formed XML: {}",
        stderr(&parsed)
    );
    let (tag, rects) = stdout(&parsed)
        .trim()
        .rsplit_once(' ')
        .map(|(t, n)| (t.to_owned(), n.parse::<usize>().unwrap()))
        .unwrap();
    assert_eq!(tag, "{http://www.w3.org/2000/svg}svg");
    assert!(rects > 10, "a bar chart has bars: {rects} rects");
    let text = std::fs::read_to_string(&svg).unwrap();
    for label in ["defender", "strace", "budget", "× native"] {
        assert!(text.contains(label), "the chart has no {label:?}");
    }
}

#[test]
fn the_generated_part_replaces_only_what_is_between_the_markers() {
    let dir = tempfile::tempdir().unwrap();
    let page = dir.path().join("benchmarks.md");
    std::fs::write(
        &page,
        format!("# Benchmarks\n\nhand-written before\n\n{BEGIN}\nold figures\n{END}\n\n## Flood\n\nhand-written after\n"),
    )
    .unwrap();
    let out = self_test(dir.path());
    assert!(out.status.success(), "{}", stderr(&out));
    let text = std::fs::read_to_string(&page).unwrap();
    assert!(
        text.starts_with(
            "# Benchmarks\n\nhand-written before\n\n<!-- bench/run: begin -->\n## Performance"
        ),
        "{text}"
    );
    assert!(
        text.ends_with(&format!("{END}\n\n## Flood\n\nhand-written after\n")),
        "{text}"
    );
    assert!(!text.contains("old figures"), "{text}");
    assert_eq!(text.matches(BEGIN).count(), 1);

    // A page without the markers is refused, untouched: nothing hand-written may be lost.
    std::fs::write(&page, "# Benchmarks\n\nno markers\n").unwrap();
    let out = self_test(dir.path());
    assert!(!out.status.success());
    assert!(stderr(&out).contains("must hold one"), "{}", stderr(&out));
    assert_eq!(
        std::fs::read_to_string(&page).unwrap(),
        "# Benchmarks\n\nno markers\n"
    );
}

#[test]
fn the_repository_page_has_one_generated_part() {
    let text = std::fs::read_to_string(repo_path("docs/benchmarks.md")).unwrap();
    assert_eq!(
        text.matches(BEGIN).count(),
        1,
        "docs/benchmarks.md needs one {BEGIN}"
    );
    assert_eq!(
        text.matches(END).count(),
        1,
        "docs/benchmarks.md needs one {END}"
    );
    assert!(text.find(BEGIN) < text.find(END));
}

/// The supervisor's log at `info`: whether it asked for the synchronous wake-up or was told not to.
fn wake_up_log(no_sync: Option<&str>) -> String {
    let mut cmd = Command::new(defender());
    cmd.args([
        "run",
        "--log-level",
        "info",
        "--audit-file",
        "/dev/null",
        "--",
    ])
    .arg(require("true"))
    .env_remove("DEFENDER_BENCH_NO_SYNC_WAKEUP");
    if let Some(value) = no_sync {
        cmd.env("DEFENDER_BENCH_NO_SYNC_WAKEUP", value);
    }
    let out = output_within(&mut cmd);
    assert!(out.status.success(), "{}", stderr(&out));
    stderr(&out)
        .lines()
        .filter(|l| l.contains("wake-up"))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn the_benchmark_switch_keeps_the_supervisor_from_asking_for_the_synchronous_wake_up() {
    let off = "defender: warn: DEFENDER_BENCH_NO_SYNC_WAKEUP is set: the synchronous wake-up is off (benchmarks only)";
    assert_eq!(wake_up_log(Some("1")), off);
    // Unset or empty (as every DEFENDER_ variable), the supervisor asks the kernel; this kernel
    // has the wake-up (6.6+), or the line says it is unavailable.
    for unset in [None, Some("")] {
        let log = wake_up_log(unset);
        assert!(
            log == "defender: info: sync wake-up (6.6): on"
                || log.contains("SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP is unavailable"),
            "{unset:?}: {log}"
        );
    }
}
