//! A real browser for the tests: Debian's headless Chromium driven through chromedriver's W3C
//! WebDriver protocol (plain JSON over HTTP, spoken with ureq).

use std::process::{Child, Command, Stdio};
use std::time::Duration;

use serde_json::{Value, json};

use super::{HANG_GUARD, require, wait_until};

/// The key under which WebDriver returns an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

pub struct Browser {
    driver: Child,
    base: String,
    agent: ureq::Agent,
}

impl Browser {
    /// Starts chromedriver on a free local port and a headless Chromium session in it.
    pub fn start() -> Browser {
        let chromium = require("chromium");
        let chromedriver = require("chromedriver");
        let port = super::console::free_port();
        let driver = Command::new(chromedriver)
            .arg(format!("--port={port}"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(60)))
            .build()
            .new_agent();
        let mut b = Browser {
            driver,
            base: format!("http://127.0.0.1:{port}"),
            agent,
        };
        assert!(
            wait_until(HANG_GUARD, || b
                .request("GET", "/status", None)
                .is_ok_and(|v| v["ready"] == true)),
            "chromedriver did not become ready"
        );
        // Root in a container: Chromium's sandbox cannot start, so it runs without.
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": chromium,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu",
                         "--disable-dev-shm-usage", "--window-size=1280,1024"]
            }
        }}});
        let session = b
            .request("POST", "/session", Some(caps))
            .unwrap_or_else(|e| panic!("no browser session: {e}"));
        let id = session["sessionId"].as_str().unwrap().to_owned();
        b.base = format!("{}/session/{id}", b.base);
        b
    }

    fn request(&self, method: &str, path: &str, body: Option<Value>) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let request = ureq::http::Request::builder().method(method).uri(&url);
        let sent = match body {
            Some(b) => self.agent.run(
                request
                    .header("Content-Type", "application/json")
                    .body(b.to_string())
                    .unwrap(),
            ),
            None => self.agent.run(request.body(()).unwrap()),
        };
        let mut response = sent.map_err(|e| format!("{method} {url}: {e}"))?;
        let status = response.status().as_u16();
        let text = response
            .body_mut()
            .read_to_string()
            .map_err(|e| e.to_string())?;
        let value: Value = serde_json::from_str(&text).map_err(|e| format!("{e}: {text}"))?;
        if status != 200 {
            return Err(format!(
                "{method} {path}: HTTP {status}: {}",
                value["value"]
            ));
        }
        Ok(value["value"].clone())
    }

    fn command(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        self.request(method, path, body)
            .unwrap_or_else(|e| panic!("webdriver: {e}"))
    }

    pub fn goto(&self, url: &str) {
        self.command("POST", "/url", Some(json!({ "url": url })));
    }

    pub fn current_url(&self) -> String {
        self.command("GET", "/url", None)
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// The first element matching a CSS selector, if any.
    pub fn find(&self, css: &str) -> Option<String> {
        let found = self.request(
            "POST",
            "/element",
            Some(json!({"using": "css selector", "value": css})),
        );
        found.ok().map(|v| v[ELEMENT].as_str().unwrap().to_owned())
    }

    /// The element matching `css`, waiting for it to appear.
    pub fn element(&self, css: &str) -> String {
        let mut found = None;
        wait_until(HANG_GUARD, || {
            found = self.find(css);
            found.is_some()
        });
        found.unwrap_or_else(|| panic!("no {css} in {}", self.source()))
    }

    pub fn click(&self, css: &str) {
        let e = self.element(css);
        self.command("POST", &format!("/element/{e}/click"), Some(json!({})));
    }

    /// Clears the field and types `text` into it, as a person would.
    pub fn type_into(&self, css: &str, text: &str) {
        let e = self.element(css);
        self.command("POST", &format!("/element/{e}/clear"), Some(json!({})));
        self.command(
            "POST",
            &format!("/element/{e}/value"),
            Some(json!({ "text": text })),
        );
    }

    /// The rendered text of the element matching `css`; "" when there is none (or it went away
    /// with the page in between: callers poll).
    pub fn text(&self, css: &str) -> String {
        self.find(css)
            .and_then(|e| {
                self.request("GET", &format!("/element/{e}/text"), None)
                    .ok()
            })
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default()
    }

    /// Like [`Browser::eval`], but `null` when the page is between two documents (for polling).
    pub fn poll_eval(&self, script: &str) -> Value {
        self.request(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
        .unwrap_or(Value::Null)
    }

    /// Runs `script` in the page; its return value.
    pub fn eval(&self, script: &str) -> Value {
        self.command(
            "POST",
            "/execute/sync",
            Some(json!({"script": script, "args": []})),
        )
    }

    pub fn source(&self) -> String {
        self.command("GET", "/source", None)
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self.request("DELETE", "", None);
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}
