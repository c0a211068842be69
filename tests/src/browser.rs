//! A real Chromium, headless, driven over WebDriver (Debian's `chromium` and `chromium-driver`)
//! for the tests of the web pages: `chromedriver` on a port of 127.0.0.1 it picks, one browser
//! session, both stopped when the [`Browser`] is dropped (also when the test panics). Calls are
//! blocking: each runs on the browser's own runtime.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;

use crate::cmd::require_tool;
use crate::fixture::Fixture;

pub struct Browser {
    runtime: tokio::runtime::Runtime,
    client: Option<Client>,
    driver: Child,
    /// Where screenshots go: `target/browser-screenshots/`.
    shots: PathBuf,
}

/// The folder screenshots are kept in, as test artefacts: `target/browser-screenshots`.
pub fn screenshot_dir() -> PathBuf {
    let exe = std::env::current_exe().expect("current exe");
    // target/<profile>/deps/<test binary> -> target/
    exe.ancestors()
        .nth(3)
        .expect("the target folder")
        .join("browser-screenshots")
}

impl std::fmt::Debug for Browser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Browser")
            .field("chromedriver", &self.driver.id())
            .field("shots", &self.shots)
            .finish()
    }
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session (with the flags root needs).
    pub fn start(fx: &Fixture) -> Browser {
        require_tool("chromium", "chromium");
        let chromedriver = require_tool("chromedriver", "chromium-driver");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the browser");
        let start_driver = || {
            // The port is free when picked, and another test may take it before chromedriver
            // does: then chromedriver exits, and is started again on another.
            let port = free_port();
            let driver = Command::new(&chromedriver)
                .arg(format!("--port={port}"))
                .arg("--allowed-ips=127.0.0.1")
                .envs(fx.env().iter().cloned())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("starting chromedriver");
            (port, driver)
        };
        let (mut port, mut driver) = start_driver();
        let mut restarts = 0;
        let profile = fx.join("chromium-profile");
        let capabilities = serde_json::json!({
            "goog:chromeOptions": {
                "args": [
                    "--headless=new",
                    "--no-sandbox",
                    "--disable-gpu",
                    "--disable-dev-shm-usage",
                    "--window-size=800,900",
                    format!("--user-data-dir={}", profile.display()),
                ],
            }
        });
        let capabilities = match capabilities {
            serde_json::Value::Object(map) => map,
            _ => unreachable!(),
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        let client = loop {
            let connected = runtime.block_on(
                ClientBuilder::new(HttpConnector::new())
                    .capabilities(capabilities.clone())
                    .connect(&format!("http://127.0.0.1:{port}")),
            );
            match connected {
                Ok(client) => break client,
                Err(e) if Instant::now() < deadline => {
                    if let Ok(Some(status)) = driver.try_wait() {
                        restarts += 1;
                        assert!(
                            restarts <= 3,
                            "chromedriver exited ({status}) before it took a session, {restarts} \
                             times: {e}"
                        );
                        (port, driver) = start_driver();
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => {
                    let _ = driver.kill();
                    panic!("no browser session from chromedriver in 30 s: {e}");
                }
            }
        };
        let shots = screenshot_dir();
        std::fs::create_dir_all(&shots).expect("making the screenshot folder");
        Browser {
            runtime,
            client: Some(client),
            driver,
            shots,
        }
    }

    fn client(&self) -> &Client {
        self.client.as_ref().expect("the browser session")
    }

    pub fn goto(&self, url: &str) {
        self.runtime
            .block_on(self.client().goto(url))
            .unwrap_or_else(|e| panic!("opening {url}: {e}"));
    }

    pub fn current_url(&self) -> String {
        self.runtime
            .block_on(self.client().current_url())
            .expect("the current URL")
            .to_string()
    }

    /// Waits up to 10 s for `ready` to hold (a click returns before the page it loads has
    /// come); panics naming `what` and showing the page otherwise.
    pub fn wait_for(&self, what: &str, ready: impl Fn(&Browser) -> bool) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !ready(self) {
            assert!(
                Instant::now() < deadline,
                "waited 10 s for {what}; the browser is at {} showing:\n{}",
                self.current_url(),
                self.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Waits for the browser to be at a URL ending with `end`.
    pub fn wait_for_url(&self, end: &str) {
        self.wait_for(&format!("a URL ending with {end}"), |b| {
            b.current_url().ends_with(end)
        });
    }

    /// Waits for the page to show `text`.
    pub fn wait_for_text(&self, text: &str) {
        self.wait_for(&format!("the page to show {text:?}"), |b| {
            b.text().contains(text)
        });
    }

    /// The page's HTML as the browser has it.
    pub fn source(&self) -> String {
        self.runtime
            .block_on(self.client().source())
            .expect("the page's source")
    }

    /// The text the page shows (its `body`'s rendered text). A page being replaced (after a
    /// click) is asked again until the new one answers.
    pub fn text(&self) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let read = self.runtime.block_on(async {
                let body = self.client().find(Locator::Css("body")).await?;
                body.text().await
            });
            match read {
                Ok(text) => return text,
                Err(e) if Instant::now() > deadline => panic!("the page's text: {e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Types `value` into the input whose label says `label`, as a person would find it.
    pub fn fill(&self, label: &str, value: &str) {
        self.runtime.block_on(async {
            let labels = self
                .client()
                .find_all(Locator::Css("label"))
                .await
                .expect("labels");
            for element in labels {
                if element.text().await.expect("a label's text").trim() == label {
                    let id = element
                        .attr("for")
                        .await
                        .expect("a label's for")
                        .unwrap_or_else(|| panic!("the label {label:?} names no input"));
                    let input = self
                        .client()
                        .find(Locator::Id(&id))
                        .await
                        .unwrap_or_else(|e| panic!("no input #{id} for the label {label:?}: {e}"));
                    input.clear().await.expect("clearing an input");
                    input.send_keys(value).await.expect("typing");
                    return;
                }
            }
            panic!("no label {label:?} on the page:\n{}", self.source());
        });
    }

    /// Clicks the button that says `text`.
    pub fn press(&self, text: &str) {
        self.runtime.block_on(async {
            let buttons = self
                .client()
                .find_all(Locator::Css("button"))
                .await
                .expect("buttons");
            for button in buttons {
                if button.text().await.expect("a button's text").trim() == text {
                    button.click().await.expect("clicking");
                    return;
                }
            }
            panic!("no button {text:?} on the page");
        });
    }

    /// Follows the link that says `text`.
    pub fn follow(&self, text: &str) {
        self.runtime.block_on(async {
            let link = self
                .client()
                .find(Locator::LinkText(text))
                .await
                .unwrap_or_else(|e| panic!("no link {text:?} on the page: {e}"));
            link.click().await.expect("clicking a link");
        });
    }

    /// Every input a person types into (not hidden ones) and whether a label names it:
    /// `(id, labelled)`.
    pub fn inputs(&self) -> Vec<(String, bool)> {
        self.runtime.block_on(async {
            let mut out = Vec::new();
            let inputs = self
                .client()
                .find_all(Locator::Css("input:not([type=hidden]), select, textarea"))
                .await
                .expect("inputs");
            for input in inputs {
                let id = input.attr("id").await.expect("an id").unwrap_or_default();
                let labelled = !id.is_empty()
                    && self
                        .client()
                        .find(Locator::Css(&format!("label[for=\"{id}\"]")))
                        .await
                        .is_ok();
                out.push((id, labelled));
            }
            out
        })
    }

    /// A screenshot of the page, kept as `target/browser-screenshots/NAME.png`; fails when it
    /// is blank (one colour everywhere).
    pub fn screenshot(&self, name: &str) -> PathBuf {
        let png = self
            .runtime
            .block_on(self.client().screenshot())
            .expect("a screenshot");
        let path = self.shots.join(format!("{name}.png"));
        std::fs::write(&path, &png).expect("keeping the screenshot");
        let colours = distinct_colours(&png);
        assert!(
            colours > 1,
            "the screenshot {} is blank (one colour)",
            path.display()
        );
        path
    }
}

/// How many different pixel values a PNG has (2 is enough to say it is not blank).
pub fn distinct_colours(png: &[u8]) -> usize {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut pixels = vec![0; reader.output_buffer_size().expect("a PNG's size")];
    let info = reader.next_frame(&mut pixels).expect("a PNG's pixels");
    let bytes = &pixels[..info.buffer_size()];
    let step = info.color_type.samples() * usize::from(info.bit_depth as u8).div_ceil(8);
    let mut seen = std::collections::HashSet::new();
    for pixel in bytes.chunks(step.max(1)) {
        seen.insert(pixel);
        if seen.len() > 16 {
            break;
        }
    }
    seen.len()
}

impl Drop for Browser {
    fn drop(&mut self) {
        if let Some(client) = self.client.take() {
            let _ = self.runtime.block_on(async {
                tokio::time::timeout(Duration::from_secs(10), client.close()).await
            });
        }
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// A port of 127.0.0.1 free just now, for chromedriver (which cannot be told to pick one).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}
