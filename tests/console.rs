//! The web console (issue 12, first part) in a real browser: Debian's headless `chromium`
//! driven over WebDriver (`chromedriver`, `fantoccini`) against `baton serve` on a 1+3 MariaDB
//! sandbox. The cluster list shows the sandbox, the topology page draws 4 boxes with the master
//! marked, the history lists a takeover and its page draws its phases; the pages work at
//! 1280x800 and at a phone's width, and their script runs under the content security policy
//! with no error. A screenshot of each page is kept in `target/ui-screenshots/`.

mod common;

use std::time::Duration;

use common::*;
use fantoccini::{ClientBuilder, Locator};

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// chromedriver on a free port, killed when dropped; None when it is not installed.
struct Driver(std::process::Child, u16);

impl Drop for Driver {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn driver() -> Option<Driver> {
    let port = free_port();
    let child = std::process::Command::new("chromedriver")
        .arg(format!("--port={port}"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .ok()?;
    let d = Driver(child, port);
    wait_until("chromedriver listens", Duration::from_secs(10), || async {
        tokio::net::TcpStream::connect(("127.0.0.1", port)).await.is_ok()
    })
    .await;
    Some(d)
}

async fn shot(c: &fantoccini::Client, name: &str) {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/ui-screenshots");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(format!("{name}.png")), c.screenshot().await.unwrap()).unwrap();
}

/// The browser's own console log (chromedriver's `goog:loggingPrefs`) since the last call:
/// failed loads, CSP violations and script errors all land there as SEVERE.
async fn browser_errors(c: &fantoccini::Client, driver_port: u16) -> Vec<String> {
    let id = c.session_id().await.unwrap().unwrap();
    let log: serde_json::Value = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{driver_port}/session/{id}/se/log"))
        .json(&serde_json::json!({ "type": "browser" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    log["value"]
        .as_array()
        .expect("chromedriver's log")
        .iter()
        .filter(|e| e["level"] == "SEVERE")
        .map(|e| e["message"].as_str().unwrap_or_default().to_string())
        .collect()
}

/// The page's script ran (allowed by the CSP) and recorded no error.
async fn script_ok(c: &fantoccini::Client) {
    let v = c
        .execute(
            "return [document.documentElement.dataset.js || '', (window.batonProblems || ['no script']).join('; ')];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(v[0], "ok", "the console's script did not run: {v}");
    assert_eq!(v[1], "", "errors on the page: {v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_a_real_browser() {
    let Some(d) = driver().await else {
        eprintln!("SKIPPED: chromedriver is not installed (apt-get install chromium chromium-driver)");
        return;
    };
    let t = fresh(3).await;
    let mut cfg = t.cfg();
    cfg.discovery.poll_interval_s = 1;
    cfg.scripts.policy = String::new();
    cfg.paths.scripts_dir = t.sandbox.dir.join("no-scripts");
    cfg.paths.hooks_dir = t.sandbox.dir.join("no-hooks");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        baton::http::run(&cfg, listener, async {
            let _ = stopped.await;
        })
        .await
        .unwrap()
    });
    let http = reqwest::Client::new();
    let m = t.master();
    // Known from here on (a discovery remembers it).
    wait_until("the service answers", Duration::from_secs(10), || async {
        http.get(format!("{base}/api/v1/clusters/{m}")).send().await.is_ok_and(|r| r.status().is_success())
    })
    .await;
    let alias = t.sandbox.alias.clone();

    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        serde_json::json!({ "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1280,800"] }),
    );
    caps.insert("goog:loggingPrefs".into(), serde_json::json!({ "browser": "ALL" }));
    let c = ClientBuilder::rustls()
        .unwrap()
        .capabilities(caps)
        .connect(&format!("http://127.0.0.1:{}", d.1))
        .await
        .expect("chromium through chromedriver");

    // The cluster list shows the sandbox, with its readiness, refreshed by the script (without a
    // reload). A probe that failed while the machine was busy (the poller's first rounds run
    // beside chromium's start) shows as a problem until the poller's next round succeeds.
    c.goto(&format!("{base}/")).await.unwrap();
    let ready = format!("//tr[td[2][text()='{alias}']][contains(., 'ready')]");
    if c.wait().at_most(Duration::from_secs(30)).for_element(Locator::XPath(&ready)).await.is_err() {
        let fleet = http.get(format!("{base}/api/v1/fleet")).send().await.unwrap().text().await.unwrap();
        panic!("the sandbox never showed as ready: {}\nfleet: {fleet}", c.source().await.unwrap());
    }
    let text = c.find(Locator::XPath(&ready)).await.unwrap().text().await.unwrap();
    assert!(text.contains(&m.to_string()), "{text}");
    script_ok(&c).await;
    shot(&c, "clusters").await;

    // The topology: four boxes, the master marked.
    c.goto(&format!("{base}/ui/clusters/{alias}")).await.unwrap();
    let boxes = c.find_all(Locator::Css("svg.topology g.instance")).await.unwrap();
    assert_eq!(boxes.len(), 4);
    let master = c.find(Locator::Css("svg.topology g.instance[data-role=master]")).await.unwrap();
    assert_eq!(master.attr("data-instance").await.unwrap(), Some(m.to_string()));
    assert!(master.attr("class").await.unwrap().unwrap_or_default().contains("master"));
    script_ok(&c).await;
    shot(&c, "topology").await;

    // A refusal, in words: a designated replica whose SQL thread is stopped.
    let stopped = t.replicas()[1].clone();
    exec(&t.connector(), &stopped, "STOP SLAVE SQL_THREAD").await;
    c.goto(&format!("{base}/ui/clusters/{alias}")).await.unwrap();
    c.find(Locator::Css(&format!("form.takeover select option[value='{stopped}']")))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    c.find(Locator::Css("form.takeover button")).await.unwrap().click().await.unwrap();
    let refused = c.wait().for_element(Locator::Css("div.refusal")).await.unwrap().text().await.unwrap();
    assert!(refused.contains("replication_running") && refused.contains(&stopped.to_string()), "{refused}");
    shot(&c, "refusal").await;
    exec(&t.connector(), &stopped, "START SLAVE SQL_THREAD").await;

    // A takeover from the page: the plan first, then the confirmation; its phases live, then
    // the finished takeover's page.
    let to = t.replicas()[0].clone();
    c.goto(&format!("{base}/ui/clusters/{alias}")).await.unwrap();
    c.find(Locator::Css(&format!("form.takeover select option[value='{to}']"))).await.unwrap().click().await.unwrap();
    c.find(Locator::Css("form.takeover button")).await.unwrap().click().await.unwrap();
    let confirm = c.wait().for_element(Locator::Css("form.confirm button")).await.unwrap();
    let plan = c.source().await.unwrap();
    assert!(plan.contains("Plan hash") && plan.contains("read_only"), "the plan shows its hash and statements");
    shot(&c, "plan").await;
    confirm.click().await.unwrap();
    c.wait()
        .at_most(Duration::from_secs(30))
        .for_element(Locator::XPath("//dd/span[contains(@class,'status') and text()='promoted']"))
        .await
        .expect("the finished takeover's page, promoted");
    assert_eq!(assert_one_master(&t, &[]).await, to, "the new master, on the servers");
    c.goto(&format!("{base}/ui/takeovers")).await.unwrap();
    let link = c.find(Locator::Css("table.takeovers tbody tr td a")).await.unwrap();
    shot(&c, "takeovers").await;
    link.click().await.unwrap();
    let bars = c.wait().for_element(Locator::Css("svg.timeline")).await.unwrap();
    assert!(bars.html(false).await.unwrap().contains("promote"));
    let page = c.source().await.unwrap();
    assert!(page.contains("SET GLOBAL read_only = ON") || page.contains("read_only"), "the SQL per instance is shown");
    script_ok(&c).await;
    shot(&c, "takeover").await;

    // The new topology, on the page.
    c.goto(&format!("{base}/ui/clusters/{alias}")).await.unwrap();
    let master = c.find(Locator::Css("svg.topology g.instance[data-role=master]")).await.unwrap();
    assert_eq!(master.attr("data-instance").await.unwrap(), Some(to.to_string()));

    // An instance command from the page, confirmed in the browser's own dialog: replication
    // stopped on a replica (the outcome on the page it returns to, and on the server), then
    // started again the same way.
    let r = t.replicas().into_iter().find(|k| *k != to).unwrap();
    let form = format!("form.command[action='/ui/instances/{}/{}/command']", r.host, r.port);
    for (command, sql_running) in [("stop-replica", "No"), ("start-replica", "Yes")] {
        c.find(Locator::Css(&format!("{form} select[name=command] option[value='{command}']")))
            .await
            .unwrap()
            .click()
            .await
            .unwrap();
        c.find(Locator::Css(&format!("{form} button"))).await.unwrap().click().await.unwrap();
        wait_until("the confirmation dialog", Duration::from_secs(10), || async { c.accept_alert().await.is_ok() })
            .await;
        let outcome = c
            .wait()
            .for_element(Locator::XPath(&format!("//div[@id='outcome'][contains(., '{command} {r}')]")))
            .await
            .expect("the command's outcome on the page")
            .text()
            .await
            .unwrap();
        assert!(outcome.contains(": done"), "{outcome}");
        let status = t.connector().query(&r, "SHOW SLAVE STATUS").await.unwrap();
        assert_eq!(status[0].text(&["Slave_SQL_Running"]), Some(sql_running), "{command} on the server");
        if command == "stop-replica" {
            shot(&c, "command").await;
        }
    }
    script_ok(&c).await;

    // A forged POST (another browser's token, or from another site) is refused; nothing runs.
    let forged = http
        .post(format!("{base}/ui/clusters/{alias}/takeover"))
        .form(&[
            ("csrf", "0123456789abcdef0123456789abcdef"),
            ("designated", m.to_string().as_str()),
            ("plan_hash", "x"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status().as_u16(), 403);
    let cross = http
        .post(format!("{base}/ui/clusters/{alias}/plan"))
        .header("origin", "https://evil.example")
        .form(&[("csrf", "x")])
        .send()
        .await
        .unwrap();
    assert_eq!(cross.status().as_u16(), 403);
    assert_eq!(assert_one_master(&t, &[]).await, to, "nothing changed");

    // The scripts page: the policy tried on the live cluster (a dry run), then a reload.
    c.goto(&format!("{base}/ui/scripts")).await.unwrap();
    c.find(Locator::Css("form.try input[name=cluster]")).await.unwrap().send_keys(&alias).await.unwrap();
    c.find(Locator::Css("form.try button")).await.unwrap().click().await.unwrap();
    c.wait().for_element(Locator::XPath("//p[starts-with(., 'The policy picks')]")).await.expect("the policy's choice");
    let page = c.source().await.unwrap();
    assert!(page.contains("The policy picks"), "{page}");
    script_ok(&c).await;
    shot(&c, "scripts").await;
    c.find(Locator::Css("form.takeover button")).await.unwrap().click().await.unwrap();
    // The next page, not the one the click was on.
    c.wait().for_element(Locator::XPath("//main/h1[text()='Scripts reloaded']")).await.expect("scripts reloaded");
    assert_eq!(assert_one_master(&t, &[]).await, to, "a dry run changes nothing");

    // A phone's width: nothing wider than the window but the scrolling table and picture.
    c.set_window_size(390, 844).await.unwrap();
    c.goto(&format!("{base}/")).await.unwrap();
    let fits = c.execute("return document.body.scrollWidth <= window.innerWidth + 1;", vec![]).await.unwrap();
    assert_eq!(fits, true, "the page is wider than a phone");
    shot(&c, "clusters-phone").await;

    // Nothing went wrong in the browser on any page: no failed load, no policy violation, no
    // script error (the pages' own listener above sees only the last two).
    let errors = browser_errors(&c, d.1).await;
    assert!(errors.is_empty(), "the browser's console: {errors:?}");
    c.close().await.unwrap();
    let _ = stop.send(());
    let _ = tokio::time::timeout(Duration::from_secs(10), server).await;
}

/// A 1+2 cluster of `baton-sim` on loopback addresses of its own (`127.x.{net}.1` onwards), and
/// a configuration for a service in a fresh directory, without scripts (auth left to the test).
async fn sim_service(net: u8) -> (baton::sim::Sim, baton::config::Config, std::path::PathBuf) {
    baton::init_crypto();
    let b = 2 + (std::process::id() % 200) as u8;
    let spec = baton::sim::SimSpec {
        clusters: 1,
        cluster_size: 3,
        first_ip: std::net::Ipv4Addr::new(127, b, net, 1),
        port: free_port(),
        wildcard: false,
    };
    let sim = baton::sim::Sim::start(&spec).await.unwrap();
    let dir = std::env::temp_dir().join(format!("baton-console-{}", uuid::Uuid::new_v4().simple()));
    let mut cfg = baton::config::Config::default();
    cfg.paths.data_dir = dir.join("data");
    cfg.paths.scripts_dir = dir.join("scripts");
    cfg.paths.hooks_dir = dir.join("hooks");
    cfg.scripts.policy = String::new();
    (sim, cfg, dir)
}

/// Roles on the console (basic auth, over HTTP: no browser needed): a read user sees the topology
/// without the takeover form and cannot post one; an admin sees the form; a form posted without
/// this browser's token is refused. Against `baton-sim` (the page discovers live).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_user_sees_no_action_and_cannot_post_one() {
    use baton::config::{AuthMode, HttpUser, Role};
    let (sim, mut cfg, dir) = sim_service(9).await;
    cfg.http.auth = AuthMode::Basic;
    let hash = |p: &str| baton::http::auth::hash_password(p).unwrap();
    cfg.http.users.insert("ops".into(), HttpUser { password_hash: hash("ops-secret"), role: Role::Admin });
    cfg.http.users.insert("viewer".into(), HttpUser { password_hash: hash("view-secret"), role: Role::Read });
    let state = baton::http::AppState::new(&cfg).await.unwrap();
    let members = sim.clusters().remove(0);
    let master = members[0].to_string();
    let k = baton::store::KnownCluster {
        name: members[0].to_string(),
        alias: Some("sim".into()),
        members,
        claimed_alias: None,
        seen_at: 0,
    };
    state.engine.store.remember_cluster(&k).unwrap();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, baton::http::router(state)).await });
    let http = reqwest::Client::new();

    let page = |user: &'static str, pass: &'static str| {
        let (http, base, master) = (http.clone(), base.clone(), master.clone());
        async move {
            let r = http.get(format!("{base}/ui/clusters/{master}")).basic_auth(user, Some(pass)).send().await.unwrap();
            assert!(r.status().is_success(), "{user}: {}", r.status());
            let cookie = r.headers().get("set-cookie").map(|v| v.to_str().unwrap().to_string());
            (r.text().await.unwrap(), cookie)
        }
    };
    let (viewer_page, _) = page("viewer", "view-secret").await;
    assert!(
        viewer_page.contains("svg") && !viewer_page.contains("form class=\"takeover\""),
        "a read user sees no form"
    );
    // The alias still resolves after that discovery (the simulator names none itself).
    let by_alias =
        http.get(format!("{base}/ui/clusters/sim")).basic_auth("viewer", Some("view-secret")).send().await.unwrap();
    assert!(by_alias.status().is_success(), "the alias was lost: {}", by_alias.status());
    let (admin_page, cookie) = page("ops", "ops-secret").await;
    assert!(admin_page.contains("Plan the takeover"), "an admin sees the form");
    let cookie = cookie.expect("the page sets the CSRF cookie");
    let token = cookie.split(';').next().unwrap().trim_start_matches("baton_csrf=").to_string();

    // The plan form posted as `user`, with or without the browser's token cookie.
    let post_plan = |user: &'static str, pass: &'static str, cookie: bool| {
        let (http, base, master, token) = (http.clone(), base.clone(), master.clone(), token.clone());
        async move {
            let mut r = http.post(format!("{base}/ui/clusters/{master}/plan")).basic_auth(user, Some(pass));
            if cookie {
                r = r.header("cookie", format!("baton_csrf={token}"));
            }
            r.form(&[("csrf", token.as_str())]).send().await.unwrap()
        }
    };
    // A read user cannot post (role), even with a valid token.
    assert_eq!(post_plan("viewer", "view-secret", true).await.status().as_u16(), 403);
    // An admin's form without the token its browser holds is refused; with it, the plan shows.
    assert_eq!(post_plan("ops", "ops-secret", false).await.status().as_u16(), 403, "no cookie: refused");
    let r = post_plan("ops", "ops-secret", true).await;
    assert!(r.status().is_success(), "{}", r.status());
    let plan = r.text().await.unwrap();
    assert!(plan.contains("Plan hash"), "{plan}");

    // Instance actions: an admin sets a rule and a downtime, then ends it; a read user cannot.
    let replica = sim.clusters()[0][1].clone();
    let act = |user: &'static str, pass: &'static str, what: &'static str, form: Vec<(&'static str, String)>| {
        let (http, base, token, replica) = (http.clone(), base.clone(), token.clone(), replica.clone());
        async move {
            let mut form = form;
            form.push(("csrf", token.clone()));
            http.post(format!("{base}/ui/instances/{}/{}/{what}", replica.host, replica.port))
                .basic_auth(user, Some(pass))
                .header("cookie", format!("baton_csrf={token}"))
                .form(&form)
                .send()
                .await
                .unwrap()
                .status()
                .as_u16()
        }
    };
    let cluster = ("cluster", master.clone());
    assert_eq!(act("viewer", "view-secret", "rule", vec![cluster.clone(), ("rule", "must_not".into())]).await, 403);
    // The redirect back to the topology is followed: 200 at the end.
    assert_eq!(act("ops", "ops-secret", "rule", vec![cluster.clone(), ("rule", "must_not".into())]).await, 200);
    let shown = |what: &'static str| {
        let (http, base, replica) = (http.clone(), base.clone(), replica.clone());
        async move {
            let v: serde_json::Value = http
                .get(format!("{base}/api/v1/instances/{}/{}", replica.host, replica.port))
                .basic_auth("viewer", Some("view-secret"))
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            v[what].clone()
        }
    };
    assert_eq!(shown("promotion_rule").await["rule"], "must_not");
    let down = vec![cluster.clone(), ("hours", "2".into()), ("reason", "disk swap".into())];
    assert_eq!(act("ops", "ops-secret", "downtime", down).await, 200);
    assert_eq!(shown("downtime").await["reason"], "disk swap");
    assert_eq!(act("ops", "ops-secret", "end-downtime", vec![cluster.clone()]).await, 200);
    assert!(shown("downtime").await.is_null());
    let no_reason = vec![cluster, ("hours", "2".into()), ("reason", " ".into())];
    assert_eq!(act("ops", "ops-secret", "downtime", no_reason).await, 400);
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Auth `token` on the console (over HTTP, against `baton-sim`): a browser without its token is
/// sent to the login page; a wrong token is refused, a cross-site login too; a good one becomes
/// an HttpOnly, SameSite=Strict cookie that opens the console and the API's reads, never the
/// API's changes; the login sends nowhere but this service; logging out drops the cookie.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_user_logs_in_on_the_console() {
    use baton::config::{AuthMode, HttpToken, Role};
    let (sim, mut cfg, dir) = sim_service(10).await;
    cfg.http.auth = AuthMode::Token;
    let good = "tok-admin-3f9c2a7d";
    cfg.http
        .tokens
        .insert("ops".into(), HttpToken { sha256: baton::http::auth::token_digest(good), role: Role::Admin });
    let state = baton::http::AppState::new(&cfg).await.unwrap();
    let master = sim.clusters().remove(0)[0].to_string();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, baton::http::router(state)).await });
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let location = |r: &reqwest::Response| r.headers().get("location").map(|v| v.to_str().unwrap().to_string());

    // No token: to the login page (which, with its assets, needs none).
    let r = http.get(format!("{base}/ui/clusters/{master}")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let to = location(&r).unwrap();
    assert!(to.starts_with("/ui/login?next=%2Fui%2Fclusters%2F"), "{to}");
    let login = http.get(format!("{base}{to}")).send().await.unwrap();
    assert!(login.status().is_success());
    let page = login.text().await.unwrap();
    assert!(page.contains("name=\"token\"") && page.contains("/ui/clusters/"), "the form, and where it goes next");
    assert!(http.get(format!("{base}/ui/assets/baton.css")).send().await.unwrap().status().is_success());
    // The API answers 401 as before (no redirect for programs).
    assert_eq!(http.get(format!("{base}/api/v1/clusters")).send().await.unwrap().status().as_u16(), 401);

    // A wrong token, and a login posted from another site: refused, no cookie.
    let r = http.post(format!("{base}/ui/login")).form(&[("token", "nope"), ("next", "/")]).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 401);
    assert!(r.headers().get("set-cookie").is_none());
    let r = http
        .post(format!("{base}/ui/login"))
        .header("origin", "https://evil.example")
        .form(&[("token", good), ("next", "/")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.headers().get("set-cookie").is_none());

    // The good token: a cookie, and back to this service only (not to another host).
    let r = http
        .post(format!("{base}/ui/login"))
        .form(&[("token", good), ("next", "//evil.example/x")])
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 303);
    assert_eq!(location(&r).as_deref(), Some("/"));
    let set = r.headers().get("set-cookie").unwrap().to_str().unwrap().to_string();
    assert!(set.starts_with(&format!("baton_token={good};")), "{set}");
    assert!(set.contains("HttpOnly") && set.contains("SameSite=Strict") && set.contains("Path=/"), "{set}");
    let cookie = format!("baton_token={good}");

    // The console and the API's reads open with it; the API's changes do not.
    let r = http.get(format!("{base}/ui/clusters/{master}")).header("cookie", &cookie).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    assert!(r.text().await.unwrap().contains("Plan the takeover"), "an admin's page");
    let r = http.get(format!("{base}/api/v1/clusters")).header("cookie", &cookie).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let r = http
        .post(format!("{base}/api/v1/clusters/{master}/takeover"))
        .header("cookie", &cookie)
        .json(&serde_json::json!({ "dry_run": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 401, "the cookie never counts for the API's changes");

    // Logging out drops it; another site cannot log this browser out.
    let r = http
        .post(format!("{base}/ui/logout"))
        .header("cookie", &cookie)
        .header("sec-fetch-site", "cross-site")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 403);
    assert!(r.headers().get("set-cookie").is_none());
    let r = http.post(format!("{base}/ui/logout")).header("cookie", &cookie).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 303);
    let gone = r.headers().get("set-cookie").unwrap().to_str().unwrap();
    assert!(gone.starts_with("baton_token=;") && gone.contains("Max-Age=0"), "{gone}");
    drop(sim);
    let _ = std::fs::remove_dir_all(&dir);
}
