//! wrk, the load generator, run as the shell runner ran it: `wrk -tT -cC [-H ...|-s SCRIPT]
//! -dSs --latency URL`, keep-alive, in its own process; and the Lua scripts that ask for a
//! random object of a list on each request.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, bail};
use tollgate_tests::cmd::{Cmd, require_tool};

use crate::stats::WrkRun;

/// One wrk invocation's options before `-d` and the URL.
#[derive(Debug, Clone, Default)]
pub(crate) struct Load {
    pub(crate) threads: u32,
    pub(crate) connections: u32,
    /// `Authorization` header value, sent as `-H "Authorization: ..."`.
    pub(crate) authorization: Option<String>,
    /// A Lua script (`-s`).
    pub(crate) script: Option<std::path::PathBuf>,
}

impl Load {
    /// `threads` is 1 for one connection, else 2, as every figure so far was measured.
    pub(crate) fn at(connections: u32) -> Load {
        Load {
            threads: if connections < 2 { 1 } else { 2 },
            connections,
            ..Load::default()
        }
    }

    pub(crate) fn authorization(mut self, value: &str) -> Load {
        self.authorization = Some(value.to_owned());
        self
    }

    pub(crate) fn script(mut self, script: &Path) -> Load {
        self.script = Some(script.to_owned());
        self
    }

    /// wrk's arguments for a run of `seconds` against `url`.
    pub(crate) fn args(&self, seconds: u32, url: &str) -> Vec<String> {
        let mut args = vec![
            format!("-t{}", self.threads),
            format!("-c{}", self.connections),
        ];
        if let Some(auth) = &self.authorization {
            args.extend(["-H".to_owned(), format!("Authorization: {auth}")]);
        }
        if let Some(script) = &self.script {
            args.extend(["-s".to_owned(), script.display().to_string()]);
        }
        args.extend([
            format!("-d{seconds}s"),
            "--latency".to_owned(),
            url.to_owned(),
        ]);
        args
    }
}

/// Runs wrk with `load` for `seconds` against `url`; refuses a run in which any answer was not
/// a success.
pub(crate) fn measure(load: &Load, seconds: u32, url: &str) -> anyhow::Result<WrkRun> {
    require_tool("wrk", "wrk");
    let args = load.args(seconds, url);
    let output = Cmd::new("wrk")
        .args(&args)
        .timeout(Duration::from_secs(u64::from(seconds) + 120))
        .output();
    let report = String::from_utf8_lossy(&output.stdout);
    if !output.status.success() {
        bail!(
            "wrk against {url} failed ({}): {}{report}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    WrkRun::parse(&report).with_context(|| format!("wrk {}", args.join(" ")))
}

/// A wrk script asking for a random path of the file `paths` (one a line) on each request,
/// with the `Authorization` header `authorization` when given.
pub(crate) fn random_paths_lua(paths: &Path, authorization: Option<&str>) -> String {
    format!(
        r#"local paths = {{}}
for line in io.lines("{}") do paths[#paths + 1] = line end
local header = "{}"
if header ~= "" then wrk.headers["Authorization"] = header end
math.randomseed(os.time() + math.floor(os.clock() * 1000000))
request = function()
  return wrk.format("GET", paths[math.random(#paths)])
end
"#,
        paths.display(),
        authorization.unwrap_or("")
    )
}

/// A wrk script posting `body` as JSON with the bearer `key`: one token request each time.
pub(crate) fn post_json_lua(body: &str, key: &str) -> String {
    format!(
        "wrk.method = \"POST\"\nwrk.body = '{body}'\nwrk.headers[\"Content-Type\"] = \
         \"application/json\"\nwrk.headers[\"Authorization\"] = \"Bearer {key}\"\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn invocations_are_the_measured_ones() {
        let check = |load: Load, expected: &str| {
            assert_eq!(load.args(4, "http://127.0.0.1:1/x").join(" "), expected);
        };
        check(Load::at(1), "-t1 -c1 -d4s --latency http://127.0.0.1:1/x");
        check(
            Load::at(32).authorization("Bearer T"),
            "-t2 -c32 -H Authorization: Bearer T -d4s --latency http://127.0.0.1:1/x",
        );
        check(
            Load::at(128).script(Path::new("/w/gated.lua")),
            "-t2 -c128 -s /w/gated.lua -d4s --latency http://127.0.0.1:1/x",
        );
    }

    #[test]
    fn scripts() {
        let lua = random_paths_lua(Path::new("/w/gated.paths"), Some("Bearer T"));
        assert!(lua.starts_with("local paths = {}\nfor line in io.lines(\"/w/gated.paths\")"));
        assert!(lua.contains("local header = \"Bearer T\"\n"), "{lua}");
        assert!(random_paths_lua(Path::new("/p"), None).contains("local header = \"\"\n"));
        let post = post_json_lua(r#"{"refs": ["app/x"]}"#, "K");
        assert_eq!(
            post,
            "wrk.method = \"POST\"\nwrk.body = '{\"refs\": [\"app/x\"]}'\n\
             wrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"Authorization\"] = \"Bearer K\"\n"
        );
    }
}
