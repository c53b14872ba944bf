#!/usr/bin/env python3
"""Extracts the attack requests of the OWASP Core Rule Set's regression tests as data, or with
--benign its false-positive tests.

Usage: extract-crs.py CRS_GIT_DIR > crs-attacks.jsonl
       extract-crs.py --benign CRS_GIT_DIR > crs-benign.jsonl

Reads tests/regression/tests/REQUEST-9xx-*/<rule>.yaml and rules/*.conf of a CRS checkout (a
bare git directory: read with `git show`), keeps each test stage whose `expect_ids` names its own
rule (a request the rule must flag), and writes one JSON object a line:
{"class", "rule", "test", "pl", "method", "uri", "headers": [[name, value]], "data"}.
`class` is our attack class, from the rule file's family; `pl` the rule's paranoia level.
Stages given only as `encoded_request` (raw bytes) are left out.

--benign keeps instead the stages that expect no rule at all to fire but assert that their own
rule does not (`no_expect_ids`), in the tests whose description says they are a false-positive
or negative test (BENIGN_DESC), across every REQUEST-9xx family, less NOT_BENIGN: negative tests
whose request is an attack that another rule (or another paranoia level) is meant to catch. Each
row is {"class": "benign", "rule", "test", "desc", "method", "uri", "headers", "data"}.
"""
import json, re, subprocess, sys, yaml

CLASSES = {
    "913": "attackTools", "930": "lfi", "932": "cmdi", "933": "codeInjection",
    "934": "codeInjection", "941": "xss", "942": "sqli", "944": "codeInjection",
}
# 932 holds the Shellshock rules next to the command injection ones.
SHELLSHOCK_RULES = {"932170", "932171"}
# Rules of those families that are not one of our classes: SSRF, ORM operator injection, Node.js
# DoS, SMTP/IMAP/POP3 command injection, restricted file names and script file uploads.
LEFT_OUT = {"930130", "930140", "932180", "932300", "932301", "932310", "932311", "932320",
            "932321", "933110", "933111", "934110", "934120", "934160", "934190", "934210",
            "934220", "944140"}

BENIGN_DESC = re.compile(
    r"false.?positive|\bfp\b|negative|should ?n[o']t|must not|do(?:es)? ?n[o']t|not match"
    r"|no match|legit|benign|valid|allowed|natural|english|sentence|normal|not trigger|not block",
    re.I)
# Negative tests that are attacks all the same (another rule, or another paranoia level, is
# meant to flag them), by rule and test id; found by reading each flagged request.
NOT_BENIGN = {
    ("932207", 3), ("932230", 18), ("932230", 19), ("932230", 20), ("932230", 21),
    ("932230", 22), ("932230", 23), ("932236", 6), ("932236", 9), ("932250", 1), ("932260", 17),
    ("933100", 81), ("942160", 12), ("942310", 1), ("942340", 10), ("942360", 30),
    ("942360", 31), ("942520", 17), ("942521", 15), ("942522", 5),
}

def git(repo, *args):
    return subprocess.run(["git", "--git-dir", repo, *args], check=True,
                          capture_output=True).stdout.decode("utf-8", "surrogateescape")

def main():
    benign = sys.argv[1] == "--benign"
    repo = sys.argv[-1]
    levels = {}
    for conf in git(repo, "ls-tree", "--name-only", "HEAD", "rules/").split():
        if conf.endswith(".conf"):
            for chunk in git(repo, "show", "HEAD:" + conf).split("\nSecRule")[1:]:
                rule = re.search(r"id:(\d+)", chunk)
                level = re.search(r"paranoia-level/(\d)", chunk)
                if rule and level:
                    levels[rule.group(1)] = int(level.group(1))
    files = git(repo, "ls-tree", "-r", "--name-only", "HEAD", "tests/regression/tests").split()
    for path in sorted(files):
        m = re.match(r"tests/regression/tests/REQUEST-(\d{3})-[^/]+/(\d+)\.yaml$", path)
        if not m or (not benign and (m.group(1) not in CLASSES or m.group(2) in LEFT_OUT)):
            continue
        family, rule = m.groups()
        cls = "benign" if benign else "shellshock" if rule in SHELLSHOCK_RULES else CLASSES[family]
        doc = yaml.safe_load(git(repo, "show", "HEAD:" + path)) or {}
        for test in doc.get("tests") or []:
            desc = str(test.get("desc") or "").strip()
            for stage in test.get("stages") or []:
                stage = stage.get("stage", stage)
                inp, out = stage.get("input") or {}, stage.get("output") or {}
                log = out.get("log") or {}
                expect = log.get("expect_ids") or out.get("log_contains") or []
                if "encoded_request" in inp:
                    continue
                if benign:
                    if (expect or out.get("status") or not log.get("no_expect_ids")
                            or not BENIGN_DESC.search(desc)
                            or (rule, test.get("test_id")) in NOT_BENIGN):
                        continue
                elif int(rule) not in expect and f"id \"{rule}\"" not in str(expect):
                    continue
                headers = [[str(k), str(v)] for k, v in (inp.get("headers") or {}).items()]
                data = inp.get("data")
                if isinstance(data, list):
                    data = "\r\n".join(str(line) for line in data)
                row = {"class": cls, "rule": rule, "test": test.get("test_id")}
                row.update({"desc": desc.splitlines()[0][:100]} if benign
                           else {"pl": levels.get(rule, 0)})
                print(json.dumps({
                    **row, "method": inp.get("method", "GET"),
                    "uri": str(inp.get("uri", "/")), "headers": headers,
                    "data": "" if data is None else str(data),
                }, ensure_ascii=False))

main()
