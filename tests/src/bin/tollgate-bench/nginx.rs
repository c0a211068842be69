//! The reference: Debian's nginx serving the benchmark's repository as static files, with the
//! configuration every figure in `BENCHMARKS.md` was measured against (keep-alive, no access
//! log, `tcp_nopush`, `tcp_nodelay`, sendfile on or off). It listens on 127.0.0.1 only, on a
//! free port, and is stopped (master and workers) when its guard is dropped, a failure's
//! unwinding included.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tollgate_tests::cmd::require_tool;

/// A running nginx; stopped on drop.
#[derive(Debug)]
pub(crate) struct Nginx {
    child: Child,
    pub(crate) addr: SocketAddr,
    dir: PathBuf,
}

/// nginx's configuration: `root` served on `127.0.0.1:port`, its files in `dir`.
pub(crate) fn config(dir: &Path, root: &Path, port: u16, sendfile: bool) -> String {
    let dir = dir.display();
    let sendfile = if sendfile { "on" } else { "off" };
    format!(
        "worker_processes auto;
pid {dir}/nginx.pid;
error_log {dir}/error.log;
events {{ worker_connections 4096; }}
http {{
  access_log off;
  sendfile {sendfile};
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 65;
  default_type application/octet-stream;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {{
    listen 127.0.0.1:{port};
    root {};
  }}
}}
",
        root.display()
    )
}

impl Nginx {
    /// Starts nginx on `root` with its files in `dir` (made here), and waits until it answers
    /// `probe` (a path of a file under `root`) with 200.
    pub(crate) fn start(
        dir: &Path,
        root: &Path,
        sendfile: bool,
        probe: &str,
    ) -> anyhow::Result<Nginx> {
        require_tool("nginx", "nginx");
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        // The port is free when asked; another process could take it before nginx binds it,
        // which nginx then reports and this retries.
        let mut last = String::new();
        for _ in 0..5 {
            let port = free_port()?;
            let conf = dir.join("nginx.conf");
            std::fs::write(&conf, config(dir, root, port, sendfile))
                .with_context(|| format!("writing {}", conf.display()))?;
            let start_log = dir.join("start.log");
            let log = std::fs::File::create(&start_log)
                .with_context(|| format!("creating {}", start_log.display()))?;
            let child = Command::new("nginx")
                .arg("-c")
                .arg(&conf)
                .arg("-p")
                .arg(dir)
                .args(["-g", "daemon off;"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .spawn()
                .context("starting nginx")?;
            let mut nginx = Nginx {
                child,
                addr: SocketAddr::from(([127, 0, 0, 1], port)),
                dir: dir.to_owned(),
            };
            match nginx.wait_until_serving(probe) {
                Ok(()) => return Ok(nginx),
                Err(e) => last = format!("{e:#}"),
            }
        }
        bail!("nginx did not start: {last}")
    }

    fn wait_until_serving(&mut self, probe: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            if let Some(status) = self.child.try_wait().context("waiting for nginx")? {
                bail!("nginx exited ({status}):\n{}", self.logs());
            }
            let answered = std::net::TcpStream::connect(self.addr).is_ok()
                && tollgate_tests::http::get(self.addr, probe).status == 200;
            if answered {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("nginx did not answer {probe} in 10 s:\n{}", self.logs());
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn logs(&self) -> String {
        ["start.log", "error.log"]
            .iter()
            .map(|name| std::fs::read_to_string(self.dir.join(name)).unwrap_or_default())
            .collect::<Vec<_>>()
            .join("")
    }

    pub(crate) fn url(&self) -> String {
        format!("http://{}/", self.addr)
    }
}

impl Drop for Nginx {
    /// SIGTERM, nginx's fast shutdown, which also ends its workers (a SIGKILL of the master
    /// would leave them serving); SIGKILL if it has not ended in 10 s.
    fn drop(&mut self) {
        crate::process::stop(&mut self.child, Duration::from_secs(10));
    }
}

/// A port on 127.0.0.1 that nothing listens on at the moment.
pub(crate) fn free_port() -> anyhow::Result<u16> {
    let listener = std::net::TcpListener::bind("127.0.0.1:0")
        .context("binding 127.0.0.1:0 to find a free port")?;
    Ok(listener
        .local_addr()
        .context("the free port's address")?
        .port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_is_the_measured_one() {
        let conf = config(Path::new("/w/nginx-on"), Path::new("/w/repo"), 4321, true);
        for line in [
            "worker_processes auto;",
            "pid /w/nginx-on/nginx.pid;",
            "events { worker_connections 4096; }",
            "  access_log off;",
            "  sendfile on;",
            "  tcp_nopush on;",
            "  tcp_nodelay on;",
            "  keepalive_requests 1000000;",
            "  keepalive_timeout 65;",
            "    listen 127.0.0.1:4321;",
            "    root /w/repo;",
        ] {
            assert!(conf.lines().any(|l| l == line), "no {line:?} in\n{conf}");
        }
        let off = config(Path::new("/w/nginx-off"), Path::new("/w/repo"), 1, false);
        assert!(off.contains("  sendfile off;\n"), "{off}");
    }
}
