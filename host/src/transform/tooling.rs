//! Plugin author tooling behind `cdc-host plugin ...` and the language column of `cdc-host plugins`:
//!
//! - [`test_plugin`]: runs one component through the host's real runtime (same sandbox, same
//!   decoding) over Debezium records and reports, per event, the outcome and the written columns as
//!   JSON lines, optionally checked against expected lines;
//! - [`new_project`]: lays out a plugin project in any SDK language that builds a component as it stands;
//! - [`producers`]: what a component's `producers` custom sections say (language, toolchain).

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};

use super::chain::{limits, wit_batch};
use super::plugin::{Plugin, Runtime};
use super::wit::wit_types as w;
use crate::change::RawBatch;
use crate::config::Config;
use crate::decode::Decoder;
use crate::schema::parse_type;
use crate::source::FileSource;

/// What `cdc-host plugin test` found.
#[derive(Debug, Default)]
pub struct TestReport {
    /// One JSON object per event, in input order.
    pub events: Vec<Value>,
    /// Mismatches against the expected lines (empty when none were given or all matched).
    pub mismatches: Vec<String>,
}

/// Runs the component at `plugin` with `config` over the Debezium records in `input` (decoded as the
/// host decodes them, with `cfg`'s declared types) and returns one line per event:
/// `{"position", "op", "outcome", "reason"?, "writes": {column: value}}`. With `expect`, each line is
/// compared with the same line of that file (JSON equality) and differences are listed.
pub fn test_plugin(
    cfg: &Config,
    plugin: &Path,
    config: Vec<(String, String)>,
    input: &Path,
    expect: Option<&Path>,
) -> anyhow::Result<TestReport> {
    let runtime = Runtime::new(cfg.plugins.cache_dir.clone().or_else(crate::pipeline::default_cache_dir))?;
    let compiled = runtime.compile(plugin)?;
    let mut plugin = Plugin::start(compiled, config, limits(&cfg.plugins))?;
    let declared: HashMap<_, _> = cfg
        .table
        .columns
        .iter()
        .filter_map(|c| parse_type(&c.ty).ok().map(|t| (c.name.clone(), t)))
        .collect();
    let mut decoder = Decoder::new(declared, cfg.decode.decimal_handling);
    let mut source = FileSource::open(input)?;
    let mut report = TestReport::default();
    loop {
        let mut raw = RawBatch::default();
        if !source.read_batch(&mut raw, cfg.sink.batch_size.max(1))? {
            break;
        }
        let decoded = decoder.decode(&raw);
        for d in &decoded.dead_letters {
            report.events.push(json!({
                "position": position(&raw, d.origin),
                "outcome": "undecodable",
                "reason": d.reason,
            }));
        }
        let batch = decoded.batch;
        if batch.is_empty() {
            continue;
        }
        let out =
            plugin.process(&wit_batch(&plugin.description, &batch)).map_err(|e| anyhow::anyhow!("{e}"))?;
        anyhow::ensure!(
            out.outcomes.len() == batch.len(),
            "the plugin returned {} outcomes for {} events",
            out.outcomes.len(),
            batch.len()
        );
        for (i, outcome) in out.outcomes.iter().enumerate() {
            let mut line = Map::new();
            line.insert("position".into(), position(&raw, batch.origins[i]).into());
            line.insert("op".into(), format!("{:?}", batch.ops[i]).to_lowercase().into());
            let (kind, reason) = match outcome {
                w::Outcome::Keep => ("keep", None),
                w::Outcome::Drop => ("drop", None),
                w::Outcome::Reject(r) => ("reject", Some(r.clone())),
            };
            line.insert("outcome".into(), kind.into());
            if let Some(r) = reason {
                line.insert("reason".into(), r.into());
            }
            if kind == "keep" {
                let writes: Map<String, Value> =
                    out.writes.iter().map(|c| (c.name.clone(), column_value(c, i))).collect();
                line.insert("writes".into(), Value::Object(writes));
            }
            report.events.push(Value::Object(line));
        }
    }
    if let Some(path) = expect {
        let text = std::fs::read_to_string(path)?;
        let expected: Vec<Value> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(serde_json::from_str)
            .collect::<Result<_, _>>()
            .map_err(|e| anyhow::anyhow!("{}: not JSON lines: {e}", path.display()))?;
        for i in 0..expected.len().max(report.events.len()) {
            match (expected.get(i), report.events.get(i)) {
                (Some(e), Some(g)) if e == g => {}
                (e, g) => report.mismatches.push(format!(
                    "event {}: expected {}, got {}",
                    i + 1,
                    e.map_or("nothing".into(), Value::to_string),
                    g.map_or("nothing".into(), Value::to_string)
                )),
            }
        }
    }
    Ok(report)
}

fn position(raw: &RawBatch, origin: u32) -> String {
    let i = origin as usize;
    let stream = raw.stream.get(i).and_then(|s| raw.streams.get(*s as usize)).map_or("?", |s| s);
    let name = Path::new(stream).file_name().map_or(stream.to_string(), |n| n.to_string_lossy().into_owned());
    format!("{name}:{}", raw.offsets.get(i).copied().unwrap_or_default())
}

/// One value of a WIT column as JSON: text as is, decimals as exact strings, dates as ISO dates,
/// timestamps as RFC 3339, bytes as hex, null as null.
pub fn column_value(c: &w::Column, i: usize) -> Value {
    if !c.present.get(i).copied().unwrap_or(false) {
        return Value::Null;
    }
    fn var(v: &w::VarArray, i: usize) -> Option<&[u8]> {
        let (a, b) = (*v.offsets.get(i)? as usize, *v.offsets.get(i + 1)? as usize);
        v.data.get(a..b)
    }
    let days = |d: i32| {
        chrono::DateTime::from_timestamp(i64::from(d) * 86_400, 0)
            .map_or(Value::Null, |t| t.date_naive().to_string().into())
    };
    let micros = |t: i64, tz: bool| {
        chrono::DateTime::from_timestamp_micros(t).map_or(Value::Null, |t| {
            let s = t.format("%Y-%m-%dT%H:%M:%S%.6f").to_string();
            if tz { format!("{s}Z").into() } else { s.into() }
        })
    };
    match &c.values {
        w::ColumnValues::Boolean(v) => v.get(i).map_or(Value::Null, |b| (*b).into()),
        w::ColumnValues::Int32(v) => v.get(i).map_or(Value::Null, |x| (*x).into()),
        w::ColumnValues::Int64(v) => v.get(i).map_or(Value::Null, |x| (*x).into()),
        w::ColumnValues::Float64(v) => v.get(i).map_or(Value::Null, |x| (*x).into()),
        w::ColumnValues::Text(v) | w::ColumnValues::Json(v) => {
            var(v, i).map_or(Value::Null, |b| String::from_utf8_lossy(b).into_owned().into())
        }
        w::ColumnValues::Bytes(v) => var(v, i).map_or(Value::Null, |b| {
            b.iter()
                .fold(String::new(), |mut s, x| {
                    let _ = write!(s, "{x:02x}");
                    s
                })
                .into()
        }),
        w::ColumnValues::Decimal(d) => d.unscaled.get(16 * i..16 * i + 16).map_or(Value::Null, |b| {
            let unscaled = i128::from_le_bytes(b.try_into().expect("16 bytes"));
            format_decimal(unscaled, d.type_.scale).into()
        }),
        w::ColumnValues::Date(v) => v.get(i).map_or(Value::Null, |d| days(*d)),
        w::ColumnValues::Timestamp(v) => v.get(i).map_or(Value::Null, |t| micros(*t, false)),
        w::ColumnValues::Timestamptz(v) => v.get(i).map_or(Value::Null, |t| micros(*t, true)),
    }
}

fn format_decimal(unscaled: i128, scale: u8) -> String {
    let digits = unscaled.unsigned_abs().to_string();
    let scale = usize::from(scale);
    let sign = if unscaled < 0 { "-" } else { "" };
    if scale == 0 {
        format!("{sign}{digits}")
    } else if digits.len() > scale {
        let (a, b) = digits.split_at(digits.len() - scale);
        format!("{sign}{a}.{b}")
    } else {
        format!("{sign}0.{}{digits}", "0".repeat(scale - digits.len()))
    }
}

// ---- producers ----

/// The `producers` custom sections of a component and the modules inside it, merged: field name
/// (`language`, `processed-by`, `sdk`) → `name version` entries, each once, in order of appearance.
pub fn producers(bytes: &[u8]) -> Vec<(String, Vec<String>)> {
    let mut out: Vec<(String, Vec<String>)> = Vec::new();
    walk_sections(bytes, &mut out, 0);
    out
}

/// One line for `cdc-host plugins`: the languages and the tools that produced the component.
pub fn toolchain_summary(bytes: &[u8]) -> String {
    let p = producers(bytes);
    let field = |name: &str| p.iter().find(|(n, _)| n == name).map(|(_, v)| v.join(", ")).unwrap_or_default();
    let (lang, tools, sdk) = (field("language"), field("processed-by"), field("sdk"));
    let mut parts = Vec::new();
    // The guest language, as far as the toolchain tells it. Adapters and language runtimes bring
    // their own entries (the WASI adapter is Rust, CPython and SpiderMonkey are C/C++), so the
    // most specific signal wins.
    let has = |needle: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    let guess = if lang.contains("JavaScript") {
        "JavaScript"
    } else if tools.contains("componentize-py") || tools.contains("component-init") || has(b"libpython3") {
        "Python"
    } else if lang.contains("Go") {
        "Go"
    } else if lang.split(", ").any(|l| l.starts_with("C1") || l.starts_with("C9") || l == "C") {
        "C"
    } else if lang.contains("Rust") || tools.contains("wit-bindgen-rust") {
        "Rust"
    } else {
        ""
    };
    if !guess.is_empty() {
        parts.push(format!("language={guess}"));
    }
    if !lang.is_empty() {
        parts.push(format!("languages=[{lang}]"));
    }
    if !tools.is_empty() {
        parts.push(format!("toolchain=[{tools}]"));
    }
    if !sdk.is_empty() {
        parts.push(format!("sdk=[{sdk}]"));
    }
    if parts.is_empty() { "toolchain=unknown (no producers section)".into() } else { parts.join("  ") }
}

fn leb(bytes: &[u8], pos: &mut usize) -> Option<u64> {
    let mut result = 0u64;
    let mut shift = 0;
    loop {
        let b = *bytes.get(*pos)?;
        *pos += 1;
        result |= u64::from(b & 0x7f) << shift;
        if b & 0x80 == 0 {
            return Some(result);
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
}

fn name<'a>(bytes: &'a [u8], pos: &mut usize) -> Option<&'a str> {
    let len = leb(bytes, pos)? as usize;
    let s = std::str::from_utf8(bytes.get(*pos..*pos + len)?).ok()?;
    *pos += len;
    Some(s)
}

fn walk_sections(bytes: &[u8], out: &mut Vec<(String, Vec<String>)>, depth: usize) {
    // "\0asm", version (2 bytes), layer (2 bytes): layer 1 is a component, 0 a core module.
    if depth > 8 || bytes.len() < 8 || &bytes[..4] != b"\0asm" {
        return;
    }
    let component = bytes[6] == 1;
    let mut pos = 8;
    while pos < bytes.len() {
        let id = bytes[pos];
        pos += 1;
        let Some(size) = leb(bytes, &mut pos) else { return };
        let Some(body) = bytes.get(pos..pos + size as usize) else { return };
        pos += size as usize;
        match id {
            0 => {
                let mut p = 0;
                if name(body, &mut p) == Some("producers") {
                    read_producers(&body[p..], out);
                }
            }
            // core module (1) and component (4) sections of a component hold nested binaries
            1 | 4 if component => walk_sections(body, out, depth + 1),
            _ => {}
        }
    }
}

fn read_producers(body: &[u8], out: &mut Vec<(String, Vec<String>)>) {
    let mut p = 0;
    let Some(fields) = leb(body, &mut p) else { return };
    for _ in 0..fields {
        let Some(field) = name(body, &mut p) else { return };
        let Some(n) = leb(body, &mut p) else { return };
        for _ in 0..n {
            let (Some(tool), Some(version)) = (name(body, &mut p), name(body, &mut p)) else { return };
            let entry = if version.is_empty() { tool.to_string() } else { format!("{tool} {version}") };
            let slot = match out.iter_mut().position(|(f, _)| f == field) {
                Some(i) => &mut out[i].1,
                None => {
                    out.push((field.to_string(), Vec::new()));
                    &mut out.last_mut().expect("just pushed").1
                }
            };
            if !slot.contains(&entry) {
                slot.push(entry);
            }
        }
    }
}

// ---- new projects ----

/// The languages `cdc-host plugin new` knows.
pub const LANGUAGES: [&str; 5] = ["rust", "c", "go", "python", "js"];

/// Creates a plugin project `name` in `dir` (which must not exist) for `lang`, using the SDKs of the
/// repository at `repo`: an `upper-email`-style transform (upper-cases `email`, rejects events without
/// one), a `build.sh` that builds `<name>.wasm`, and a README. Returns the files written.
pub fn new_project(lang: &str, name: &str, dir: &Path, repo: &Path) -> anyhow::Result<Vec<PathBuf>> {
    anyhow::ensure!(
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
        "plugin name `{name}`: use letters, digits, `-` and `_`"
    );
    anyhow::ensure!(!dir.exists(), "{} already exists", dir.display());
    let repo = std::fs::canonicalize(repo)
        .map_err(|e| anyhow::anyhow!("the cdc-host repository (SDKs) at {}: {e}", repo.display()))?;
    anyhow::ensure!(
        repo.join("wit/transform.wit").is_file(),
        "{} is not the cdc-host repository",
        repo.display()
    );
    let r = repo.display().to_string();
    let ident = name.replace('-', "_");
    let files: Vec<(String, String)> = match lang {
        "rust" => vec![
            (
                "Cargo.toml".into(),
                format!(
                    "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n\
                     [dependencies]\ncdc-sdk = {{ path = \"{r}/sdk/rust\" }}\n\n[workspace]\n\n\
                     [profile.release]\nstrip = true\nlto = true\ncodegen-units = 1\n"
                ),
            ),
            ("src/lib.rs".into(), RUST_TEMPLATE.replace("NAME", name)),
            (
                "build.sh".into(),
                format!(
                    "#!/usr/bin/env bash\n# Builds {name}.wasm (a wasm32-wasip2 component).\nset -euo pipefail\ncd \"$(dirname \"$0\")\"\n\
                     cargo build --quiet --release --target wasm32-wasip2\ncp \"${{CARGO_TARGET_DIR:-target}}/wasm32-wasip2/release/{ident}.wasm\" {name}.wasm\necho {name}.wasm\n"
                ),
            ),
        ],
        "c" => vec![
            ("plugin.c".into(), C_TEMPLATE.replace("NAME", name)),
            (
                "build.sh".into(),
                format!(
                    "#!/usr/bin/env bash\n# Builds {name}.wasm: wit-bindgen c, clang (wasm32-wasi reactor), then the preview1 adapter.\n\
                     set -euo pipefail\ncd \"$(dirname \"$0\")\"\nrepo={r}\neval \"$(\"$repo/scripts/plugin-toolchains\" env)\"\nmkdir -p build\n\
                     \"$WIT_BINDGEN\" c \"$repo/wit\" --world transform --out-dir build/gen >/dev/null 2>&1\n\
                     \"$CLANG\" --target=wasm32-wasi -mexec-model=reactor -O2 -Wall --sysroot=/usr -isystem /usr/include/wasm32-wasi \\\n  \
                     -L/usr/lib/wasm32-wasi -I build/gen -I \"$repo/sdk/c/include\" \"$repo/sdk/c/src/cdc_transform.c\" \\\n  \
                     build/gen/transform.c build/gen/transform_component_type.o plugin.c -o build/core.wasm\n\
                     \"$WASM_TOOLS\" component new build/core.wasm --adapt \"wasi_snapshot_preview1=$WASI_REACTOR_ADAPTER\" -o {name}.wasm\necho {name}.wasm\n"
                ),
            ),
        ],
        "go" => vec![
            (
                "go.mod".into(),
                format!(
                    "module {ident}\n\ngo 1.25\n\nrequire cdchost/transform v0.0.0\n\nreplace cdchost/transform => {r}/sdk/go\n"
                ),
            ),
            ("plugin.go".into(), GO_TEMPLATE.replace("NAME", name).replace("IDENT", &ident)),
            (
                "build.sh".into(),
                format!(
                    "#!/usr/bin/env bash\n# Builds {name}.wasm: wit-bindgen go bindings + the SDK's export glue, Go (wasip1, c-shared),\n\
                     # then the preview1 adapter.\nset -euo pipefail\ncd \"$(dirname \"$0\")\"\nrepo={r}\neval \"$(\"$repo/scripts/plugin-toolchains\" env)\"\n\
                     b=build/component\nrm -rf \"$b\"\n\"$WIT_BINDGEN\" go \"$repo/wit\" --world transform --out-dir \"$b\" >/dev/null 2>&1\n\
                     mkdir -p \"$b/_pkg\" \"$b/export_cdc_transform_transformer\"\ncp -r \"$GO_WIT_PKG/go.mod\" \"$GO_WIT_PKG/wit\" \"$b/_pkg/\"\n\
                     sed -i 's/^go .*/go 1.25/' \"$b/_pkg/go.mod\"\n\
                     sed 's|PLUGIN_IMPORT|{ident}|' \"$repo/sdk/go/glue/export.go.in\" > \"$b/export_cdc_transform_transformer/export.go\"\n\
                     cat > \"$b/go.mod\" <<EOF\nmodule wit_component\n\ngo 1.25\n\nrequire (\n\tgo.bytecodealliance.org/pkg v0.4.0\n\tcdchost/transform v0.0.0\n\t{ident} v0.0.0\n)\n\n\
                     replace go.bytecodealliance.org/pkg => ./_pkg\n\nreplace cdchost/transform => $repo/sdk/go\n\nreplace {ident} => $PWD\nEOF\n\
                     (cd \"$b\" && GOTOOLCHAIN=local GOOS=wasip1 GOARCH=wasm GOFLAGS=-mod=mod GOPROXY=off go build -buildmode=c-shared -ldflags=-checklinkname=0 -o core.wasm .)\n\
                     \"$WASM_TOOLS\" component embed \"$repo/wit\" --world transform \"$b/core.wasm\" -o \"$b/embedded.wasm\"\n\
                     \"$WASM_TOOLS\" component new \"$b/embedded.wasm\" --adapt \"wasi_snapshot_preview1=$WASI_REACTOR_ADAPTER\" -o {name}.wasm\necho {name}.wasm\n"
                ),
            ),
        ],
        "python" => vec![
            ("app.py".into(), PYTHON_TEMPLATE.replace("NAME", name)),
            (
                "build.sh".into(),
                format!(
                    "#!/usr/bin/env bash\n# Builds {name}.wasm with componentize-py (the SDK is on the module path).\nset -euo pipefail\n\
                     cd \"$(dirname \"$0\")\"\nrepo={r}\neval \"$(\"$repo/scripts/plugin-toolchains\" env)\"\n\
                     \"$COMPONENTIZE_PY\" -d \"$repo/wit\" -w transform componentize app -p . -p \"$repo/sdk/python/src\" -o {name}.wasm >/dev/null\necho {name}.wasm\n"
                ),
            ),
        ],
        "js" => vec![
            ("plugin.js".into(), JS_TEMPLATE.replace("NAME", name)),
            (
                "build.sh".into(),
                format!(
                    "#!/usr/bin/env bash\n# Builds {name}.wasm: esbuild bundles plugin.js with the SDK, componentize-js makes the component.\n\
                     set -euo pipefail\ncd \"$(dirname \"$0\")\"\nrepo={r}\neval \"$(\"$repo/scripts/plugin-toolchains\" env)\"\n\
                     node \"$COMPONENTIZE_JS_BUILD\" plugin.js -o {name}.wasm --wit \"$repo/wit\"\n"
                ),
            ),
        ],
        other => anyhow::bail!("unknown language `{other}` (one of {})", LANGUAGES.join(", ")),
    };
    let mut written = Vec::new();
    let readme = format!(
        "# {name}\n\nA cdc-host transform in {lang}. Build it, try it on Debezium records, deploy it:\n\n```sh\n./build.sh\n\
         cdc-host plugin test {name}.wasm --input events.ndjson\ncp {name}.wasm <plugins dir>/   # and name it in [[chain]]\n```\n"
    );
    for (file, text) in files.into_iter().chain([("README.md".to_string(), readme)]) {
        let path = dir.join(&file);
        std::fs::create_dir_all(path.parent().expect("a parent"))?;
        std::fs::write(&path, text)?;
        if file == "build.sh" {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
        }
        written.push(path);
    }
    Ok(written)
}

const RUST_TEMPLATE: &str = r#"//! `NAME`: upper-cases `email`; rejects events without one.
use cdc_sdk::prelude::*;

pub struct Plugin;

impl Transform for Plugin {
    fn describe() -> Description {
        Description::new("NAME", env!("CARGO_PKG_VERSION")).reads(["email"]).writes([ColumnDef::text("email")])
    }
    fn configure(_config: &Config) -> Result<Self, String> {
        Ok(Plugin)
    }
    fn apply(&self, event: &mut Event<'_>) -> Outcome {
        match event.text("email").map(str::to_uppercase) {
            Some(e) => event.set("email", e),
            None => return Outcome::reject("missing email"),
        }
        Outcome::Keep
    }
}

cdc_sdk::export_transform!(Plugin);
"#;

const C_TEMPLATE: &str = r#"/* `NAME`: upper-cases `email`; rejects events without one. */
#include <ctype.h>
#include <stdlib.h>
#include <string.h>

#include "cdc_transform.h"

static const char *reads[] = {"email"};
static const cdc_column_def writes[] = {{"email", CDC_TEXT, 0, 0, NULL}};
static const cdc_description description = {"NAME", "0.1.0", reads, 1, false, writes, 1, NULL, 0};

const cdc_description *cdc_plugin_describe(void) { return &description; }

char *cdc_plugin_configure(const cdc_config *config) { return NULL; }

cdc_outcome cdc_plugin_apply(cdc_event *event) {
    cdc_str email;
    if (!cdc_event_text(event, "email", &email)) return cdc_reject("missing email");
    char *upper = malloc(email.len + 1);
    for (size_t i = 0; i < email.len; i++) upper[i] = (char)toupper((unsigned char)email.ptr[i]);
    cdc_event_set_text(event, "email", upper, email.len);
    free(upper);
    return cdc_keep();
}
"#;

const GO_TEMPLATE: &str = r#"// Package IDENT is `NAME`: upper-cases `email`; rejects events without one.
package IDENT

import (
	"strings"

	"cdchost/transform"
)

type plugin struct{}

func (plugin) Apply(e *transform.Event) transform.Outcome {
	email, ok := e.Text("email")
	if !ok {
		return transform.Reject("missing email")
	}
	e.SetText("email", strings.ToUpper(email))
	return transform.Keep()
}

func init() {
	transform.Register(transform.Plugin{
		Description: transform.Description{
			Name:    "NAME",
			Version: "0.1.0",
			Reads:   []string{"email"},
			Writes:  []transform.ColumnDef{transform.TextColumn("email", "")},
		},
		Configure: func(transform.Config) (transform.Transform, error) { return plugin{}, nil },
	})
}
"#;

const PYTHON_TEMPLATE: &str = r#""""`NAME`: upper-cases `email`; rejects events without one."""
from cdc_transform import ColumnDef, Description, Keep, Reject, Transform, export


class Plugin(Transform):
    @staticmethod
    def describe():
        return Description("NAME", "0.1.0", reads=["email"], writes=[ColumnDef.text("email")])

    def apply(self, event):
        email = event.text("email")
        if email is None:
            return Reject("missing email")
        event.set("email", email.upper())
        return Keep


Transformer = export(Plugin)
"#;

const JS_TEMPLATE: &str = r#"// `NAME`: upper-cases `email`; rejects events without one.
import { ColumnDef, Keep, reject } from "cdc-transform";

export default class Plugin {
  static describe() {
    return { name: "NAME", version: "0.1.0", reads: ["email"], writes: [ColumnDef.text("email")] };
  }
  apply(event) {
    const email = event.text("email");
    if (email === null) return reject("missing email");
    event.set("email", email.toUpperCase());
    return Keep;
  }
}
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn custom_section(name: &str, payload: &[u8]) -> Vec<u8> {
        let mut body = vec![name.len() as u8];
        body.extend_from_slice(name.as_bytes());
        body.extend_from_slice(payload);
        let mut s = vec![0u8, body.len() as u8];
        s.extend(body);
        s
    }

    fn producers_payload(fields: &[(&str, &[(&str, &str)])]) -> Vec<u8> {
        let mut p = vec![fields.len() as u8];
        for (f, entries) in fields {
            p.push(f.len() as u8);
            p.extend_from_slice(f.as_bytes());
            p.push(entries.len() as u8);
            for (n, v) in *entries {
                p.push(n.len() as u8);
                p.extend_from_slice(n.as_bytes());
                p.push(v.len() as u8);
                p.extend_from_slice(v.as_bytes());
            }
        }
        p
    }

    #[test]
    fn producers_of_nested_modules_are_merged() {
        let mut module = b"\0asm\x01\0\0\0".to_vec();
        module.extend(custom_section(
            "producers",
            &producers_payload(&[("language", &[("C11", "")]), ("processed-by", &[("clang", "19.1.7")])]),
        ));
        let mut component = b"\0asm\x0d\0\x01\0".to_vec();
        component.push(1);
        component.push(module.len() as u8);
        component.extend(&module);
        component.extend(custom_section(
            "producers",
            &producers_payload(&[("processed-by", &[("wit-component", "0.1"), ("clang", "19.1.7")])]),
        ));
        let p = producers(&component);
        assert_eq!(
            p,
            vec![
                ("language".to_string(), vec!["C11".to_string()]),
                (
                    "processed-by".to_string(),
                    vec!["clang 19.1.7".to_string(), "wit-component 0.1".to_string()]
                ),
            ]
        );
        let s = toolchain_summary(&component);
        assert!(s.starts_with("language=C ") && s.contains("clang 19.1.7"), "{s}");
        assert_eq!(toolchain_summary(b"\0asm\x01\0\0\0"), "toolchain=unknown (no producers section)");
        assert!(producers(b"garbage").is_empty());
    }

    #[test]
    fn decimals_and_values_format_exactly() {
        assert_eq!(format_decimal(-4250, 2), "-42.50");
        assert_eq!(format_decimal(5, 3), "0.005");
        assert_eq!(format_decimal(-5, 3), "-0.005");
        assert_eq!(format_decimal(12, 0), "12");
        let col = w::Column {
            name: "d".into(),
            present: vec![true, false],
            values: w::ColumnValues::Date(vec![19782, 0]),
        };
        assert_eq!(column_value(&col, 0), Value::from("2024-02-29"));
        assert_eq!(column_value(&col, 1), Value::Null);
    }

    #[test]
    fn new_project_refuses_bad_input() {
        let dir = tempfile::tempdir().unwrap();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap();
        assert!(
            new_project("cobol", "x", &dir.path().join("x"), repo).unwrap_err().to_string().contains("cobol")
        );
        assert!(new_project("rust", "a b", &dir.path().join("y"), repo).is_err());
        let files = new_project("python", "upper", &dir.path().join("upper"), repo).unwrap();
        assert!(files.iter().any(|f| f.ends_with("app.py")));
        assert!(
            new_project("python", "upper", &dir.path().join("upper"), repo)
                .unwrap_err()
                .to_string()
                .contains("exists")
        );
    }
}

// ---- the `cdc-host plugin` command line ----

/// `cdc-host plugin ...`: tools for plugin authors.
#[derive(clap::Subcommand, Debug)]
pub enum PluginCommand {
    /// Create a plugin project (an `email` upper-caser to start from) that builds a component as it stands.
    New {
        /// rust, c, go, python or js.
        #[arg(long)]
        lang: String,
        /// The plugin's name (and the project directory's, unless --dir is given).
        name: String,
        /// Where to create the project (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
        /// The cdc-host repository whose SDKs the project uses (default: the one this binary was built from).
        #[arg(long, env = "CDC_HOST_REPO")]
        repo: Option<PathBuf>,
    },
    /// Run a component through the host's runtime over Debezium records; print each event's outcome
    /// and written columns as JSON lines (or check them against --expect).
    Test {
        /// The component.
        plugin: PathBuf,
        /// Debezium records, one JSON object per line.
        #[arg(long)]
        input: PathBuf,
        /// Plugin configuration, `key=value` (repeatable; `--config key=value` is read as this).
        #[arg(long = "config-value", short = 'c', value_name = "KEY=VALUE")]
        settings: Vec<String>,
        /// Expected output (JSON lines, as this command prints them): exit 1 on any difference.
        #[arg(long)]
        expect: Option<PathBuf>,
    },
}

impl PluginCommand {
    /// Runs the command; `Ok(false)` when `plugin test --expect` found differences.
    pub fn run(&self, cfg: &Config) -> anyhow::Result<bool> {
        match self {
            PluginCommand::New { lang, name, dir, repo } => {
                let dir = dir.clone().unwrap_or_else(|| PathBuf::from(name));
                let repo = repo.clone().unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join(".."));
                for f in new_project(lang, name, &dir, &repo)? {
                    println!("{}", f.display());
                }
                Ok(true)
            }
            PluginCommand::Test { plugin, input, settings, expect } => {
                let pairs = settings
                    .iter()
                    .map(|kv| {
                        kv.split_once('=')
                            .map(|(k, v)| (k.trim().to_string(), v.to_string()))
                            .ok_or_else(|| anyhow::anyhow!("--config-value `{kv}`: expected KEY=VALUE"))
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                // Plugins run off the async runtime, as in the pipeline (WASI calls block).
                let report = std::thread::scope(|s| {
                    s.spawn(|| test_plugin(cfg, plugin, pairs, input, expect.as_deref())).join()
                })
                .map_err(|_| anyhow::anyhow!("plugin test panicked"))??;
                if expect.is_none() {
                    for e in &report.events {
                        println!("{e}");
                    }
                    return Ok(true);
                }
                for m in &report.mismatches {
                    println!("{m}");
                }
                let ok = report.mismatches.is_empty();
                println!(
                    "{}: {} events, {} differences",
                    if ok { "ok" } else { "FAILED" },
                    report.events.len(),
                    report.mismatches.len()
                );
                Ok(ok)
            }
        }
    }
}

/// The command line with `plugin test`'s `--config KEY=VALUE` (a plugin setting) told apart from the
/// global `--config FILE`: such arguments become `--config-value KEY=VALUE`.
pub fn plugin_test_args(args: impl IntoIterator<Item = std::ffi::OsString>) -> Vec<std::ffi::OsString> {
    let mut args: Vec<std::ffi::OsString> = args.into_iter().collect();
    let is = |a: &std::ffi::OsString, s: &str| a.to_str() == Some(s);
    let testing = args.windows(2).any(|w| is(&w[0], "plugin") && is(&w[1], "test"));
    if testing {
        for i in 0..args.len() {
            let value_has_eq = args.get(i + 1).and_then(|v| v.to_str()).is_some_and(|v| v.contains('='));
            if is(&args[i], "--config") && value_has_eq {
                args[i] = "--config-value".into();
            } else if let Some(kv) =
                args[i].to_str().and_then(|a| a.strip_prefix("--config=")).filter(|v| v.contains('='))
            {
                args[i] = format!("--config-value={kv}").into();
            }
        }
    }
    args
}

/// [`toolchain_summary`] of the component file at `path` (empty when it cannot be read).
pub fn toolchain_of(path: &Path) -> String {
    std::fs::read(path).map(|b| toolchain_summary(&b)).unwrap_or_default()
}
