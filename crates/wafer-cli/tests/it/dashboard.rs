//! The dashboard at `/_wafer/ui`, in a real headless Chromium driven over WebDriver
//! (Debian's `chromium` and `chromium-driver`, installed by scripts/setup.sh): log in with
//! the token, see the deployed functions, watch a request counter move, roll a function
//! back and see its active version change, and see a log line arrive. Saves a screenshot as
//! target/dashboard.png.

use crate::common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{built, guest, Server};
use fantoccini::{Client, ClientBuilder, Locator};

/// `chromedriver` on a free port, killed on drop.
struct Driver {
    child: Child,
    url: String,
}

impl Driver {
    fn start() -> Self {
        let port = common::free_port();
        use std::os::unix::process::CommandExt;
        // A process group of its own, so that the browsers it starts go with it even when
        // the test fails before closing its session.
        let child = Command::new("chromedriver")
            .arg(format!("--port={port}"))
            .process_group(0)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| {
                panic!("cannot start chromedriver ({e}): run scripts/setup.sh, which installs it")
            });
        let driver = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        for _ in 0..100 {
            let status = reqwest::blocking::get(format!("{}/status", driver.url));
            if status.is_ok_and(|r| r.status() == 200) {
                return driver;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        // Dropping the driver kills and reaps chromedriver.
        panic!("chromedriver did not answer on {}", driver.url);
    }
}

impl Drop for Driver {
    fn drop(&mut self) {
        let group = format!("-{}", self.child.id());
        let _ = Command::new("kill").args(["-KILL", "--", &group]).status();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn browser(driver: &Driver) -> Client {
    let capabilities = serde_json::json!({
        "goog:chromeOptions": {
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1500,1000"],
        }
    });
    let serde_json::Value::Object(capabilities) = capabilities else {
        unreachable!()
    };
    let connector = hyper_util::client::legacy::connect::HttpConnector::new();
    ClientBuilder::new(connector)
        .capabilities(capabilities)
        .connect(&driver.url)
        .await
        .unwrap()
}

async fn click(browser: &Client, locator: Locator<'_>) {
    browser.find(locator).await.unwrap().click().await.unwrap();
}

/// Waits until the text of the first element matching `css` satisfies `ok`; returns it.
async fn wait_text(browser: &Client, css: &str, ok: impl Fn(&str) -> bool) -> String {
    let start = Instant::now();
    let mut last = String::from("(no such element)");
    while start.elapsed() < Duration::from_secs(30) {
        if let Ok(element) = browser.find(Locator::Css(css)).await {
            if let Ok(text) = element.text().await {
                if ok(&text) {
                    return text;
                }
                last = text;
            }
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("`{css}` never showed the expected text; last: {last:?}");
}

#[test]
fn the_dashboard_in_a_real_browser() {
    let server = Server::start();
    server.deploy("hello", &built("hello-wat.wat"), &[]);
    server.deploy("hello", &built("hello-wat.wat"), &[("timeout", "5s")]);
    server.deploy("logger", &guest("logger.wat"), &[]);
    let driver = Driver::start();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    runtime.block_on(async {
        let browser = browser(&driver).await;
        browser
            .goto(&format!("{}/_wafer/ui", server.admin_url))
            .await
            .unwrap();

        // A wrong token is refused; the right one lets in.
        let token = browser.find(Locator::Id("token")).await.unwrap();
        token.send_keys("not-the-token").await.unwrap();
        click(&browser, Locator::Id("login-button")).await;
        wait_text(&browser, "#login-error", |t| t.contains("refused")).await;
        token.clear().await.unwrap();
        token.send_keys(&server.token).await.unwrap();
        click(&browser, Locator::Id("login-button")).await;

        // The functions, with their active versions.
        let hello = r#"#functions tr[data-name="hello"]"#;
        wait_text(&browser, &format!("{hello} td.version"), |t| t == "v2 of 2").await;
        wait_text(
            &browser,
            r#"#functions tr[data-name="logger"] td.abi"#,
            |t| t == "cgi",
        )
        .await;
        let routes = wait_text(&browser, &format!("{hello} td.routes"), |t| !t.is_empty()).await;
        assert_eq!(routes, "/hello/...");

        // The request counter moves after requests (and the rate with it).
        // (reqwest's blocking client may not run on the async runtime's own threads.)
        tokio::task::block_in_place(|| {
            for _ in 0..7 {
                assert_eq!(server.get("/hello/").status(), 200);
            }
        });
        wait_text(&browser, &format!("{hello} td.requests"), |t| t == "7").await;

        // Roll back: the active version changes, in the detail and in the table.
        click(&browser, Locator::Css(hello)).await;
        wait_text(&browser, "#detail-version", |t| t == "2").await;
        click(&browser, Locator::Id("rollback")).await;
        wait_text(&browser, "#detail-version", |t| t == "1").await;
        wait_text(&browser, &format!("{hello} td.version"), |t| t == "v1 of 2").await;
        // A traffic split shows with the version, and the counters sum its versions'.
        tokio::task::block_in_place(|| {
            let split = serde_json::json!({"split": [{"version": 2, "percent": 10}, {"version": 1, "percent": 90}]});
            let response = server
                .admin(reqwest::Method::PUT, "functions/hello/traffic")
                .json(&split)
                .send()
                .unwrap();
            assert_eq!(response.status(), 200);
            for _ in 0..10 {
                assert_eq!(server.get("/hello/").status(), 200);
            }
        });
        wait_text(&browser, &format!("{hello} td.version"), |t| {
            t.starts_with("v1 of 2") && t.contains("v2 10% · v1 90%")
        })
        .await;
        wait_text(&browser, &format!("{hello} td.requests"), |t| t == "10").await;
        wait_text(&browser, "#versions", |t| t.contains("v2 10% of requests")).await;
        // Rolling back ends it.
        click(&browser, Locator::Id("rollback")).await;
        wait_text(&browser, &format!("{hello} td.version"), |t| t == "v1 of 2").await;
        let anonymous = tokio::task::block_in_place(|| server.get_admin("/_wafer/functions/hello"));
        assert_eq!(
            anonymous.status(),
            401,
            "the admin API still wants the token"
        );

        // A log line appears in the followed log.
        let logger = r#"#functions tr[data-name="logger"]"#;
        click(&browser, Locator::Css(logger)).await;
        wait_text(&browser, "#detail-name", |t| t == "logger").await;
        // Called until the followed stream has shown a line (it starts as the row is clicked).
        let caller = {
            let (client, url) = (server.client.clone(), format!("{}/logger", server.url));
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let _ = client.get(&url).send();
                    std::thread::sleep(Duration::from_millis(250));
                }
            })
        };
        wait_text(&browser, "#log", |t| t.contains("hello from stderr")).await;
        // The rate and latency columns fill in from the change between two polls.
        wait_text(&browser, &format!("{logger} td.p50"), |t| t.ends_with('s')).await;

        let png = browser.screenshot().await.unwrap();
        let path = common::root().join("target/dashboard.png");
        std::fs::write(&path, png).unwrap();
        eprintln!("screenshot: {}", path.display());
        browser.close().await.unwrap();
        caller.join().unwrap();
    });
}
