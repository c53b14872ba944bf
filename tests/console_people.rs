//! People in the console, against the real `defender-console` process: each role's allowed and
//! refused calls (the tokens given by flags, named tokens, sessions), named tokens (shown once,
//! revoked at once, last use recorded), defender tokens scoped by collections, logins with
//! passwords, sessions (idle expiry, logout, CSRF), throttled logins, the activity log, and a
//! database in which no password, token or session id can be found.

mod common;

use common::console::{ADMIN, AUDITS, Console, DEFENDER, POLICY};
use common::{HANG_GUARD, World, wait_until};
use serde_json::{Value, json};

const USERS: &str = "/api/v1/users";
const TOKENS: &str = "/api/v1/tokens";
const ACTIVITY: &str = "/api/v1/activity";
const HEARTBEAT: &str = "/api/v1/defenders/heartbeat";

const NO_MKDIR: &str =
    r#"{"rules": [{"name": "no mkdir", "processes": {"effect": "prevent", "deny": ["mkdir"]}}]}"#;
const NO_TOUCH: &str =
    r#"{"rules": [{"name": "no touch", "processes": {"effect": "prevent", "deny": ["touch"]}}]}"#;

fn event(id: &str, container: &str) -> Value {
    json!({
        "id": id, "time": "2026-11-29T10:00:00Z", "type": "process", "effect": "prevent",
        "rule": "r1", "attack": "processExplicitlyDenied", "container": container,
        "image": "img:1", "pid": 42, "process": "/usr/bin/mkdir", "message": "m", "count": 1
    })
}

fn beat(id: &str, container: &str) -> String {
    json!({"id": id, "container": container, "image": "img:1", "version": "0.1.0"}).to_string()
}

/// A named token made by the admin: its secret.
fn token(c: &Console, name: &str, role: &str, collections: Option<Value>) -> String {
    let mut body = json!({ "name": name, "role": role });
    if let Some(col) = collections {
        body["collections"] = col;
    }
    let a = c.call("POST", TOKENS, Some(ADMIN), &[], Some(&body.to_string()));
    assert_eq!(a.status, 201, "token {name}: {}", a.body);
    let answer = a.json();
    assert_eq!(answer["name"], name);
    answer["token"].as_str().unwrap().to_owned()
}

fn user(c: &Console, name: &str, password: &str, role: &str) {
    let body = json!({ "username": name, "password": password, "role": role }).to_string();
    let a = c.call("POST", USERS, Some(ADMIN), &[], Some(&body));
    assert_eq!(a.status, 201, "user {name}: {}", a.body);
}

/// The CSRF token the page's forms carry.
fn csrf(page: &str) -> String {
    let at = page
        .find(r#"name="csrf" value=""#)
        .unwrap_or_else(|| panic!("no CSRF field in {page}"));
    let rest = &page[at + r#"name="csrf" value=""#.len()..];
    rest[..rest.find('"').unwrap()].to_owned()
}

fn revision(c: &Console) -> String {
    c.call("GET", POLICY, Some(ADMIN), &[], None).etag.unwrap()
}

fn audit_ids(c: &Console) -> Vec<String> {
    c.audits("limit=1000")
        .iter()
        .map(|e| e["id"].as_str().unwrap().to_owned())
        .collect()
}

fn activity(c: &Console, query: &str) -> Vec<Value> {
    let a = c.call(
        "GET",
        &format!("{ACTIVITY}?{query}"),
        Some(ADMIN),
        &[],
        None,
    );
    assert_eq!(a.status, 200, "{}", a.body);
    a.json().as_array().unwrap().clone()
}

#[test]
fn each_role_may_do_what_the_table_says_and_nothing_more() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    let named = [
        token(&c, "ci admin", "admin", None),
        token(&c, "ci operator", "operator", None),
        token(&c, "ci auditor", "auditor", None),
        token(&c, "orders defender", "defender", None),
    ];
    // Who calls: no token, a wrong one, the flag tokens, then a named token of each role.
    let callers: Vec<(&str, Option<&str>)> = vec![
        ("nobody", None),
        ("wrong", Some("wrong-token")),
        ("--admin-token", Some(ADMIN)),
        ("--defender-token", Some(DEFENDER)),
        ("named admin", Some(&named[0])),
        ("named operator", Some(&named[1])),
        ("named auditor", Some(&named[2])),
        ("named defender", Some(&named[3])),
    ];
    let batch = json!([event("e-CALLER", "web")]).to_string();
    let user =
        json!({"username": "u-CALLER", "password": "long enough password", "role": "auditor"})
            .to_string();
    let new_token = json!({"name": "t-CALLER", "role": "defender"}).to_string();
    // (method, path, body, expected status per caller in the order above); `CALLER` in a body
    // is replaced by the caller's index, so that each creation is new.
    let table: &[(&str, &str, Option<&str>, [u16; 8])] = &[
        (
            "GET",
            POLICY,
            None,
            [401, 401, 200, 200, 200, 200, 200, 200],
        ),
        (
            "PUT",
            POLICY,
            Some(NO_MKDIR),
            [401, 401, 200, 403, 200, 200, 403, 403],
        ),
        (
            "POST",
            AUDITS,
            Some(&batch),
            [401, 401, 403, 200, 403, 403, 403, 200],
        ),
        (
            "GET",
            AUDITS,
            None,
            [401, 401, 200, 403, 200, 200, 200, 403],
        ),
        (
            "POST",
            HEARTBEAT,
            Some(&beat("b-CALLER", "web")),
            [401, 401, 403, 204, 403, 403, 403, 204],
        ),
        (
            "GET",
            "/api/v1/defenders",
            None,
            [401, 401, 200, 403, 200, 200, 200, 403],
        ),
        (
            "GET",
            ACTIVITY,
            None,
            [401, 401, 200, 403, 200, 200, 200, 403],
        ),
        ("GET", USERS, None, [401, 401, 200, 403, 200, 403, 403, 403]),
        (
            "POST",
            USERS,
            Some(&user),
            [401, 401, 201, 403, 201, 403, 403, 403],
        ),
        (
            "DELETE",
            "/api/v1/users/u-CALLER",
            None,
            [401, 401, 204, 403, 204, 403, 403, 403],
        ),
        (
            "GET",
            TOKENS,
            None,
            [401, 401, 200, 403, 200, 403, 403, 403],
        ),
        (
            "POST",
            TOKENS,
            Some(&new_token),
            [401, 401, 201, 403, 201, 403, 403, 403],
        ),
        (
            "DELETE",
            "/api/v1/tokens/t-CALLER",
            None,
            [401, 401, 204, 403, 204, 403, 403, 403],
        ),
    ];
    for (method, path, body, statuses) in table {
        for (i, ((who, token), want)) in callers.iter().zip(statuses).enumerate() {
            let path = path.replace("CALLER", &i.to_string());
            let body = body.map(|b| b.replace("CALLER", &i.to_string()));
            let a = c.call(method, &path, *token, &[], body.as_deref());
            assert_eq!(a.status, *want, "{method} {path} as {who}: {}", a.body);
            if a.status == 403 {
                assert!(
                    a.json()["error"]
                        .as_str()
                        .unwrap()
                        .contains("may not do this"),
                    "{}",
                    a.body
                );
            }
        }
    }
    // The refused PUTs changed nothing; the first allowed one made revision 2, the others sent
    // the same document again.
    assert_eq!(revision(&c), "\"2\"");
    // The audits stored: the two defenders' only, each naming its token.
    let stored = c.audits("limit=100");
    let sources: Vec<(&str, &str)> = stored
        .iter()
        .map(|e| (e["id"].as_str().unwrap(), e["source"].as_str().unwrap()))
        .collect();
    assert_eq!(sources, [("e-7", "orders defender"), ("e-3", "defender")]);
}

#[test]
fn named_tokens_are_shown_once_revoked_at_once_and_their_use_recorded() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    let secret = token(&c, "reporting", "auditor", None);
    assert_eq!(secret.len(), 64);
    let listed = |c: &Console| {
        let a = c.call("GET", TOKENS, Some(ADMIN), &[], None);
        assert!(
            !a.body.contains(&secret),
            "the list shows the token: {}",
            a.body
        );
        a.json()[0].clone()
    };
    let before = listed(&c);
    assert_eq!(
        (
            &before["name"],
            &before["role"],
            &before["lastUsed"],
            &before["revoked"]
        ),
        (
            &json!("reporting"),
            &json!("auditor"),
            &Value::Null,
            &Value::Null
        )
    );
    assert!(
        before.get("token").is_none() && before.get("hash").is_none(),
        "{before}"
    );
    assert_eq!(c.call("GET", AUDITS, Some(&secret), &[], None).status, 200);
    let used = listed(&c);
    assert!(used["lastUsed"].as_str().unwrap() >= used["created"].as_str().unwrap());

    // Revoked: refused on its very next use, listed as revoked, its name never given again.
    let a = c.call(
        "DELETE",
        &format!("{TOKENS}/reporting"),
        Some(ADMIN),
        &[],
        None,
    );
    assert_eq!(a.status, 204, "{}", a.body);
    assert_eq!(c.call("GET", AUDITS, Some(&secret), &[], None).status, 401);
    assert!(listed(&c)["revoked"].is_string());
    assert_eq!(
        c.call(
            "DELETE",
            &format!("{TOKENS}/reporting"),
            Some(ADMIN),
            &[],
            None
        )
        .status,
        404
    );
    let again = json!({"name": "reporting", "role": "auditor"}).to_string();
    assert_eq!(
        c.call("POST", TOKENS, Some(ADMIN), &[], Some(&again))
            .status,
        409
    );

    // Bad requests name what is wrong.
    for (body, want) in [
        (json!({"name": "admin", "role": "auditor"}), "reserved"),
        (
            json!({"name": "", "role": "auditor"}),
            "name: must not be empty",
        ),
        (
            json!({"name": "x", "role": "root"}),
            "role: \"root\" is not one of",
        ),
        (
            json!({"name": "x", "role": "operator", "collections": {"containers": ["a"]}}),
            "only a defender token is scoped",
        ),
        (
            json!({"name": "x", "role": "defender", "collections": {"pods": ["a"]}}),
            "collections: unknown field `pods`",
        ),
    ] {
        let a = c.call("POST", TOKENS, Some(ADMIN), &[], Some(&body.to_string()));
        assert_eq!(a.status, 400, "{body}: {}", a.body);
        assert!(
            a.json()["error"].as_str().unwrap().contains(want),
            "{body}: {}",
            a.body
        );
    }
}

#[test]
fn a_scoped_defender_token_writes_only_its_own_containers_audits_and_heartbeats() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    let orders = token(
        &c,
        "orders",
        "defender",
        Some(json!({"containers": ["orders-*"]})),
    );
    let ecs = token(
        &c,
        "ecs orders",
        "defender",
        Some(json!({"services": ["orders"]})),
    );

    let ok = json!([event("o1", "orders-api"), event("o2", "orders-worker")]).to_string();
    let a = c.call("POST", AUDITS, Some(&orders), &[], Some(&ok));
    assert_eq!(a.status, 200, "{}", a.body);
    // One event of another container in the batch: all refused, the offender named.
    let mixed = json!([event("o3", "orders-api"), event("b1", "billing")]).to_string();
    let a = c.call("POST", AUDITS, Some(&orders), &[], Some(&mixed));
    assert_eq!(a.status, 403, "{}", a.body);
    let error = a.json()["error"].as_str().unwrap().to_owned();
    assert!(error.starts_with("[1]: container \"billing\""), "{error}");
    assert!(error.contains("\"orders\""), "{error}");
    // An ECS scope and an event whose service is unknown: refused (fail closed); known: stored.
    let unknown = json!([event("s1", "orders-api")]).to_string();
    assert_eq!(
        c.call("POST", AUDITS, Some(&ecs), &[], Some(&unknown))
            .status,
        403
    );
    let mut known = event("s2", "anything");
    known["service"] = "orders".into();
    let a = c.call(
        "POST",
        AUDITS,
        Some(&ecs),
        &[],
        Some(&json!([known]).to_string()),
    );
    assert_eq!(a.status, 200, "{}", a.body);

    let mut ids = audit_ids(&c);
    ids.sort();
    assert_eq!(ids, ["o1", "o2", "s2"]);
    for e in c.audits("limit=100") {
        let want = if e["id"] == "s2" {
            "ecs orders"
        } else {
            "orders"
        };
        assert_eq!(e["source"], want, "{e}");
    }

    assert_eq!(
        c.call(
            "POST",
            HEARTBEAT,
            Some(&orders),
            &[],
            Some(&beat("d1", "orders-api"))
        )
        .status,
        204
    );
    let a = c.call(
        "POST",
        HEARTBEAT,
        Some(&orders),
        &[],
        Some(&beat("d2", "billing")),
    );
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .starts_with("heartbeat: container \"billing\"")
    );
    let defenders = c
        .call("GET", "/api/v1/defenders", Some(ADMIN), &[], None)
        .json();
    let seen: Vec<&str> = defenders
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["container"].as_str().unwrap())
        .collect();
    assert_eq!(seen, ["orders-api"]);
}

#[test]
fn people_log_in_with_passwords_and_forms_need_the_sessions_csrf_token() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    // A password too short is refused, saying so.
    let short = json!({"username": "olga", "password": "short", "role": "operator"}).to_string();
    let a = c.call("POST", USERS, Some(ADMIN), &[], Some(&short));
    assert_eq!(a.status, 400);
    assert!(
        a.json()["error"]
            .as_str()
            .unwrap()
            .contains("at least 12 characters")
    );
    user(&c, "olga", "olga's long password", "operator");
    user(&c, "audrey", "audrey's long password", "auditor");
    let listed = c.call("GET", USERS, Some(ADMIN), &[], None).json();
    assert_eq!(listed[1]["username"], "olga");
    assert!(!listed.to_string().contains("argon2"), "{listed}");

    let refused = c.login("olga", "not her password").unwrap_err();
    assert_eq!(refused.status, 401);
    assert!(refused.body.contains("Wrong user name or password"));
    assert_eq!(
        c.login("nobody", "olga's long password")
            .unwrap_err()
            .status,
        401
    );
    let olga = c.login("olga", "olga's long password").unwrap();
    let page = c.browse("GET", "/policy", Some(&olga), None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("olga (operator)"), "{}", page.body);
    let token = csrf(&page.body);
    assert_eq!(token.len(), 64);

    // A save without the CSRF token, or with another, is refused and changes nothing.
    let before = revision(&c);
    for form in [
        vec![("document", NO_MKDIR)],
        vec![("document", NO_MKDIR), ("csrf", "0000")],
    ] {
        let a = c.browse("POST", "/policy", Some(&olga), Some(&form));
        assert_eq!(a.status, 403, "{}", a.body);
        assert!(a.body.contains("CSRF"), "{}", a.body);
    }
    let logout = [("csrf", "0000")];
    assert_eq!(
        c.browse("POST", "/logout", Some(&olga), Some(&logout))
            .status,
        403
    );
    assert_eq!(revision(&c), before);
    let a = c.browse(
        "POST",
        "/policy",
        Some(&olga),
        Some(&[("document", NO_MKDIR), ("csrf", token.as_str())][..]),
    );
    assert_eq!(a.status, 303, "{}", a.body);
    assert_ne!(revision(&c), before);

    // Through the API, a change made with the session's cookie needs its CSRF token as a header.
    let cookie = format!("defender_console={olga}");
    let a = c.call("PUT", POLICY, None, &[("Cookie", &cookie)], Some(NO_TOUCH));
    assert_eq!(a.status, 403, "{}", a.body);
    assert!(a.body.contains("x-csrf-token"), "{}", a.body);
    let with_csrf = [
        ("Cookie", cookie.as_str()),
        ("X-CSRF-Token", token.as_str()),
    ];
    let a = c.call("PUT", POLICY, None, &with_csrf, Some(NO_TOUCH));
    assert_eq!(a.status, 200, "{}", a.body);

    // The auditor reads the policy page without a save button, and a save is refused.
    let audrey = c.login("audrey", "audrey's long password").unwrap();
    let page = c.browse("GET", "/policy", Some(&audrey), None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("audrey (auditor)") && !page.body.contains("id=\"save\""));
    let before = revision(&c);
    let audrey_csrf = csrf(&page.body);
    let form = [("document", NO_TOUCH), ("csrf", audrey_csrf.as_str())];
    assert_eq!(
        c.browse("POST", "/policy", Some(&audrey), Some(&form))
            .status,
        403
    );
    assert_eq!(revision(&c), before);
    // Nor may she see the people page.
    assert_eq!(c.browse("GET", "/people", Some(&audrey), None).status, 403);

    // Logout ends the session on the console: the cookie, replayed, logs no one in.
    let a = c.browse(
        "POST",
        "/logout",
        Some(&olga),
        Some(&[("csrf", token.as_str())][..]),
    );
    assert_eq!((a.status, a.location.as_deref()), (303, Some("/login")));
    let replayed = c.browse("GET", "/policy", Some(&olga), None);
    assert_eq!(
        (replayed.status, replayed.location.as_deref()),
        (303, Some("/login"))
    );
    assert_eq!(
        c.call(
            "GET",
            POLICY,
            None,
            &[("Cookie", &format!("defender_console={olga}"))],
            None
        )
        .status,
        401
    );

    // A deleted user's sessions end with them.
    assert_eq!(
        c.call("DELETE", &format!("{USERS}/audrey"), Some(ADMIN), &[], None)
            .status,
        204
    );
    assert_eq!(c.browse("GET", "/policy", Some(&audrey), None).status, 303);

    // The first start: the admin token as the password, no user name.
    let admin = c.login("", ADMIN).unwrap();
    let page = c.browse("GET", "/people", Some(&admin), None);
    assert_eq!(page.status, 200);
    assert!(page.body.contains("admin (admin)") && page.body.contains("olga"));
    // The cookie holds the session id, never the token.
    assert_ne!(admin, ADMIN);
}

#[test]
fn sessions_end_after_being_idle() {
    let w = World::new();
    let mut args: Vec<String> = ["--admin-token", ADMIN, "--defender-token", DEFENDER]
        .map(str::to_owned)
        .to_vec();
    args.extend(["--session-idle".to_owned(), "2s".to_owned()]);
    let c = Console::start_with(&w.path("data"), "127.0.0.1:0", &args);
    let session = c.login("", ADMIN).unwrap();
    // Every use of a session renews it, so the wait must not use it: wait on the clock the
    // console shares with this test until the session has been idle longer than 2 s (it was
    // last seen before `login` returned), then use it.
    let idle_since = std::time::SystemTime::now();
    let idle = wait_until(HANG_GUARD, || {
        idle_since.elapsed().unwrap_or_default() > std::time::Duration::from_millis(2100)
    });
    assert!(idle);
    let a = c.browse("GET", "/audits", Some(&session), None);
    assert_eq!((a.status, a.location.as_deref()), (303, Some("/login")));
    // Ended for good: a new login is a new session.
    let again = c.login("", ADMIN).unwrap();
    assert_ne!(again, session);
}

#[test]
fn a_restart_ends_the_admin_tokens_sessions_and_keeps_the_users() {
    let w = World::new();
    let mut c = Console::start(&w.path("data"));
    user(&c, "olga", "olga's long password", "operator");
    let admin = c.login("", ADMIN).unwrap();
    let olga = c.login("olga", "olga's long password").unwrap();
    c.restart();
    // The admin token may have been changed because it leaked: its sessions do not outlive it.
    let a = c.browse("GET", "/audits", Some(&admin), None);
    assert_eq!((a.status, a.location.as_deref()), (303, Some("/login")));
    assert_eq!(c.browse("GET", "/audits", Some(&olga), None).status, 200);
}

#[test]
fn failed_logins_are_throttled_and_logged() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    user(&c, "alice", "alice's long password", "auditor");
    for attempt in 1..=5 {
        let a = c.login("alice", &format!("guess {attempt}")).unwrap_err();
        assert_eq!(a.status, 401, "attempt {attempt}: {}", a.body);
    }
    // Locked out: even the right password is not checked.
    let a = c.login("alice", "alice's long password").unwrap_err();
    assert_eq!(a.status, 429, "{}", a.body);
    let wait: u64 = a.retry_after.as_deref().unwrap().parse().unwrap();
    assert!((1..=30).contains(&wait), "Retry-After {wait}");
    assert!(a.body.contains("Too many failed logins"));
    // Another name from the same address is not locked out by alice's count.
    assert!(c.login("", ADMIN).is_ok());

    let log = activity(&c, "limit=100");
    let of = |action: &str| log.iter().filter(|e| e["action"] == action).count();
    assert_eq!((of("loginFailed"), of("loginThrottled")), (5, 1), "{log:?}");
    let failed = log.iter().find(|e| e["action"] == "loginFailed").unwrap();
    assert_eq!(failed["actor"], "alice");
    assert_eq!(failed["detail"]["address"], "127.0.0.1");
    assert!(
        !serde_json::to_string(&log).unwrap().contains("guess"),
        "a password was logged"
    );
}

#[test]
fn the_activity_log_says_who_did_what_newest_first() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    user(&c, "olga", "olga's long password", "operator");
    let ops = token(&c, "deploy", "operator", None);
    let a = c.call("PUT", POLICY, Some(&ops), &[], Some(NO_MKDIR));
    assert_eq!(a.status, 200, "{}", a.body);
    let session = c.login("olga", "olga's long password").unwrap();
    let page = c.browse("GET", "/policy", Some(&session), None);
    let token = csrf(&page.body);
    let form = [("document", NO_TOUCH), ("csrf", token.as_str())];
    assert_eq!(
        c.browse("POST", "/policy", Some(&session), Some(&form))
            .status,
        303
    );
    assert!(c.login("olga", "wrong password").is_err());
    assert_eq!(
        c.call(
            "DELETE",
            &format!("{TOKENS}/deploy"),
            Some(ADMIN),
            &[],
            None
        )
        .status,
        204
    );
    assert_eq!(
        c.call("DELETE", &format!("{USERS}/olga"), Some(ADMIN), &[], None)
            .status,
        204
    );

    let log = activity(&c, "");
    let lines: Vec<(String, String, Value)> = log
        .iter()
        .map(|e| {
            let (actor, action) = (e["actor"].as_str().unwrap(), e["action"].as_str().unwrap());
            (actor.to_owned(), action.to_owned(), e["detail"].clone())
        })
        .collect();
    let want = [
        ("admin", "userDeleted", json!({"username": "olga"})),
        ("admin", "tokenRevoked", json!({"name": "deploy"})),
        ("olga", "loginFailed", json!({"address": "127.0.0.1"})),
        ("olga", "policy", json!({"revision": 3})),
        (
            "olga",
            "login",
            json!({"address": "127.0.0.1", "role": "operator"}),
        ),
        ("deploy", "policy", json!({"revision": 2})),
        (
            "admin",
            "tokenCreated",
            json!({"name": "deploy", "role": "operator", "collections": null}),
        ),
        (
            "admin",
            "userCreated",
            json!({"username": "olga", "role": "operator"}),
        ),
    ];
    let want: Vec<(String, String, Value)> = want
        .into_iter()
        .map(|(a, b, d)| (a.to_owned(), b.to_owned(), d))
        .collect();
    assert_eq!(lines, want);

    // since/until/limit: a window of the log, newest first still.
    let times: Vec<&str> = log.iter().map(|e| e["time"].as_str().unwrap()).collect();
    let window = activity(&c, &format!("since={}&until={}", times[5], times[1]));
    let actions: Vec<&str> = window
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["loginFailed", "policy", "login", "policy"]);
    assert_eq!(activity(&c, "limit=2").len(), 2);
    let bad = c.call(
        "GET",
        &format!("{ACTIVITY}?since=yesterday"),
        Some(ADMIN),
        &[],
        None,
    );
    assert_eq!(bad.status, 400);
    assert!(bad.json()["error"].as_str().unwrap().starts_with("since: "));
    let unknown = c.call(
        "GET",
        &format!("{ACTIVITY}?who=olga"),
        Some(ADMIN),
        &[],
        None,
    );
    assert_eq!(unknown.status, 400);
    assert!(unknown.body.contains("who"), "{}", unknown.body);

    // The page shows the same lines to a person.
    let admin = c.login("", ADMIN).unwrap();
    let page = c.browse("GET", "/activity", Some(&admin), None);
    assert_eq!(page.status, 200);
    assert!(
        page.body.contains(r#"data-action="tokenRevoked""#),
        "{}",
        page.body
    );
}

/// Every file of the database: the main file and its write-ahead log.
fn database_bytes(c: &Console) -> Vec<u8> {
    ["console.db", "console.db-wal", "console.db-shm"]
        .iter()
        .flat_map(|f| std::fs::read(c.data.join(f)).unwrap_or_default())
        .collect()
}

fn contains(haystack: &[u8], needle: &str) -> bool {
    haystack
        .windows(needle.len())
        .any(|w| w == needle.as_bytes())
}

#[test]
fn nothing_secret_is_stored_in_clear() {
    let w = World::new();
    let c = Console::start(&w.path("data"));
    let password = "a password nobody may read";
    user(&c, "olga", password, "operator");
    let secrets = [
        token(&c, "reporting", "auditor", None),
        token(
            &c,
            "orders",
            "defender",
            Some(json!({"containers": ["orders-*"]})),
        ),
    ];
    // Used, so that their rows are written again (last use).
    for s in &secrets {
        assert_eq!(c.call("GET", POLICY, Some(s), &[], None).status, 200);
    }
    let sessions = [
        c.login("olga", password).unwrap(),
        c.login("", ADMIN).unwrap(),
    ];
    for s in &sessions {
        assert_eq!(c.browse("GET", "/audits", Some(s), None).status, 200);
    }
    let bytes = database_bytes(&c);
    // The rows are there (their hashes and names), the secrets are not.
    assert!(
        contains(&bytes, "$argon2id$"),
        "no password hash in the database files"
    );
    assert!(contains(&bytes, "reporting"));
    assert!(
        !contains(&bytes, password),
        "the password is stored in clear"
    );
    for s in secrets.iter().chain(&sessions) {
        assert!(
            !contains(&bytes, s),
            "a token or session id is stored in clear"
        );
    }
    assert!(
        !contains(&bytes, ADMIN),
        "the admin token is stored in clear"
    );
}
