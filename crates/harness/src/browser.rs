//! Headless Chromium for the page tests, three ways:
//! - [`dump_dom`]: `--dump-dom` once the page settled (`--virtual-time-budget`: the page's
//!   timers run fast, the clock stands still while a fetch is pending; an open WebSocket does
//!   not hold it).
//! - [`screenshot`]: `--screenshot` of a page that needs no server (a file).
//! - [`Browser`]: a live page driven over the DevTools protocol (CDP) on a WebSocket, for a
//!   page that keeps changing: evaluate JavaScript in it as often as needed, capture it as PNG.
//!
//! Chromium and its helper processes run in their own process group, killed when done (or
//! when the [`Browser`] is dropped). Test-only: failures panic with what went wrong.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use nix::sys::signal::{Signal, killpg};
use nix::unistd::Pid;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::wait::{eventually, scaled};

/// The first of `chromium`, `chromium-browser`, `google-chrome` found executable on `PATH`.
pub fn find_chromium() -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = std::env::var_os("PATH")?;
    ["chromium", "chromium-browser", "google-chrome"]
        .iter()
        .flat_map(|name| std::env::split_paths(&path).map(move |dir| dir.join(name)))
        .find(|p| {
            std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

/// Chromium, or `None` after a loud notice that `test` is skipped, so that a developer
/// machine without a browser can still run the suite; with `CI` set it panics instead,
/// telling to `apt-get install chromium`.
pub fn chromium_or_skip(test: &str) -> Option<PathBuf> {
    if let Some(c) = find_chromium() {
        return Some(c);
    }
    if std::env::var_os("CI").is_some() {
        panic!("install chromium (apt-get install chromium)");
    }
    // Straight to the process's stderr: libtest would capture `eprintln!` of a passing test.
    let line = "#".repeat(64);
    let _ = writeln!(
        std::io::stderr(),
        "\n{line}\n## SKIPPED {test} test: no chromium, chromium-browser or google-chrome\n\
         ## on PATH (apt-get install chromium).\n{line}\n"
    );
    None
}

/// The flags every run uses.
fn command(chromium: &Path, profile: &Path) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(chromium);
    cmd.args([
        "--headless=new",
        "--no-sandbox", // CI containers run as root, where the sandbox refuses to start
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--no-first-run",
        "--no-default-browser-check",
        "--hide-scrollbars",
        "--enable-logging=stderr",
        "--v=0",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .stdin(Stdio::null())
    .process_group(0)
    .kill_on_drop(true);
    cmd
}

/// Runs one Chromium command to its end (60 s at most, then its group is killed); returns
/// its stdout and stderr.
async fn run_once(mut cmd: tokio::process::Command, what: &str) -> (String, String) {
    cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
    let child = cmd.spawn().expect("start chromium");
    let group = Pid::from_raw(child.id().expect("chromium pid") as i32);
    let result =
        tokio::time::timeout(scaled(Duration::from_secs(60)), child.wait_with_output()).await;
    // Helpers (zygote, renderer, crashpad) may outlive the main process: end the whole group.
    let _ = killpg(group, Signal::SIGKILL);
    let out = result
        .unwrap_or_else(|_| panic!("chromium did not {what} within 60 s (a request left hanging?)"))
        .expect("wait for chromium");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        out.status.success(),
        "chromium failed to {what} ({}):\n{stderr}",
        out.status
    );
    (String::from_utf8_lossy(&out.stdout).into_owned(), stderr)
}

/// `chromium --dump-dom url` with its own profile under `profile`, once the page settled;
/// returns the DOM (stdout) and Chromium's log (stderr, where the page's console messages and
/// uncaught errors appear).
pub async fn dump_dom(chromium: &Path, profile: &Path, url: &str) -> (String, String) {
    let mut cmd = command(chromium, profile);
    cmd.args(["--virtual-time-budget=10000", "--dump-dom", url]);
    run_once(cmd, "dump the DOM").await
}

/// `chromium --screenshot` of `url` in a `width` x `height` window, saved as PNG at `png`;
/// returns Chromium's log.
pub async fn screenshot(
    chromium: &Path,
    profile: &Path,
    url: &str,
    png: &Path,
    (width, height): (u32, u32),
) -> String {
    let mut cmd = command(chromium, profile);
    cmd.arg(format!("--screenshot={}", png.display()))
        .arg(format!("--window-size={width},{height}"))
        .args(["--virtual-time-budget=5000", url]);
    let (_, log) = run_once(cmd, "take a screenshot").await;
    assert!(
        std::fs::metadata(png).is_ok_and(|m| m.len() > 0),
        "chromium wrote no screenshot at {}:\n{log}",
        png.display()
    );
    log
}

type Socket =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A headless Chromium with one page, driven over the DevTools protocol.
#[derive(Debug)]
pub struct Browser {
    /// The browser's process group (killed on drop).
    group: Pid,
    _child: tokio::process::Child,
    /// The page's DevTools socket; one command at a time.
    page: tokio::sync::Mutex<Socket>,
    next_id: std::sync::atomic::AtomicU64,
    log: PathBuf,
}

impl Browser {
    /// Starts Chromium (profile and log under `dir`) with a `width` x `height` window and
    /// connects to its page.
    pub async fn start(chromium: &Path, dir: &Path, (width, height): (u32, u32)) -> Browser {
        let profile = dir.join("chromium-profile");
        std::fs::create_dir_all(&profile).expect("chromium profile directory");
        let log = dir.join("chromium.log");
        let log_file = std::fs::File::create(&log).expect("chromium log file");
        let mut cmd = command(chromium, &profile);
        cmd.arg("--remote-debugging-port=0")
            .arg("--remote-allow-origins=*")
            .arg(format!("--window-size={width},{height}"))
            .arg("about:blank")
            .stdout(Stdio::null())
            .stderr(Stdio::from(log_file));
        let child = cmd.spawn().expect("start chromium");
        let group = Pid::from_raw(child.id().expect("chromium pid") as i32);
        // Chromium writes the port it picked into the profile (then the browser's path).
        let port_file = profile.join("DevToolsActivePort");
        let port_file = &port_file;
        let port: u16 = eventually(
            "chromium's DevTools port",
            Duration::from_secs(30),
            || async move {
                let text = std::fs::read_to_string(port_file).ok()?;
                text.lines().next()?.trim().parse().ok()
            },
        )
        .await;
        let http = reqwest::Client::new();
        let http = &http;
        let list = format!("http://127.0.0.1:{port}/json/list");
        let list = &list;
        let page_ws: String = eventually(
            "chromium's page target",
            Duration::from_secs(30),
            || async move {
                let targets: Value = http.get(list).send().await.ok()?.json().await.ok()?;
                targets.as_array()?.iter().find(|t| t["type"] == "page")?["webSocketDebuggerUrl"]
                    .as_str()
                    .map(str::to_string)
            },
        )
        .await;
        let (page, _) = tokio_tungstenite::connect_async(page_ws.as_str())
            .await
            .expect("connect to chromium's page");
        Browser {
            group,
            _child: child,
            page: tokio::sync::Mutex::new(page),
            next_id: std::sync::atomic::AtomicU64::new(0),
            log,
        }
    }

    /// Chromium's log so far (the page's console messages and uncaught errors are there).
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends one DevTools command and returns its `result`, skipping events on the way.
    pub async fn call(&self, method: &str, params: Value) -> Value {
        let id = self
            .next_id
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            + 1;
        let msg = json!({ "id": id, "method": method, "params": params }).to_string();
        let mut page = self.page.lock().await;
        page.send(Message::Text(msg.into()))
            .await
            .expect("send to chromium");
        let answer = tokio::time::timeout(scaled(Duration::from_secs(30)), async {
            while let Some(m) = page.next().await {
                let Ok(Message::Text(text)) = m else { continue };
                let v: Value = serde_json::from_str(text.as_str()).expect("DevTools JSON");
                if v["id"] == id {
                    return v;
                }
            }
            panic!("chromium closed the DevTools socket during {method}");
        })
        .await
        .unwrap_or_else(|_| panic!("chromium did not answer {method} within 30 s"));
        assert!(answer.get("error").is_none(), "{method} failed: {answer}");
        answer["result"].clone()
    }

    /// Opens `url` in the page.
    pub async fn navigate(&self, url: &str) {
        let r = self.call("Page.navigate", json!({ "url": url })).await;
        assert!(r.get("errorText").is_none(), "cannot open {url}: {r}");
    }

    /// The value of the JavaScript expression `expr` evaluated in the page (JSON-able values;
    /// promises are awaited). An exception thrown panics with its text.
    pub async fn eval(&self, expr: &str) -> Value {
        let r = self
            .call(
                "Runtime.evaluate",
                json!({ "expression": expr, "returnByValue": true, "awaitPromise": true }),
            )
            .await;
        if let Some(e) = r.get("exceptionDetails") {
            panic!("JavaScript `{expr}` threw: {e}");
        }
        r["result"]["value"].clone()
    }

    /// Captures the page (the window's size) as PNG into `png`.
    pub async fn screenshot(&self, png: &Path) {
        use base64::Engine;
        let r = self
            .call("Page.captureScreenshot", json!({ "format": "png" }))
            .await;
        let data = r["data"].as_str().expect("screenshot data");
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("screenshot base64");
        std::fs::write(png, bytes).expect("write the screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = killpg(self.group, Signal::SIGKILL);
    }
}
