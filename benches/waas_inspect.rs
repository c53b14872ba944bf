//! The cost of inspecting one request body (docs/waas.md, "Figures"): a 64 KiB form of 16 values
//! of 4 KiB of plain words (the body bench/waas.py posts), the same words as 16 JSON strings, and
//! 64 KiB of binary labelled `application/octet-stream`, every protection on. None of them is an
//! attack, and each value is under the cap on what one value may hold (`INSPECTED_VALUE_BYTES`),
//! so every signature runs over every byte (the worst case that is not refused as too long).
//!
//! `cargo bench --bench waas_inspect` measures; under `cargo test` (no `--bench` argument) it only
//! runs each case a few times, so the suite checks that it still works without spending time.
//!
//! With `WAAS_BINARY_FILES` naming a file that lists paths (one a line), it also uploads each of
//! those files as an `application/octet-stream` body and prints how many are flagged (the false
//! positives of reading a binary body's text, docs/waas.md "Binary bodies"), per attack, and what
//! the inspection of those bodies costs per MiB. bench/binary-files lists such files.

use std::hint::black_box;
use std::time::{Duration, Instant};

use std::collections::BTreeMap;

use defender::waas::{Effect, Protections, Request, inspect};

const SIZE: usize = 64 * 1024;
/// The form's and the JSON's values: 16 of 4 KiB.
const PARTS: usize = 16;
const PART: usize = SIZE / PARTS;

/// Words as bench/waas.py writes them (`w` and a number, space-separated), to 64 KiB.
fn words() -> String {
    let mut words = String::with_capacity(SIZE + 8);
    for i in 1u32.. {
        if words.len() >= SIZE {
            break;
        }
        words.push_str(&format!("w{} ", i * 7919 % 1000));
    }
    words
}

/// Bytes from a fixed xorshift sequence: what a compressed upload looks like.
fn binary() -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..SIZE)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 24) as u8
        })
        .collect()
}

fn main() {
    let measuring = std::env::args().any(|a| a == "--bench");
    let protections = Protections::all(Effect::Prevent);
    defender::waas::warm_up();
    let text = words();
    let parts: Vec<&str> = (0..PARTS)
        .map(|i| &text[i * PART..(i + 1) * PART - 8])
        .collect();
    let form = (parts.iter().enumerate())
        .map(|(i, p)| format!("t{i:02}={}", p.replace(' ', "+")))
        .collect::<Vec<_>>()
        .join("&");
    let json = (parts.iter().enumerate())
        .map(|(i, p)| format!("\"t{i:02}\":\"{p}\""))
        .collect::<Vec<_>>()
        .join(",");
    let json = format!("{{{json}}}");
    let cases: [(&str, &str, Vec<u8>); 3] = [
        (
            "form, 16 values",
            "application/x-www-form-urlencoded",
            form.into_bytes(),
        ),
        ("JSON, 16 strings", "application/json", json.into_bytes()),
        ("binary", "application/octet-stream", binary()),
    ];
    println!("| 64 KiB body | µs per request (median of 7 runs) |");
    println!("|---|---|");
    for (name, content_type, body) in &cases {
        let request = Request {
            method: "POST",
            target: "/upload",
            headers: vec![("Content-Type", content_type.as_bytes())],
            body,
        };
        assert!(
            inspect(&request, &protections).is_empty(),
            "the {name} body is benign"
        );
        let iterations: u32 = if measuring { 200 } else { 2 };
        let mut runs: Vec<Duration> = (0..7)
            .map(|_| {
                let start = Instant::now();
                for _ in 0..iterations {
                    black_box(inspect(black_box(&request), &protections));
                }
                start.elapsed() / iterations
            })
            .collect();
        runs.sort();
        println!("| {name} | {} |", runs[3].as_micros());
    }
    if let Ok(list) = std::env::var("WAAS_BINARY_FILES") {
        binary_files(&list, &protections);
    }
}

/// Uploads each file `list` names as a binary body: flagged files per attack, and the cost.
fn binary_files(list: &str, protections: &Protections) {
    let paths = std::fs::read_to_string(list).unwrap_or_else(|e| panic!("{list}: {e}"));
    let (mut files, mut bytes, mut spent) = (0usize, 0usize, Duration::ZERO);
    let mut flagged: BTreeMap<&str, usize> = BTreeMap::new();
    let mut any = 0;
    for path in paths.lines().filter(|l| !l.is_empty()) {
        // Text files (scripts among the programs) are not binary bodies: read whole, as text.
        let control = |b: &u8| *b < 0x20 && !matches!(b, b'\t' | b'\n' | b'\r' | b'\x0c');
        let Some(body) = std::fs::read(path).ok().filter(|b| b.iter().any(control)) else {
            continue;
        };
        let request = Request {
            method: "PUT",
            target: "/upload",
            headers: vec![("Content-Type", b"application/octet-stream")],
            body: &body,
        };
        let start = Instant::now();
        let found = inspect(&request, protections);
        spent += start.elapsed();
        files += 1;
        bytes += body.len();
        any += usize::from(!found.is_empty());
        for finding in &found {
            *flagged.entry(finding.attack.as_str()).or_default() += 1;
            println!(
                "flagged: {path}: {} in {}",
                finding.attack.as_str(),
                finding.field
            );
        }
    }
    let mib = bytes as f64 / (1024.0 * 1024.0);
    println!(
        "{files} files, {mib:.1} MiB: {any} flagged ({:.2}%), {flagged:?}; {:.0} µs per MiB",
        100.0 * any as f64 / files.max(1) as f64,
        spent.as_micros() as f64 / mib.max(f64::EPSILON)
    );
}
