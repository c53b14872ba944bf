//! The console's JSON API (`/api/v1`) against the real `defender-console` process on a local
//! port: tokens (401, 403), the policy with its ETag and long poll, validation with the
//! defender's own code (custom rules' script errors with their position), audit batches
//! (idempotent, atomic), queries (by custom rule and ECS identity too), CSV, heartbeats.

mod common;

use std::os::unix::fs::PermissionsExt;

use common::console::{ADMIN, AUDITS, Console, DEFENDER, POLICY};
use common::{HANG_GUARD, wait_until};
use serde_json::{Value, json};

const NO_MKDIR: &str =
    r#"{"rules": [{"name": "no mkdir", "processes": {"effect": "prevent", "deny": ["mkdir"]}}]}"#;

fn event(id: &str, time: &str, kind: &str, container: &str, effect: &str) -> Value {
    json!({
        "id": id, "time": time, "type": kind, "effect": effect, "rule": "r1",
        "attack": format!("{kind}ExplicitlyDenied"), "container": container, "image": "img:1",
        "pid": 42, "process": "/usr/bin/mkdir", "cmdline": "mkdir /tmp/x", "parent": "/bin/sh",
        "message": format!("event {id}"), "count": 1
    })
}

/// (method, path, token, body, status expected)
type Case<'a> = (&'a str, String, Option<&'a str>, Option<&'a str>, u16);

fn post(c: &Console, events: &[Value]) -> common::console::Answer {
    let body = Value::Array(events.to_vec()).to_string();
    c.call("POST", AUDITS, Some(DEFENDER), &[], Some(&body))
}

fn ids(events: &[Value]) -> Vec<&str> {
    events.iter().map(|e| e["id"].as_str().unwrap()).collect()
}

#[test]
fn tokens_decide_who_may_do_what() {
    let w = common::World::new();
    let c = Console::start(&w.path("data"));
    let batch = json!([event(
        "t1",
        "2026-11-29T10:00:00Z",
        "process",
        "web",
        "prevent"
    )])
    .to_string();
    let beat = r#"{"id": "d1", "container": "web", "image": "img", "version": "0.1.0"}"#;
    let cases: &[Case] = &[
        ("GET", POLICY.into(), None, None, 401),
        ("GET", POLICY.into(), Some("wrong"), None, 401),
        ("GET", POLICY.into(), Some(DEFENDER), None, 200),
        ("GET", POLICY.into(), Some(ADMIN), None, 200),
        ("PUT", POLICY.into(), None, Some(NO_MKDIR), 401),
        ("PUT", POLICY.into(), Some(DEFENDER), Some(NO_MKDIR), 403),
        ("POST", AUDITS.into(), None, Some(&batch), 401),
        ("POST", AUDITS.into(), Some(DEFENDER), Some(&batch), 200),
        ("GET", AUDITS.into(), Some("wrong"), None, 401),
        ("GET", AUDITS.into(), Some(DEFENDER), None, 403),
        ("GET", AUDITS.into(), Some(ADMIN), None, 200),
        (
            "GET",
            format!("{AUDITS}/download"),
            Some(DEFENDER),
            None,
            403,
        ),
        ("GET", format!("{AUDITS}/download"), Some(ADMIN), None, 200),
        (
            "POST",
            "/api/v1/defenders/heartbeat".into(),
            None,
            Some(beat),
            401,
        ),
        (
            "POST",
            "/api/v1/defenders/heartbeat".into(),
            Some(DEFENDER),
            Some(beat),
            204,
        ),
        ("GET", "/api/v1/defenders".into(), Some(DEFENDER), None, 403),
        ("GET", "/api/v1/defenders".into(), Some(ADMIN), None, 200),
        ("PUT", POLICY.into(), Some(ADMIN), Some(NO_MKDIR), 200),
    ];
    for (method, path, token, body, status) in cases {
        let a = c.call(method, path, *token, &[], *body);
        assert_eq!(
            a.status, *status,
            "{method} {path} with {token:?}: {}",
            a.body
        );
        if *status == 401 {
            assert!(a.json()["error"].as_str().unwrap().contains("token"));
        }
        // A refusal may leave the request's body unread, and then the console closes the
        // connection: it says so, so that the client sends its next request on a new one.
        let refused = (400..500).contains(status);
        assert_eq!(
            a.connection.as_deref() == Some("close"),
            refused,
            "{method} {path}: Connection {:?}",
            a.connection
        );
    }
    // The defender's attempt changed nothing; the admin's is revision 2 (1 is the default).
    let a = c.call("GET", POLICY, Some(DEFENDER), &[], None);
    assert_eq!(a.etag.as_deref(), Some("\"2\""));
    // Pages for people: without the session cookie, the login page.
    let a = c.call("GET", "/policy", None, &[], None);
    assert!(a.body.contains("id=\"password\""), "{}", a.body);
}

#[test]
fn generated_tokens_are_private_printed_and_kept() {
    let w = common::World::new();
    let data = w.path("data");
    let mut c = Console::start_with(&data, "127.0.0.1:0", &[]);
    let mut tokens = Vec::new();
    for name in ["admin.token", "defender.token"] {
        let path = data.join(name);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
        assert!(
            c.log().contains(&format!("kept in {}", path.display())),
            "{}",
            c.log()
        );
        tokens.push(std::fs::read_to_string(&path).unwrap().trim().to_owned());
    }
    assert_ne!(tokens[0], tokens[1]);
    assert_eq!(tokens[0].len(), 64);
    let status = |c: &Console, token: &str| c.call("GET", AUDITS, Some(token), &[], None).status;
    assert_eq!(status(&c, &tokens[0]), 200);
    assert_eq!(status(&c, &tokens[1]), 403);
    // A restart keeps them (and says where they came from).
    c.restart();
    assert_eq!(status(&c, &tokens[0]), 200);
    assert!(c.log().contains("admin token from"), "{}", c.log());
}

#[test]
fn the_policy_has_an_etag_and_can_be_long_polled() {
    let w = common::World::new();
    let c = Console::start(&w.path("data"));
    let first = c.call("GET", POLICY, Some(DEFENDER), &[], None);
    assert_eq!((first.status, first.etag.as_deref()), (200, Some("\"1\"")));
    assert!(
        first
            .content_type
            .as_deref()
            .unwrap()
            .starts_with("application/json")
    );
    // A new console serves the defender's compiled-in default.
    let default = first.json();
    assert_eq!(default["rules"][0]["processes"]["effect"], "alert");

    let unchanged = |wait: &str| {
        c.call(
            "GET",
            &format!("{POLICY}{wait}"),
            Some(DEFENDER),
            &[("If-None-Match", "\"1\"")],
            None,
        )
    };
    let a = unchanged("");
    assert_eq!((a.status, a.etag.as_deref()), (304, Some("\"1\"")));
    let a = unchanged("?wait=1");
    assert_eq!(a.status, 304);

    // A poll waiting for a change gets the new revision as soon as it is PUT: the console says
    // when the poll waits (subscribed to changes), and it is still unanswered when the PUT comes.
    std::thread::scope(|s| {
        let poll = s.spawn(|| unchanged("?wait=60"));
        let waiting = "a policy poll waits up to 60 s for a change from revision 1";
        assert!(
            wait_until(HANG_GUARD, || c.log().contains(waiting)),
            "the poll never waited: {}",
            c.log()
        );
        assert!(!poll.is_finished(), "the poll was answered before the PUT");
        assert_eq!(c.put_policy(NO_MKDIR), 2);
        let a = poll.join().unwrap();
        assert_eq!((a.status, a.etag.as_deref()), (200, Some("\"2\"")));
        assert_eq!(a.json()["rules"][0]["name"], "no mkdir");
    });
    // The same document again is no new revision.
    let a = c.call("PUT", POLICY, Some(ADMIN), &[], Some(NO_MKDIR));
    assert_eq!(a.json(), json!({"revision": 2, "changed": false}));
}

#[test]
fn an_invalid_policy_gets_field_errors_and_changes_nothing() {
    let w = common::World::new();
    let c = Console::start(&w.path("data"));
    c.put_policy(NO_MKDIR);
    let before = c.call("GET", POLICY, Some(ADMIN), &[], None);

    let bad_port = r#"{"rules": [
        {"name": "web", "network": {"effect": "prevent", "outboundPorts": {"allow": ["70000"]}}},
        {"name": "db", "dns": {"effect": "deny"}}
    ]}"#;
    let a = c.call("PUT", POLICY, Some(ADMIN), &[], Some(bad_port));
    assert_eq!(a.status, 400, "{}", a.body);
    let problems = a.json()["problems"].as_array().unwrap().clone();
    assert_eq!(problems.len(), 2, "{problems:?}");
    assert_eq!(problems[0]["list"], "rules");
    assert_eq!(problems[0]["rule"], 0);
    assert_eq!(problems[0]["name"], "web");
    assert_eq!(problems[0]["field"], "network.outboundPorts.allow[0]");
    assert_eq!(
        problems[0]["text"],
        r#"rules[0] "web": network.outboundPorts.allow[0]: "70000" is not a port"#
    );
    assert_eq!(
        (&problems[1]["rule"], &problems[1]["field"]),
        (&json!(1), &json!("dns.effect"))
    );

    let a = c.call("PUT", POLICY, Some(ADMIN), &[], Some("{\"rules\": [\n"));
    assert_eq!(a.status, 400);
    assert!(
        a.json()["problems"][0]["line"].as_u64().is_some(),
        "{}",
        a.body
    );
    assert_eq!(a.json()["problems"][0]["list"], Value::Null, "{}", a.body);
    let a = c.call(
        "PUT",
        POLICY,
        Some(ADMIN),
        &[],
        Some(r#"{"rules": [], "rulez": 1}"#),
    );
    assert_eq!(a.status, 400);
    assert!(a.body.contains("rulez"), "{}", a.body);

    let after = c.call("GET", POLICY, Some(ADMIN), &[], None);
    assert_eq!((after.etag, after.body), (before.etag, before.body));
}

#[test]
fn custom_rule_problems_name_their_list_and_the_script_position() {
    let w = common::World::new();
    let c = Console::start(&w.path("data"));
    let before = c.call("GET", POLICY, Some(ADMIN), &[], None);
    let bad = json!({
        "customRules": [
            {"name": "ssh out", "type": "network-outgoing", "script": "net.outgoing_port = 22"},
            {"name": "nc", "type": "processes",
             "script": "proc.name = \"nc\"\n  and proc.cmdline contains"}
        ],
        "rules": [{"name": "web", "customRules": [{"name": "ssh out", "effect": "prevent"},
                                                  {"name": "missing", "effect": "alert"}]}]
    })
    .to_string();
    let a = c.call("PUT", POLICY, Some(ADMIN), &[], Some(&bad));
    assert_eq!(a.status, 400, "{}", a.body);
    let problems = a.json()["problems"].as_array().unwrap().clone();
    assert_eq!(problems.len(), 2, "{problems:?}");
    let script = &problems[0];
    assert_eq!(
        (&script["list"], &script["rule"], &script["name"]),
        (&json!("customRules"), &json!(1), &json!("nc"))
    );
    // Line 2, column 28: after `contains`, counted in the script itself.
    assert_eq!(script["field"], "script:2:28");
    assert_eq!(
        script["text"],
        r#"customRules[1] "nc": script:2:28: expected a value after "contains", found the end of the script"#
    );
    let reference = &problems[1];
    assert_eq!(
        (&reference["list"], &reference["rule"], &reference["field"]),
        (&json!("rules"), &json!(0), &json!("customRules[1].name"))
    );
    assert!(
        reference["message"]
            .as_str()
            .unwrap()
            .contains(r#"no custom rule named "missing""#),
        "{reference}"
    );
    let after = c.call("GET", POLICY, Some(ADMIN), &[], None);
    assert_eq!((after.etag, after.body), (before.etag, before.body));
}

#[test]
fn audits_keep_their_custom_rule_filter_and_export_it() {
    let w = common::World::new();
    let c = Console::start(&w.path("data"));
    let custom = |id: &str, time: &str, kind: &str, name: &str| {
        let mut e = event(id, time, kind, "web", "block");
        e["attack"] = "customRule".into();
        e["customRule"] = name.into();
        e
    };
    let events = [
        event("s1", "2026-11-29T10:00:01Z", "process", "web", "prevent"),
        custom("c1", "2026-11-29T10:00:02Z", "process", "netcat listener"),
        custom("c2", "2026-11-29T10:00:03Z", "network", "ssh, out"),
        custom("c3", "2026-11-29T10:00:04Z", "process", "ssh, out"),
    ];
    assert_eq!(post(&c, &events).status, 200);
    // Sent and served back field for field, customRule included (absent where it was).
    let all = c.audits("");
    assert_eq!(ids(&all), ["c3", "c2", "c1", "s1"]);
    assert_eq!(all[2]["customRule"], "netcat listener");
    assert_eq!(all[2]["attack"], "customRule");
    assert!(all[3].get("customRule").is_none(), "{}", all[3]);

    let cases: &[(&str, &[&str])] = &[
        ("customRule=netcat+listener", &["c1"]),
        ("customRule=ssh%2C+out", &["c3", "c2"]),
        ("customRule=ssh%2C+out&type=network", &["c2"]),
        ("customRule=netcat", &[]),
        ("customRule=", &["c3", "c2", "c1", "s1"]),
    ];
    for (query, want) in cases {
        assert_eq!(ids(&c.audits(query)), *want, "{query}");
    }

    let a = c.call(
        "GET",
        &format!("{AUDITS}/download?customRule=ssh%2C+out"),
        Some(ADMIN),
        &[],
        None,
    );
    assert_eq!(a.status, 200);
    let lines: Vec<&str> = a.body.lines().collect();
    assert_eq!(lines.len(), 3, "{}", a.body);
    assert!(
        lines[0].starts_with("id,time,type,effect,rule,attack,customRule,container,image,"),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].starts_with(
            r#"c3,2026-11-29T10:00:04.000000Z,process,block,r1,customRule,"ssh, out",web,img:1,"#
        ),
        "{}",
        lines[1]
    );
}

#[test]
fn audits_keep_their_ecs_identity_filter_on_it_and_export_it() {
    let w = common::World::new();
    let c = Console::start(&w.path("data"));
    let ecs = |id: &str, time: &str, cluster: &str, family: &str, service: Option<&str>| {
        let mut e = event(id, time, "process", "app", "prevent");
        e["task"] = format!("arn:aws:ecs:us-west-2:111122223333:task/{cluster}/{id}").into();
        e["cluster"] = cluster.into();
        e["family"] = family.into();
        if let Some(service) = service {
            e["service"] = service.into();
        }
        e
    };
    let events = [
        event("plain", "2026-11-29T10:00:01Z", "process", "web", "prevent"),
        ecs(
            "o1",
            "2026-11-29T10:00:02Z",
            "prod",
            "orders",
            Some("orders-api"),
        ),
        ecs(
            "o2",
            "2026-11-29T10:00:03Z",
            "dev",
            "orders",
            Some("orders, web"),
        ),
        ecs("b1", "2026-11-29T10:00:04Z", "prod", "batch", None),
    ];
    assert_eq!(post(&c, &events).status, 200);
    // Served back field for field; absent where the defender did not know them.
    let all = c.audits("");
    assert_eq!(ids(&all), ["b1", "o2", "o1", "plain"]);
    assert_eq!(
        (&all[2]["cluster"], &all[2]["family"], &all[2]["service"]),
        (&json!("prod"), &json!("orders"), &json!("orders-api"))
    );
    assert!(all[0].get("service").is_none(), "{}", all[0]);
    for field in ["cluster", "family", "service"] {
        assert!(all[3].get(field).is_none(), "{}", all[3]);
    }

    let cases: &[(&str, &[&str])] = &[
        ("cluster=prod", &["b1", "o1"]),
        ("family=orders", &["o2", "o1"]),
        ("service=orders%2C+web", &["o2"]),
        ("cluster=prod&family=orders", &["o1"]),
        ("cluster=prod&service=orders-api&container=app", &["o1"]),
        ("service=orders", &[]),
        ("cluster=&family=&service=", &["b1", "o2", "o1", "plain"]),
    ];
    for (query, want) in cases {
        assert_eq!(ids(&c.audits(query)), *want, "{query}");
    }

    // The CSV: the identity after the task.
    let a = c.call(
        "GET",
        &format!("{AUDITS}/download?family=orders"),
        Some(ADMIN),
        &[],
        None,
    );
    assert_eq!(a.status, 200);
    let lines: Vec<&str> = a.body.lines().collect();
    assert_eq!(lines.len(), 3, "{}", a.body);
    assert!(
        lines[0].starts_with(
            "id,time,type,effect,rule,attack,customRule,container,image,task,cluster,family,service,pid,"
        ),
        "{}",
        lines[0]
    );
    assert!(
        lines[1].contains(
            r#",app,img:1,arn:aws:ecs:us-west-2:111122223333:task/dev/o2,dev,orders,"orders, web",42,"#
        ),
        "{}",
        lines[1]
    );
}

#[test]
fn audit_batches_are_idempotent_and_all_or_nothing() {
    let w = common::World::new();
    let c = Console::start(&w.path("data"));
    let t = "2026-11-29T10:00:00.000001Z";
    let batch: Vec<Value> = (1..=3)
        .map(|i| event(&format!("a{i}"), t, "process", "web", "prevent"))
        .collect();
    let a = post(&c, &batch);
    assert_eq!(
        (a.status, a.json()),
        (200, json!({"received": 3, "stored": 3}))
    );
    // Delivered again (the defender never heard the answer): nothing new.
    let a = post(&c, &batch);
    assert_eq!(a.json(), json!({"received": 3, "stored": 0}));
    assert_eq!(c.audits("limit=1000").len(), 3);

    // One malformed event: the whole batch is refused, the good ones with it.
    let mut bad = event("b2", t, "process", "web", "prevent");
    bad["time"] = "last tuesday".into();
    let mixed = [
        event("b1", t, "process", "web", "prevent"),
        bad,
        event("b3", t, "dns", "web", "alert"),
    ];
    let a = post(&c, &mixed);
    assert_eq!(a.status, 400);
    assert!(
        a.json()["error"].as_str().unwrap().starts_with("[1].time:"),
        "{}",
        a.body
    );
    for body in ["{\"id\": 1}", "[{\"id\": \"x\"}]", "not json", "[1, 2]"] {
        let a = c.call("POST", AUDITS, Some(DEFENDER), &[], Some(body));
        assert_eq!(a.status, 400, "{body}: {}", a.body);
    }
    let mut unknown = event("b4", t, "process", "web", "prevent");
    unknown["effect"] = "deny".into();
    assert_eq!(post(&c, &[unknown]).status, 400);
    assert_eq!(
        ids(&c.audits("limit=1000")).len(),
        3,
        "nothing of the refused batches"
    );
}

#[test]
fn audits_are_filtered_newest_first_and_downloadable() {
    let w = common::World::new();
    let c = Console::start(&w.path("data"));
    let at = |s: u32| format!("2026-11-29T10:00:{s:02}Z");
    let events = [
        event("e1", &at(1), "process", "web", "prevent"),
        event("e2", &at(2), "dns", "web", "alert"),
        event("e3", &at(3), "process", "db", "block"),
        event("e4", &at(4), "network", "web", "prevent"),
        event("e5", &at(5), "defender", "db", "alert"),
    ];
    assert_eq!(post(&c, &events).status, 200);
    let all = c.audits("");
    assert_eq!(ids(&all), ["e5", "e4", "e3", "e2", "e1"]);
    // Every field of docs/audit.md comes back as sent (times in the audit format), with the
    // name of the token that delivered it.
    let mut want = events[0].clone();
    want["time"] = "2026-11-29T10:00:01.000000Z".into();
    want["source"] = "defender".into();
    assert_eq!(all[4], want);

    let cases: &[(&str, &[&str])] = &[
        ("container=web", &["e4", "e2", "e1"]),
        ("type=process", &["e3", "e1"]),
        ("effect=alert", &["e5", "e2"]),
        ("image=img:1&rule=r1&type=network", &["e4"]),
        ("container=nobody", &[]),
        (
            "since=2026-11-29T10:00:02Z&until=2026-11-29T10:00:04Z",
            &["e3", "e2"],
        ),
        ("limit=2", &["e5", "e4"]),
        ("limit=2&offset=2", &["e3", "e2"]),
        ("type=&container=", &["e5", "e4", "e3", "e2", "e1"]),
    ];
    for (query, want) in cases {
        assert_eq!(ids(&c.audits(query)), *want, "{query}");
    }
    for bad in ["type=virus", "effect=deny", "since=yesterday", "limit=x"] {
        let a = c.call("GET", &format!("{AUDITS}?{bad}"), Some(ADMIN), &[], None);
        assert_eq!(a.status, 400, "{bad}: {}", a.body);
    }

    let a = c.call(
        "GET",
        &format!("{AUDITS}/download?container=web"),
        Some(ADMIN),
        &[],
        None,
    );
    assert_eq!(a.status, 200);
    assert!(a.content_type.unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = a.body.lines().collect();
    assert_eq!(lines.len(), 4, "{}", a.body);
    assert!(
        lines[0].starts_with("id,time,type,effect,rule,attack,customRule,container,image,task,")
    );
    assert!(
        lines[1].starts_with("e4,2026-11-29T10:00:04.000000Z,network,prevent,r1,"),
        "{}",
        lines[1]
    );
}

#[test]
fn heartbeats_show_which_defenders_run_which_revision() {
    let w = common::World::new();
    let c = Console::start(&w.path("data"));
    let beat = |id: &str, revision: &str| {
        let mut body = json!({"id": id, "container": "web", "image": "img:1", "task": "arn:task/1",
                              "version": "0.1.0", "revision": revision});
        if id == "d2" {
            body["cluster"] = "prod".into();
            body["service"] = "orders-api".into();
        }
        c.call(
            "POST",
            "/api/v1/defenders/heartbeat",
            Some(DEFENDER),
            &[],
            Some(&body.to_string()),
        )
    };
    assert_eq!(beat("d1", "1").status, 204);
    assert_eq!(beat("d2", "1").status, 204);
    c.put_policy(NO_MKDIR);
    assert_eq!(beat("d2", "2").status, 204);
    let bad = c.call(
        "POST",
        "/api/v1/defenders/heartbeat",
        Some(DEFENDER),
        &[],
        Some("{}"),
    );
    assert_eq!(bad.status, 400);

    let a = c.call("GET", "/api/v1/defenders", Some(ADMIN), &[], None);
    let list = a.json().as_array().unwrap().clone();
    assert_eq!(list.len(), 2, "{list:?}");
    let d2 = list.iter().find(|d| d["id"] == "d2").unwrap();
    let d1 = list.iter().find(|d| d["id"] == "d1").unwrap();
    assert_eq!(
        (&d2["revision"], &d2["current"], &d2["connected"]),
        (&json!("2"), &json!(true), &json!(true))
    );
    assert_eq!(
        (&d1["revision"], &d1["current"]),
        (&json!("1"), &json!(false))
    );
    assert_eq!(d1["task"], "arn:task/1");
    // The ECS identity where the defender knows it, absent otherwise.
    assert_eq!(
        (&d2["cluster"], &d2["service"]),
        (&json!("prod"), &json!("orders-api"))
    );
    assert!(
        d2.get("family").is_none() && d1.get("cluster").is_none(),
        "{list:?}"
    );
    assert!(d1["lastSeen"].as_str().unwrap().ends_with('Z'));
}
