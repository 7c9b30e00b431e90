//! Client libraries in other languages (matrix-nio, matrix-js-sdk), driven as subprocesses:
//! their installed environment, and the line-based JSON conversation with a driving script.

use std::{
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::OnceLock,
    time::Duration,
};

use serde_json::Value;
use tokio::{
    io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines},
    process::{Child, ChildStdin, ChildStdout},
};

/// Where the client libraries are installed (outside the clone, see `tests/clients/setup`).
pub struct ClientEnv {
    /// The Python of the venv that has matrix-nio.
    pub python: PathBuf,
    /// The Node 22 that runs the matrix-js-sdk scripts.
    pub node: PathBuf,
}

/// `tests/clients`: the driving scripts and the files that pin their libraries.
pub fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("clients")
}

/// Installs the client libraries on first use (`tests/clients/setup`, idempotent and fast once
/// done) and returns where they are.
pub fn client_env() -> &'static ClientEnv {
    static ENV: OnceLock<ClientEnv> = OnceLock::new();
    ENV.get_or_init(|| {
        let [python, node] = run_setup(&clients_dir().join("setup"), ["python", "node"]);
        ClientEnv { python, node }
    })
}

/// Runs an install script that prints `name=path` lines on stdout (its own messages go to
/// stderr) and returns the path printed for each of `names`, each checked to exist.
pub fn run_setup<const N: usize>(setup: &Path, names: [&str; N]) -> [PathBuf; N] {
    let output = Command::new("bash")
        .arg(setup)
        .stderr(Stdio::inherit())
        .output()
        .unwrap_or_else(|err| panic!("run {}: {err}", setup.display()));
    assert!(output.status.success(), "{} failed: {}", setup.display(), output.status);
    let stdout = String::from_utf8(output.stdout).expect("setup prints UTF-8");
    names.map(|name| {
        let path = stdout
            .lines()
            .find_map(|line| line.strip_prefix(&format!("{name}=")))
            .map(PathBuf::from)
            .unwrap_or_else(|| panic!("{} printed no {name}=: {stdout}", setup.display()));
        assert!(path.exists(), "{} is missing", path.display());
        path
    })
}

/// The longest a script may take to answer one command. Its own waits give up sooner (30 s by
/// default), so this only fires when the script itself is stuck.
const REPLY_TIMEOUT: Duration = Duration::from_secs(90);

/// A client script that answers each JSON command line with one JSON reply line. Killed when
/// dropped.
pub struct ScriptedClient {
    name: String,
    child: Child,
    stdin: ChildStdin,
    stdout: Lines<BufReader<ChildStdout>>,
}

impl ScriptedClient {
    /// Starts `program` with `args`; `name` labels its failures.
    pub fn spawn(name: &str, program: &Path, args: &[&str]) -> Self {
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|err| panic!("start {name} ({}): {err}", program.display()));
        let stdin = child.stdin.take().expect("piped stdin");
        let stdout = BufReader::new(child.stdout.take().expect("piped stdout")).lines();
        Self { name: name.to_owned(), child, stdin, stdout }
    }

    /// Sends `command` and returns the reply: `Ok` with its fields, or the script's error.
    pub async fn try_request(&mut self, command: Value) -> Result<Value, String> {
        let cmd = command["cmd"].clone();
        let line = format!("{command}\n");
        self.stdin.write_all(line.as_bytes()).await.expect("write to the script");
        self.stdin.flush().await.expect("flush to the script");
        let reply = match tokio::time::timeout(REPLY_TIMEOUT, self.stdout.next_line()).await {
            Err(_) => panic!("{}: no reply to {cmd} within {REPLY_TIMEOUT:?}", self.name),
            Ok(Err(err)) => panic!("{}: reading the reply to {cmd}: {err}", self.name),
            Ok(Ok(None)) => {
                let status = self.child.wait().await.ok();
                panic!("{}: exited ({status:?}) before replying to {cmd}", self.name)
            }
            Ok(Ok(Some(reply))) => reply,
        };
        let reply: Value = serde_json::from_str(&reply).unwrap_or_else(|err| {
            panic!("{}: reply to {cmd} is not JSON ({err}): {reply}", self.name)
        });
        if reply["ok"] == Value::Bool(true) {
            Ok(reply)
        } else {
            Err(reply["error"].as_str().unwrap_or("no error given").to_owned())
        }
    }

    /// Sends `command`; panics with the script's error if it failed.
    pub async fn request(&mut self, command: Value) -> Value {
        let cmd = command["cmd"].clone();
        match self.try_request(command).await {
            Ok(reply) => reply,
            Err(error) => panic!("{}: {cmd} failed: {error}", self.name),
        }
    }
}
