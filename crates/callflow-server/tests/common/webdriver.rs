//! A small W3C WebDriver client over reqwest, driving Debian's headless Chromium through chromedriver for the web UI's tests (the few commands they use, and the browser's console log).
//!
//! Hand-written rather than fantoccini: the protocol is JSON over HTTP, which reqwest
//! already speaks here, and fantoccini's `webdriver` crate brings second copies of http,
//! cookie and the ICU crates.

use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The key of an element reference in WebDriver answers.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";
/// How long a wait for the page lasts before the test fails: the page is slow only when
/// the machine is.
const WAIT: Duration = Duration::from_secs(60);

/// Chromium and chromedriver, when both are installed; outside CI a test without them
/// says so and returns, in CI it fails.
pub fn browser_available() -> bool {
    let found = |name: &str| {
        std::env::var_os("PATH").is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(name).is_file()))
    };
    if found("chromium") && found("chromedriver") {
        return true;
    }
    assert!(
        std::env::var_os("CI").is_none(),
        "chromium and chromedriver are needed in CI (apt-get install chromium chromium-driver)"
    );
    eprintln!("chromium or chromedriver missing: the browser test is skipped (cargo xtask test installs them)");
    false
}

/// A chromedriver process on a loopback port, stopped on drop.
pub struct Driver {
    child: Child,
    url: String,
    http: reqwest::Client,
}

impl Driver {
    pub async fn start() -> Driver {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("chromedriver starts");
        let driver = Driver { child, url: format!("http://127.0.0.1:{port}"), http: reqwest::Client::new() };
        let deadline = Instant::now() + WAIT;
        loop {
            if let Ok(r) = driver.http.get(format!("{}/status", driver.url)).send().await {
                if r.json::<Value>().await.is_ok_and(|v| v["value"]["ready"] == true) {
                    return driver;
                }
            }
            assert!(Instant::now() < deadline, "chromedriver did not become ready");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A new browser (its own profile: a fresh context, nothing shared with another
    /// session) at 1280x800, downloading into `downloads`.
    pub async fn session(&self, downloads: &Path) -> Browser {
        let profile = tempfile::tempdir().unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": "/usr/bin/chromium",
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--window-size=1280,800", "--no-first-run", "--disable-extensions",
                         format!("--user-data-dir={}", profile.path().display())],
                "prefs": {"download.default_directory": downloads, "download.prompt_for_download": false},
            },
            "goog:loggingPrefs": {"browser": "ALL"},
        }}});
        let answer: Value =
            self.http.post(format!("{}/session", self.url)).json(&caps).send().await.unwrap().json().await.unwrap();
        let id = answer["value"]["sessionId"].as_str().unwrap_or_else(|| panic!("no session: {answer}")).to_string();
        let browser =
            Browser { http: self.http.clone(), base: format!("{}/session/{id}", self.url), _profile: profile };
        browser
            .cmd(
                "POST",
                "/goog/cdp/execute",
                json!({"cmd": "Browser.setDownloadBehavior", "params": {"behavior": "allow", "downloadPath": downloads}}),
            )
            .await;
        browser
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One browser session.
pub struct Browser {
    http: reqwest::Client,
    base: String,
    _profile: tempfile::TempDir,
}

/// An element of the page.
#[derive(Clone, Debug)]
pub struct Element(String);

impl Browser {
    /// A command; panics on a WebDriver error, naming it.
    pub async fn cmd(&self, method: &str, path: &str, body: Value) -> Value {
        self.try_cmd(method, path, body).await.unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    async fn try_cmd(&self, method: &str, path: &str, body: Value) -> Result<Value, String> {
        let url = format!("{}{path}", self.base);
        let request = match method {
            "GET" => self.http.get(url),
            "DELETE" => self.http.delete(url),
            _ => self.http.post(url).json(&body),
        };
        let answer: Value = request.send().await.map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
        let value = answer["value"].clone();
        match value.get("error") {
            Some(error) => Err(format!("{error}: {}", value["message"])),
            None => Ok(value),
        }
    }

    pub async fn goto(&self, url: &str) {
        self.cmd("POST", "/url", json!({"url": url})).await;
    }

    pub async fn resize(&self, width: u32, height: u32) {
        self.cmd("POST", "/window/rect", json!({"width": width, "height": height})).await;
    }

    async fn find_all_now(&self, css: &str) -> Vec<Element> {
        let found = self.cmd("POST", "/elements", json!({"using": "css selector", "value": css})).await;
        let Some(found) = found.as_array() else { panic!("finding `{css}`: {found}") };
        found
            .iter()
            .map(|e| Element(e[ELEMENT].as_str().unwrap_or_else(|| panic!("an element? {e}")).to_string()))
            .collect()
    }

    /// Every element matching `css` now.
    pub async fn find_all(&self, css: &str) -> Vec<Element> {
        self.find_all_now(css).await
    }

    /// The first element matching `css`, waiting for it to appear.
    pub async fn wait_for(&self, css: &str) -> Element {
        self.wait_until(&format!("an element `{css}`"), || async { self.find_all_now(css).await.into_iter().next() })
            .await
    }

    /// Waits until `check` gives a value; `what` names it if it never does.
    pub async fn wait_until<T, F, Fut>(&self, what: &str, mut check: F) -> T
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Option<T>>,
    {
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(v) = check().await {
                return v;
            }
            if Instant::now() >= deadline {
                let page = self.execute("return document.body.innerText", json!([])).await;
                panic!("waited {WAIT:?} for {what}; the page says:\n{}", page.as_str().unwrap_or(""));
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Clicks the first element matching `css`, waiting for it; found again when the page
    /// replaced it between finding and clicking (rows are redrawn by live events).
    pub async fn click_on(&self, css: &str) {
        let what = format!("a click on `{css}`");
        self.wait_until(&what, || async {
            let el = self.find_all_now(css).await.into_iter().next()?;
            match self.try_cmd("POST", &format!("/element/{}/click", el.0), json!({})).await {
                Ok(_) => Some(()),
                Err(e) if e.contains("stale element") => None,
                Err(e) => panic!("clicking `{css}`: {e}"),
            }
        })
        .await
    }

    pub async fn click(&self, el: &Element) {
        self.cmd("POST", &format!("/element/{}/click", el.0), json!({})).await;
    }

    pub async fn send_keys(&self, el: &Element, text: &str) {
        self.cmd("POST", &format!("/element/{}/value", el.0), json!({"text": text})).await;
    }

    pub async fn text(&self, el: &Element) -> String {
        self.cmd("GET", &format!("/element/{}/text", el.0), json!({})).await.as_str().unwrap_or("").to_string()
    }

    /// The rendered text of the first element matching `css` now, if any: read in one step,
    /// so that a row the page replaces meanwhile is no stale reference.
    pub async fn text_of(&self, css: &str) -> Option<String> {
        let v =
            self.execute("const e = document.querySelector(arguments[0]); return e && e.innerText", json!([css])).await;
        v.as_str().map(String::from)
    }

    /// An attribute of the first element matching `css` now, if any (read in one step).
    pub async fn attribute_of(&self, css: &str, name: &str) -> Option<String> {
        let v = self
            .execute(
                "const e = document.querySelector(arguments[0]); return e && e.getAttribute(arguments[1])",
                json!([css, name]),
            )
            .await;
        v.as_str().map(String::from)
    }

    pub async fn attribute(&self, el: &Element, name: &str) -> Option<String> {
        self.cmd("GET", &format!("/element/{}/attribute/{name}", el.0), json!({})).await.as_str().map(String::from)
    }

    /// Runs `script` (a function body; `arguments` are `args`) in the page.
    pub async fn execute(&self, script: &str, args: Value) -> Value {
        self.cmd("POST", "/execute/sync", json!({"script": script, "args": args})).await
    }

    /// The page as a PNG, saved to `path`.
    pub async fn screenshot(&self, path: &Path) {
        let data = self.cmd("GET", "/screenshot", json!({})).await;
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, base64_decode(data.as_str().unwrap())).unwrap();
    }

    /// The console's entries since the last call: `(level, message)`.
    pub async fn console(&self) -> Vec<(String, String)> {
        let log = self.cmd("POST", "/se/log", json!({"type": "browser"})).await;
        log.as_array()
            .unwrap()
            .iter()
            .map(|e| (e["level"].as_str().unwrap_or("").to_string(), e["message"].as_str().unwrap_or("").to_string()))
            .collect()
    }

    /// Fails on any console error or warning the page logged since the last call.
    pub async fn assert_clean_console(&self, when: &str) {
        let bad: Vec<_> =
            self.console().await.into_iter().filter(|(level, _)| level == "SEVERE" || level == "WARNING").collect();
        assert!(bad.is_empty(), "console errors {when}: {bad:#?}");
    }

    pub async fn quit(self) {
        let _ = self.try_cmd("DELETE", "", json!({})).await;
    }
}

/// Where a test keeps its screenshots: `target/browser-tests/<test>/`, not committed.
pub fn output_dir(test: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/browser-tests").join(test);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Standard base64 (screenshots).
fn base64_decode(text: &str) -> Vec<u8> {
    let value = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        b'/' => 63,
        _ => panic!("not base64: {c}"),
    };
    let bytes: Vec<u8> = text.bytes().filter(|c| !c.is_ascii_whitespace() && *c != b'=').map(value).collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let n = chunk.iter().enumerate().fold(0u32, |acc, (i, &b)| acc | (b as u32) << (18 - 6 * i));
        out.extend_from_slice(&n.to_be_bytes()[1..chunk.len()]);
    }
    out
}
