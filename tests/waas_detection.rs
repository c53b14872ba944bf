//! Detection rates of the WAAS inspection on public corpora: the attack requests of the OWASP
//! Core Rule Set's regression tests (tests/data/waas/crs-attacks.jsonl) per attack class, and the
//! false positives on two benign corpora: realistic requests to a shop (benign.jsonl) and the
//! false-positive tests of the same CRS suite (crs-benign.jsonl). Prints the table of
//! docs/waas.md's "Detection" section and asserts its floors.

use std::collections::BTreeMap;

use defender::waas::{Attack, Effect, Protections, Request, inspect};
use serde_json::Value;

const CLASSES: [(&str, Attack); 7] = [
    ("sqli", Attack::Sqli),
    ("xss", Attack::Xss),
    ("cmdi", Attack::Cmdi),
    ("codeInjection", Attack::CodeInjection),
    ("lfi", Attack::Lfi),
    ("shellshock", Attack::Shellshock),
    ("attackTools", Attack::AttackTools),
];

/// Floors on the detection rate (percent) of the rules at paranoia levels 1 and 2, set a few
/// points under what was measured so that a regression fails and noise does not.
const FLOORS: [(&str, f64); 7] = [
    ("sqli", 40.0),
    ("xss", 65.0),
    ("cmdi", 85.0),
    ("codeInjection", 75.0),
    ("lfi", 65.0),
    ("shellshock", 100.0),
    ("attackTools", 100.0),
];
/// The ceilings on benign requests with any finding (percent), per benign corpus: the shop's
/// requests, and the CRS false-positive tests (written to sit at the edge of a signature).
const MAX_FALSE_POSITIVES: [(&str, f64); 2] = [("benign.jsonl", 1.0), ("crs-benign.jsonl", 6.0)];

fn corpus(name: &str) -> Vec<Value> {
    let path = format!("{}/tests/data/waas/{name}", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let rows: Vec<Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{path}: {e}")))
        .collect();
    assert!(rows.len() > 100, "{path} has only {} requests", rows.len());
    rows
}

/// The attacks found in one corpus row.
fn findings(row: &Value, protections: &Protections) -> Vec<(Attack, String)> {
    let text = |key: &str| row[key].as_str().unwrap_or_default();
    let headers: Vec<(&str, &[u8])> = row["headers"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|h| {
            (
                h[0].as_str().unwrap_or_default(),
                h[1].as_str().unwrap_or_default().as_bytes(),
            )
        })
        .collect();
    let request = Request {
        method: text("method"),
        target: text("uri"),
        headers,
        body: text("data").as_bytes(),
    };
    inspect(&request, protections)
        .into_iter()
        .map(|f| (f.attack, f.field))
        .collect()
}

fn percent(part: usize, whole: usize) -> f64 {
    if whole == 0 {
        0.0
    } else {
        100.0 * part as f64 / whole as f64
    }
}

#[test]
fn detection_and_false_positive_rates() {
    let protections = Protections::all(Effect::Prevent);
    let attacks = corpus("crs-attacks.jsonl");

    // Per class and paranoia level (PL1, PL2, PL3-4): (detected, total).
    let mut rates: BTreeMap<&str, [(usize, usize); 3]> = BTreeMap::new();
    let mut missed: BTreeMap<&str, BTreeMap<String, usize>> = BTreeMap::new();
    for row in &attacks {
        let class = row["class"].as_str().unwrap_or_default();
        let (_, attack) = CLASSES
            .iter()
            .find(|(name, _)| *name == class)
            .unwrap_or_else(|| panic!("unknown class {class}"));
        let level = (row["pl"].as_u64().unwrap_or(1).clamp(1, 3) - 1) as usize;
        let hit = findings(row, &protections).iter().any(|(a, _)| a == attack);
        let entry = &mut rates.entry(class).or_default()[level];
        entry.0 += usize::from(hit);
        entry.1 += 1;
        if !hit && level < 2 {
            let rule = row["rule"].as_str().unwrap_or_default().to_owned();
            *missed.entry(class).or_default().entry(rule).or_default() += 1;
        }
    }

    // Per benign corpus: requests flagged, per class, and the first few examples.
    let benign: Vec<(&str, Vec<Value>)> = MAX_FALSE_POSITIVES
        .iter()
        .map(|(name, _)| (*name, corpus(name)))
        .collect();
    let mut flagged = vec![0; benign.len()];
    let mut per_class_fp: BTreeMap<(usize, &str), usize> = BTreeMap::new();
    let mut examples = Vec::new();
    for (i, (name, rows)) in benign.iter().enumerate() {
        for row in rows {
            let found = findings(row, &protections);
            if !found.is_empty() {
                flagged[i] += 1;
                if examples.len() < 40 {
                    let what = (&row["rule"], &row["test"], &row["method"], &row["uri"]);
                    examples.push(format!("{name}: {found:?} in {what:?}"));
                }
            }
            for (attack, _) in &found {
                *per_class_fp.entry((i, attack.as_str())).or_default() += 1;
            }
        }
    }
    let fp_cells = |class: &str| -> String {
        let cells: Vec<String> = benign
            .iter()
            .enumerate()
            .map(|(i, (_, rows))| {
                let fp = per_class_fp.get(&(i, class)).copied().unwrap_or(0);
                format!("{fp}/{} ({:.2}%)", rows.len(), percent(fp, rows.len()))
            })
            .collect();
        cells.join(" | ")
    };

    println!(
        "| class | CRS PL1 | CRS PL2 | CRS PL3-4 | shop requests flagged as it | CRS false-positive tests flagged as it |"
    );
    println!("| --- | --- | --- | --- | --- | --- |");
    let cell =
        |(hit, total): (usize, usize)| format!("{hit}/{total} ({:.1}%)", percent(hit, total));
    for (class, _) in CLASSES {
        let [pl1, pl2, pl34] = rates.get(class).copied().unwrap_or_default();
        println!(
            "| {class} | {} | {} | {} | {} |",
            cell(pl1),
            cell(pl2),
            cell(pl34),
            fp_cells(class)
        );
    }
    println!(
        "| malformedRequest | - | - | - | {} |",
        fp_cells("malformedRequest")
    );
    let any: Vec<String> = benign
        .iter()
        .zip(&flagged)
        .map(|((_, rows), n)| format!("{n}/{} ({:.2}%)", rows.len(), percent(*n, rows.len())))
        .collect();
    println!("| any request | | | | {} |", any.join(" | "));
    for (class, rules) in &missed {
        let rules: Vec<String> = rules
            .iter()
            .map(|(rule, n)| format!("{rule}:{n}"))
            .collect();
        println!(
            "missed at PL1-2, {class}, per CRS rule: {}",
            rules.join(" ")
        );
    }
    for example in &examples {
        println!("benign flagged: {example}");
    }

    for (class, floor) in FLOORS {
        let [pl1, pl2, _] = rates.get(class).copied().unwrap_or_default();
        let (hit, total) = (pl1.0 + pl2.0, pl1.1 + pl2.1);
        assert!(total > 0, "no {class} attacks in the corpus");
        assert!(
            percent(hit, total) >= floor,
            "{class}: {hit}/{total} detected at PL1-2, under the floor of {floor}%"
        );
    }
    for (((name, rows), n), (_, ceiling)) in benign.iter().zip(&flagged).zip(MAX_FALSE_POSITIVES) {
        assert!(
            percent(*n, rows.len()) <= ceiling,
            "{name}: {n}/{} benign requests flagged, over {ceiling}%",
            rows.len()
        );
    }
}
