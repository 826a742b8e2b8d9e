//! The status page as a person sees it, in a real headless Chromium driven over
//! WebDriver (ChromeDriver): a devnet's page lists every target with its state; a
//! stopped target turns down on the page by itself (the page refreshes itself);
//! the badge renders as SVG; a screenshot is written and its path printed.
//!
//! Needs `chromium` and `chromium-driver` (Debian); `.ci/run` installs them and sets
//! `BROWSER_REQUIRED=1`. Without them, and without that variable, the test says it
//! is skipped.

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};

const CHROMIUM: &str = "/usr/bin/chromium";
const DRIVER: &str = "/usr/bin/chromedriver";

struct Kill(Child);

impl Drop for Kill {
    fn drop(&mut self) {
        let pid = self.0.id().to_string();
        let _ = Command::new("kill").args(["-INT", &pid]).status();
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A WebDriver session.
struct Browser {
    http: reqwest::Client,
    base: String,
    session: String,
}

impl Browser {
    async fn start(driver_url: &str, profile: &std::path::Path) -> Browser {
        let http = livenessd::http_client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .unwrap();
        let caps = json!({"capabilities": {"alwaysMatch": {
            "browserName": "chrome",
            "goog:chromeOptions": {
                "binary": CHROMIUM,
                "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                         "--disable-quic", "--no-first-run", "--disable-background-networking",
                         "--disable-component-update", "--disable-sync", "--window-size=1400,900",
                         format!("--user-data-dir={}", profile.display())]
            }
        }}});
        let v: Value = http
            .post(format!("{driver_url}/session"))
            .json(&caps)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let session = v["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session: {v}"))
            .to_owned();
        Browser {
            http,
            base: driver_url.to_owned(),
            session,
        }
    }

    async fn cmd(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}/session/{}{path}", self.base, self.session);
        let mut req = self.http.request(method, url);
        if let Some(b) = body {
            req = req.json(&b);
        }
        let v: Value = req.send().await.unwrap().json().await.unwrap();
        v["value"].clone()
    }

    async fn goto(&self, url: &str) {
        self.cmd(reqwest::Method::POST, "/url", Some(json!({"url": url})))
            .await;
    }

    /// `data-state` of every row of the targets table, by address.
    async fn states(&self) -> Vec<(String, String)> {
        let rows = self
            .cmd(
                reqwest::Method::POST,
                "/elements",
                Some(json!({"using": "css selector", "value": "tr.target"})),
            )
            .await;
        let mut out = Vec::new();
        for r in rows.as_array().cloned().unwrap_or_default() {
            let Some(id) = r
                .as_object()
                .and_then(|o| o.values().next())
                .and_then(Value::as_str)
            else {
                continue;
            };
            let attr = |name: &str| {
                let p = format!("/element/{id}/attribute/{name}");
                async move { self.cmd(reqwest::Method::GET, &p, None).await }
            };
            out.push((
                attr("data-address").await.as_str().unwrap_or("").to_owned(),
                attr("data-state").await.as_str().unwrap_or("").to_owned(),
            ));
        }
        out
    }

    async fn screenshot(&self, path: &std::path::Path) {
        let b64 = self.cmd(reqwest::Method::GET, "/screenshot", None).await;
        std::fs::write(path, base64_decode(b64.as_str().unwrap())).unwrap();
    }

    async fn script(&self, js: &str) -> Value {
        self.cmd(
            reqwest::Method::POST,
            "/execute/sync",
            Some(json!({"script": js, "args": []})),
        )
        .await
    }

    async fn quit(&self) {
        let _ = self
            .http
            .delete(format!("{}/session/{}", self.base, self.session))
            .send()
            .await;
    }
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| match c {
        b'A'..=b'Z' => c - b'A',
        b'a'..=b'z' => c - b'a' + 26,
        b'0'..=b'9' => c - b'0' + 52,
        b'+' => 62,
        _ => 63,
    };
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= u32::from(val(c)) << (18 - 6 * i);
        }
        let take = chunk.len() - 1;
        out.extend_from_slice(&n.to_be_bytes()[1..1 + take]);
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_status_page_shows_every_target_and_a_stopped_one_turns_down() {
    if !std::path::Path::new(CHROMIUM).exists() || !std::path::Path::new(DRIVER).exists() {
        assert!(
            std::env::var_os("BROWSER_REQUIRED").is_none(),
            "BROWSER_REQUIRED is set but {CHROMIUM} or {DRIVER} is missing"
        );
        println!(
            "skipped: no {CHROMIUM} and {DRIVER} here (apt-get install chromium chromium-driver)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    // A devnet: its nodes, targets and control endpoint.
    let mut child = Command::new(env!("CARGO_BIN_EXE_livenessd"))
        .args([
            "devnet",
            "--nodes",
            "3",
            "--targets",
            "2",
            "--probe-interval-ms",
            "300",
            "--dir",
        ])
        .arg(dir.path().join("net"))
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let _devnet = Kill(child);
    let mut printed = Vec::new();
    for line in lines.by_ref() {
        let line = line.unwrap();
        printed.push(line.clone());
        if line.contains("Ctrl-C stops everything") {
            break;
        }
    }
    std::thread::spawn(move || for _ in lines {});
    let url_of = |prefix: &str| -> String {
        let l = printed
            .iter()
            .find(|l| l.trim_start().starts_with(prefix))
            .unwrap();
        l.split_whitespace().nth(1).unwrap().to_owned()
    };
    let (node, control) = (url_of("Node1"), url_of("control"));
    let port = free_port();
    let _driver = Kill(
        Command::new(DRIVER)
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let driver_url = format!("http://127.0.0.1:{port}");
    let probe = livenessd::http_client::builder().build().unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    while probe
        .get(format!("{driver_url}/status"))
        .send()
        .await
        .is_err()
    {
        assert!(Instant::now() < deadline, "chromedriver did not start");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let browser = Browser::start(&driver_url, &dir.path().join("profile")).await;

    // Every target, with its quorum state, once the network monitors them.
    browser.goto(&format!("{node}/")).await;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = browser.states().await;
        if s.len() == 2 && s.iter().all(|(_, st)| st == "up") {
            break;
        }
        assert!(Instant::now() < deadline, "targets never listed up: {s:?}");
        tokio::time::sleep(Duration::from_millis(500)).await;
        browser.goto(&format!("{node}/")).await;
    }
    // Stop one: the page, refreshing itself, shows it down (no reload from here).
    probe
        .post(format!("{control}/targets/0xTarget1/stop"))
        .send()
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s = browser.states().await;
        if s.contains(&("0xTarget1".into(), "down".into())) {
            assert!(s.contains(&("0xTarget2".into(), "up".into())), "{s:?}");
            break;
        }
        assert!(
            Instant::now() < deadline,
            "0xTarget1 never turned down on the page: {s:?}"
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    let shot = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("status-page.png");
    browser.screenshot(&shot).await;
    let png = std::fs::read(&shot).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n", "a PNG screenshot");
    println!("screenshot of the status page: {}", shot.display());

    // The badge renders as an SVG document in the browser.
    browser.goto(&format!("{node}/badge/0xTarget1.svg")).await;
    let root = browser
        .script(
            "return document.documentElement.namespaceURI + ' ' + document.documentElement.tagName",
        )
        .await;
    assert_eq!(root, "http://www.w3.org/2000/svg svg");
    let text = browser
        .script("return document.documentElement.textContent")
        .await;
    assert!(text.as_str().unwrap().contains("down"), "{text}");
    browser.quit().await;
}
