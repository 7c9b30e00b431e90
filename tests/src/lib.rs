//! The test harness: a real `medrix serve` process on loopback, with its own RocksDB
//! directory and free ports, killed and cleaned up when dropped. Used by the server's own
//! HTTP tests and by the real-client tests of this crate.

use std::{
    net::TcpListener,
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use serde_json::{Value, json};

pub mod clients;
pub mod proxy;
pub mod records;

pub const REGISTRATION_TOKEN: &str = "test-registration-token-0123456789";

pub struct TestServer {
    child: Option<Child>,
    pub base: String,
    pub metrics: String,
    pub data_dir: PathBuf,
    extra_args: Vec<String>,
    binary: PathBuf,
    port: u16,
    metrics_port: u16,
    pub http: reqwest::Client,
}

/// A directory name under the temp dir no other test in any process uses: the process ID and
/// a counter (a port from `free_port` would do neither: it is free again at once, and the
/// next call may well return it).
pub fn unique_temp_dir(prefix: &str) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    std::env::temp_dir().join(format!("{prefix}-{}-{n}", std::process::id()))
}

/// A loopback port free now and never handed out before in this process. The port is
/// released at once (the server binds it later), so the kernel may offer it again to the
/// next caller, perhaps for another listener of the same server; remembering what was handed
/// out keeps every test server's ports distinct.
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    loop {
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut handed_out = HANDED_OUT.lock().unwrap();
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

impl TestServer {
    /// Starts `binary` with registration open by token and no rate limits.
    pub async fn start(binary: &str) -> Self {
        Self::start_with(binary, &["--registration-token", REGISTRATION_TOKEN, "--no-rate-limits"])
            .await
    }

    /// Starts `binary` with these extra `serve` flags.
    pub async fn start_with(binary: &str, args: &[&str]) -> Self {
        let data_dir = unique_temp_dir("medrix-test");
        let (port, metrics_port) = (free_port(), free_port());
        let mut server = Self {
            child: None,
            base: format!("http://127.0.0.1:{port}"),
            metrics: format!("http://127.0.0.1:{metrics_port}"),
            data_dir,
            extra_args: args.iter().map(|a| (*a).to_owned()).collect(),
            binary: PathBuf::from(binary),
            port,
            metrics_port,
            http: reqwest::Client::new(),
        };
        server.spawn().await;
        server
    }

    async fn spawn(&mut self) {
        // MEDRIX_TEST_LOG (a RUST_LOG filter) shows the server's log, e.g. each request's route
        // and status with `debug`; otherwise it is discarded.
        let log = std::env::var("MEDRIX_TEST_LOG").ok();
        // Without it, the server logs at info level to a file beside its data, whose tail a
        // failing test prints (see `Drop`): a failure in CI then says what the server saw.
        let log_file = match &log {
            Some(_) => None,
            None => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(self.log_path())
                    .expect("the server's log file"),
            ),
        };
        let child = Command::new(&self.binary)
            .arg("serve")
            .args(["--listen", &format!("127.0.0.1:{}", self.port)])
            .args(["--metrics-listen", &format!("127.0.0.1:{}", self.metrics_port)])
            .args(["--data-dir", self.data_dir.to_str().unwrap()])
            .args(&self.extra_args)
            .env("RUST_LOG", log.as_deref().unwrap_or("info,ruma_state_res=warn"))
            .stdout(match log_file {
                Some(file) => Stdio::from(file),
                None => Stdio::inherit(),
            })
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start medrix");
        self.child = Some(child);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = self.http.get(self.url("/_matrix/client/versions")).send().await
                && response.status().is_success()
            {
                return;
            }
            assert!(Instant::now() < deadline, "medrix did not start");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// `kill -9`, then start again on the same data.
    pub async fn crash_and_restart(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
        self.spawn().await;
    }

    /// `kill -9`, leaving it down (start it with [`TestServer::start_again`]).
    pub fn kill(&mut self) {
        let mut child = self.child.take().unwrap();
        child.kill().unwrap();
        child.wait().unwrap();
    }

    /// Stops the server cleanly, runs `offline` (an operator's task on its data directory),
    /// then starts it again on the same data and ports.
    pub async fn restart_with(&mut self, offline: impl FnOnce(&std::path::Path)) {
        assert!(self.terminate(), "clean shutdown");
        offline(&self.data_dir);
        self.spawn().await;
    }

    /// Starts the server again after [`TestServer::terminate`], on the same data and ports.
    pub async fn start_again(&mut self) {
        assert!(self.child.is_none(), "the server is still running");
        self.spawn().await;
    }

    /// The `medrix` binary this server runs.
    pub fn binary(&self) -> &std::path::Path {
        &self.binary
    }

    /// SIGTERM; returns whether the process exited successfully.
    pub fn terminate(&mut self) -> bool {
        let child = self.child.take().unwrap();
        Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
        let mut child = child;
        child.wait().unwrap().success()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Downloads `mxc` (authenticated media) as `token`'s user: the status and the bytes.
    pub async fn download_media(&self, token: &str, mxc: &str) -> (u16, Vec<u8>) {
        let origin_and_id = mxc.strip_prefix("mxc://").expect("an mxc:// URI");
        let path = format!("/_matrix/client/v1/media/download/{origin_and_id}");
        let response = self.http.get(self.url(&path)).bearer_auth(token).send().await.unwrap();
        let status = response.status().as_u16();
        (status, response.bytes().await.unwrap().to_vec())
    }

    /// Sends a request; returns the status and JSON body.
    pub async fn call(
        &self,
        method: &str,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (u16, Value) {
        call_json(&self.http, method, &self.url(path), token, body).await
    }

    pub async fn raw(&self, method: &str, path: &str, body: Vec<u8>) -> (u16, Value) {
        let response = self
            .http
            .request(method.parse().unwrap(), self.url(path))
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let status = response.status().as_u16();
        (status, response.json().await.unwrap_or(Value::Null))
    }

    /// Registers `localpart` with a password through the server's flow (the registration
    /// token, then the dummy stage); returns the access token.
    pub async fn register(&self, localpart: &str, password: &str) -> String {
        let path = "/_matrix/client/v3/register";
        let account = json!({ "username": localpart, "password": password });
        let with_auth = |auth: Value| {
            let mut body = account.clone();
            body["auth"] = auth;
            body
        };
        let (status, opened) = self.call("POST", path, None, Some(account.clone())).await;
        assert_eq!(status, 401, "the flows first: {opened}");
        let session = &opened["session"];
        let (status, body) = self
            .call("POST", path, None, Some(with_auth(json!({
                "type": "m.login.registration_token", "token": REGISTRATION_TOKEN, "session": session,
            }))))
            .await;
        assert_eq!(status, 401, "the token stage done, the dummy stage next: {body}");
        let (status, body) = self
            .call(
                "POST",
                path,
                None,
                Some(with_auth(json!({"type": "m.login.dummy", "session": session}))),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        body["access_token"].as_str().unwrap().to_owned()
    }
}

/// Sends a request to any server's client API, with an access token and a JSON body if given;
/// returns the status and the JSON body (a string if the body is not JSON).
pub async fn call_json(
    http: &reqwest::Client,
    method: &str,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (u16, Value) {
    let mut request = http.request(method.parse().unwrap(), url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.expect("request sent");
    let status = response.status().as_u16();
    let text = response.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

/// The `medrix` binary that `cargo test --workspace` built beside this test executable
/// (`target/<profile>/medrix`), for tests outside the server package.
pub fn medrix_binary() -> String {
    workspace_binary("medrix")
}

/// A binary of the workspace (`medrix`, `medrix-device`, ...) beside the test executable,
/// as `cargo test --workspace` builds them all.
pub fn workspace_binary(name: &str) -> String {
    let exe = std::env::current_exe().expect("test executable path");
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).expect("target/<profile>/deps");
    let binary = profile_dir.join(name);
    assert!(
        binary.exists(),
        "{} is missing: run `cargo build --workspace --bins` first",
        binary.display()
    );
    binary.to_string_lossy().into_owned()
}

impl TestServer {
    /// Where the server's log goes when `MEDRIX_TEST_LOG` is not set.
    fn log_path(&self) -> PathBuf {
        self.data_dir.with_extension("log")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking()
            && let Ok(log) = std::fs::read_to_string(self.log_path())
        {
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("--- the last lines of {}'s log ---\n{}", self.base, tail.join("\n"));
        }
        let _ = std::fs::remove_dir_all(&self.data_dir);
        let _ = std::fs::remove_file(self.log_path());
    }
}
