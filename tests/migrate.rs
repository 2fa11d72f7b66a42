//! `baton import-orchestrator-config` on orchestrator's own sample configurations (read from
//! ../shared, never copied into the project): the output is a configuration Baton loads, and every
//! setting of the input is either carried over or named in a comment with why.

use std::path::Path;

use baton::config::Config;

fn samples() -> Vec<std::path::PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/reference/orchestrator/conf");
    let mut v: Vec<_> = std::fs::read_dir(&dir)
        .map(|d| d.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|x| x == "json")).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn orchestrators_sample_configurations_import() {
    let files = samples();
    if files.is_empty() {
        eprintln!("SKIPPED: no orchestrator sample configurations in ../shared/reference/orchestrator/conf");
        return;
    }
    for f in files {
        let json = std::fs::read_to_string(&f).unwrap();
        let out = baton::migrate::from_orchestrator(&json, &|_| None, &baton::http::auth::hash_password).unwrap();
        let cfg = Config::parse(&out, "imported.toml").unwrap_or_else(|e| panic!("{}: {e}\n{out}", f.display()));
        cfg.validate().unwrap_or_else(|e| panic!("{}: {e}\n{out}", f.display()));
        let input: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&json).unwrap();
        for key in input.keys().filter(|k| !k.starts_with('#')) {
            assert!(out.contains(key.as_str()), "{}: {key} is neither carried over nor explained\n{out}", f.display());
        }
        if f.ends_with("orchestrator-sample.conf.json") {
            assert_eq!(cfg.topology.user, "orc_client_user");
            assert_eq!(cfg.discovery.alias_query, "SELECT SUBSTRING_INDEX(@@hostname, '.', 1)");
            assert_eq!(cfg.takeover.reasonable_lag_s, 20);
            assert!(cfg.scripts.allow_shell);
            let pre = &cfg.scripts.settings["orchestrator"]["PreGracefulTakeoverProcesses"];
            assert!(pre.as_array().unwrap()[0].as_str().unwrap().contains("{failureCluster}"), "{pre:?}");
            assert_eq!(cfg.http.listen, "127.0.0.1:3000");
        }
    }
}

#[test]
fn the_cli_prints_it() {
    let Some(f) = samples().into_iter().next() else { return };
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .arg("import-orchestrator-config")
        .arg(&f)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Config::parse(&String::from_utf8(out.stdout).unwrap(), "cli.toml").unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["import-orchestrator-config", "/nonexistent.json"])
        .output()
        .unwrap();
    assert!(!out.status.success() && String::from_utf8_lossy(&out.stderr).contains("/nonexistent.json"));
}
