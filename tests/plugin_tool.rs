//! `cdc-host plugin new` and `cdc-host plugin test` through the real binary: a new project in every SDK
//! language builds a component as it stands, `plugin test` runs it over Debezium records, and
//! `--expect` catches a difference; `cdc-host plugins` names each component's language.

mod common;

use std::path::Path;
use std::process::Command;

use common::*;
use serde_json::Value;

fn events(dir: &Path) -> std::path::PathBuf {
    let f = fixtures().join("schemas_false__decimal_precise");
    let mut text = std::fs::read_to_string(f.join("snapshot.ndjson")).unwrap();
    text.push_str(&std::fs::read_to_string(f.join("insert.ndjson")).unwrap());
    let p = dir.join("events.ndjson");
    std::fs::write(&p, text).unwrap();
    p
}

fn plugin_test(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = host(dir, &[&["plugin", "test"], args].concat());
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr),
    )
}

#[test]
fn new_projects_build_and_plugin_test_runs_them() {
    let dir = tempfile::tempdir().unwrap();
    let input = events(dir.path());
    for lang in ["c", "go", "python", "js", "rust"] {
        let name = format!("upper-{lang}");
        let out = host(dir.path(), &["plugin", "new", "--lang", lang, &name]);
        assert!(out.status.success(), "plugin new --lang {lang}: {}", String::from_utf8_lossy(&out.stderr));
        let project = dir.path().join(&name);
        let build = Command::new(project.join("build.sh"))
            .env("CARGO_TARGET_DIR", repo().join("target/plugin-new"))
            .output()
            .unwrap();
        assert!(
            build.status.success(),
            "{lang} project does not build: {}{}",
            String::from_utf8_lossy(&build.stdout),
            String::from_utf8_lossy(&build.stderr)
        );
        let wasm = project.join(format!("{name}.wasm"));
        let (ok, text) =
            plugin_test(dir.path(), &[wasm.to_str().unwrap(), "--input", input.to_str().unwrap()]);
        assert!(ok, "{lang}: {text}");
        let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
        assert_eq!(lines.len(), 8, "{lang}: {text}");
        assert_eq!(lines[0]["outcome"], "keep", "{lang}: {text}");
        assert_eq!(lines[0]["writes"]["email"], "ALICE@EXAMPLE.COM", "{lang}: {text}");
        assert_eq!(lines[0]["position"], "events.ndjson:1");
        // --expect: the same lines pass, a changed line fails with the difference.
        let expected = dir.path().join(format!("{lang}.expected"));
        let expect = || {
            let args = [
                wasm.to_str().unwrap(),
                "--input",
                input.to_str().unwrap(),
                "--expect",
                expected.to_str().unwrap(),
            ];
            plugin_test(dir.path(), &args)
        };
        std::fs::write(&expected, lines.iter().map(|l| l.to_string() + "\n").collect::<String>()).unwrap();
        let (ok, text) = expect();
        assert!(ok && text.contains("ok: 8 events, 0 differences"), "{lang}: {text}");
        let tampered = std::fs::read_to_string(&expected).unwrap().replacen("ALICE@EXAMPLE.COM", "alice", 1);
        std::fs::write(&expected, tampered).unwrap();
        let (ok, text) = expect();
        assert!(!ok && text.contains("event 1: expected") && text.contains("FAILED"), "{lang}: {text}");
    }
}

#[test]
fn plugin_test_passes_configuration_and_reports_rejections() {
    let dir = tempfile::tempdir().unwrap();
    let input = all_scenarios("schemas_true__decimal_string", dir.path());
    let plugin = plugins_dir().join("business-rules.wasm");
    let (ok, text) = plugin_test(
        dir.path(),
        &[
            plugin.to_str().unwrap(),
            "--input",
            input.to_str().unwrap(),
            "--config",
            "min_lifetime_value=1000",
        ],
    );
    assert!(ok, "{text}");
    let lines: Vec<Value> = text.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    assert_eq!(lines.len(), 20, "{text}");
    assert!(lines.iter().any(|l| l["reason"] == "lifetime_value 99.90 is below 1000"), "{text}");
    assert!(lines.iter().any(|l| l["outcome"] == "drop" && l["op"] == "delete"), "{text}");
    let (ok, text) = plugin_test(
        dir.path(),
        &[plugin.to_str().unwrap(), "--input", input.to_str().unwrap(), "--config", "drop_deletes=sometimes"],
    );
    assert!(!ok && text.contains("drop_deletes"), "{text}");
}

#[test]
fn plugins_command_names_each_components_language() {
    let dir = tempfile::tempdir().unwrap();
    for (lang, want) in [
        ("rust", "language=Rust"),
        ("c", "language=C"),
        ("go", "language=Go"),
        ("python", "language=Python"),
        ("js", "language=JavaScript"),
    ] {
        let plugins = repo().join("plugins").join(lang);
        let out = host(dir.path(), &["plugins", "--plugins", plugins.to_str().unwrap()]);
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "{lang}: {}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(text.lines().filter(|l| l.contains(want)).count(), 3, "{lang}: {text}");
    }
}
