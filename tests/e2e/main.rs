//! End to end, with the real programs (issue #5): PostgreSQL (one database per instance, SQLite
//! when no server is installed), the Django example `examples/cts-django` under gunicorn's sync
//! workers forked by ctsd's preload loaders (`python -m cts_preload`), and nginx routing by prefix with the config `ctsctl nginx-config`
//! generates. `tests/e2e/setup.sh` installs what is missing (it is run first, and is quick when
//! everything is there). Every process started here is stopped by its pid, also on failure.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::AsRawFd;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

mod celery;
mod preload;

/// "It happened": generous, for shared noisy machines.
const WAIT: Duration = Duration::from_secs(60);

const INSTANCES: [(&str, &str, &str, &str); 3] = [
    ("turkey", "Turkey", "/TR", "TRY"),
    ("iraq", "Iraq", "/IQ", "IQD"),
    ("jordan", "Jordan", "/JO", "JOD"),
];

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A process this test started: on drop, `stop` (by pid), then SIGKILL if it is still there.
struct Proc {
    what: &'static str,
    child: Child,
    stop: nix::sys::signal::Signal,
}

impl Proc {
    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let pid = nix::unistd::Pid::from_raw(self.child.id() as i32);
        let _ = nix::sys::signal::kill(pid, self.stop);
        let end = Instant::now() + Duration::from_secs(30);
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("{} (pid {pid}) did not stop: SIGKILL", self.what);
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("bind")
        .port()
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + WAIT;
    while !cond() {
        assert!(Instant::now() < end, "{what}: not within {WAIT:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Runs a command to completion; panics with its output when it fails.
fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `tests/e2e/setup.sh` (once for the tests of this binary, which run at the same time), then
/// what it found.
fn setup() -> BTreeMap<String, String> {
    static FOUND: std::sync::OnceLock<BTreeMap<String, String>> = std::sync::OnceLock::new();
    FOUND
        .get_or_init(|| {
            run(Command::new("bash").arg(repo().join("tests/e2e/setup.sh")));
            let text =
                std::fs::read_to_string(repo().join("target/e2e/env")).expect("target/e2e/env");
            text.lines()
                .filter_map(|l| l.split_once('='))
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect()
        })
        .clone()
}

/// Starts `ctsd --config config` (its stderr in `dir/ctsd.stderr`) and waits until it is ready:
/// every worker said READY=1.
fn start_ctsd(config: &Path, dir: &Path) -> Proc {
    let (read, write) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
    let wfd = write.as_raw_fd();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_ctsd"));
    cmd.arg("--config")
        .arg(config)
        .args(["--ready-fd", "3"])
        .env_remove("NOTIFY_SOCKET")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("ctsd.stderr")).expect("stderr"));
    // SAFETY: dup2 is async-signal-safe and allocates nothing; `wfd` stays open until the
    // spawn below returns (`write` is dropped after it).
    unsafe {
        cmd.pre_exec(move || {
            if nix::libc::dup2(wfd, 3) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let ctsd = Proc {
        what: "ctsd",
        child: cmd.spawn().expect("start ctsd"),
        stop: nix::sys::signal::Signal::SIGTERM,
    };
    drop(write);
    let readable = {
        use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
        use std::os::fd::AsFd;
        let mut fds = [PollFd::new(read.as_fd(), PollFlags::POLLIN)];
        let ms = PollTimeout::try_from(WAIT.as_millis() as u64 * 2).unwrap_or(PollTimeout::MAX);
        poll(&mut fds, ms).unwrap_or(0) > 0
    };
    let mut byte = [0u8; 1];
    let n = if readable {
        std::fs::File::from(read).read(&mut byte).unwrap_or(0)
    } else {
        0
    };
    let stderr = std::fs::read_to_string(dir.join("ctsd.stderr")).unwrap_or_default();
    assert_eq!(n, 1, "ctsd did not become ready:\n{stderr}");
    ctsd
}

/// A command run as `user` when set (PostgreSQL refuses root).
fn as_user(program: &Path, user: &str) -> Command {
    if user.is_empty() {
        Command::new(program)
    } else {
        let mut c = Command::new("setpriv");
        c.args([
            &format!("--reuid={user}"),
            &format!("--regid={user}"),
            "--init-groups",
            "--",
        ])
        .arg(program);
        c
    }
}

/// A throw-away PostgreSQL cluster in `dir` on a free port, with `cts_<instance>` databases.
fn postgres(bindir: &Path, user: &str, dir: &Path) -> (Proc, u16) {
    let data = dir.join("pgdata");
    std::fs::create_dir(&data).expect("pgdata");
    if !user.is_empty() {
        run(Command::new("chown")
            .arg("-R")
            .arg(user)
            .arg(dir.join("pgdata")));
    }
    run(as_user(&bindir.join("initdb"), user)
        .args(["-U", "cts", "--auth=trust", "-E", "UTF8", "--no-sync", "-D"])
        .arg(&data));
    let port = free_port();
    let child = as_user(&bindir.join("postgres"), user)
        .arg("-D")
        .arg(&data)
        .args([
            "-p",
            &port.to_string(),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
        ])
        .arg(format!("unix_socket_directories={}", data.display()))
        .args(["-c", "fsync=off"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("postgres.log")).expect("log"))
        .spawn()
        .expect("start postgres");
    // SIGINT: PostgreSQL's fast shutdown.
    let pg = Proc {
        what: "postgres",
        child,
        stop: nix::sys::signal::Signal::SIGINT,
    };
    let psql = |args: &[&str]| {
        Command::new(bindir.join("psql"))
            .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-U", "cts"])
            .args(args)
            .output()
    };
    wait_until("postgres accepts connections", || {
        psql(&["-d", "postgres", "-c", "select 1"]).is_ok_and(|o| o.status.success())
    });
    for (key, ..) in INSTANCES {
        let out = psql(&[
            "-d",
            "postgres",
            "-c",
            &format!("create database cts_{key}"),
        ])
        .expect("psql");
        assert!(out.status.success(), "{out:?}");
    }
    (pg, port)
}

/// The instances' databases: a PostgreSQL cluster in `dir` with `cts_<instance>` when setup
/// found one, else SQLite files under `dir/data`; with the environment (YAML flow mapping
/// entries) that selects them.
fn databases(env: &BTreeMap<String, String>, dir: &Path) -> (Option<Proc>, String) {
    let data = format!("CTS_DATA_DIR: {}", dir.join("data").display());
    match env.get("PG_BINDIR").filter(|d| !d.is_empty()) {
        Some(bindir) => {
            let run_as = env.get("PG_RUN_AS").map_or("", String::as_str);
            let (pg, port) = postgres(Path::new(bindir), run_as, dir);
            let vars = format!(
                "CTS_DB_HOST: 127.0.0.1, CTS_DB_PORT: \"{port}\", CTS_DB_USER: cts, {data}"
            );
            (Some(pg), vars)
        }
        None => {
            eprintln!("e2e: PostgreSQL not found: each instance uses its own SQLite database");
            (None, data)
        }
    }
}

/// `GET path` on `port`: status, headers and body.
fn get(port: u16, path: &str) -> Result<(u16, String, String), String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(30)))
        .map_err(|e| e.to_string())?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| format!("read: {e}"))?;
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text
        .split_once("\r\n\r\n")
        .ok_or_else(|| format!("no header end: {text:?}"))?;
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("bad status line: {head:?}"))?;
    Ok((status, head.to_owned(), body.to_owned()))
}

fn get_json(port: u16, path: &str) -> serde_json::Value {
    let (status, head, body) = get(port, path).unwrap_or_else(|e| panic!("GET {path}: {e}"));
    assert_eq!(status, 200, "GET {path}: {head}\n{body}");
    serde_json::from_str(&body).unwrap_or_else(|e| panic!("GET {path}: {e}: {body}"))
}

/// `ctsctl` with the test's config.
fn ctsctl(config: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_ctsctl"));
    c.arg("--config").arg(config).env_remove("CTSD_SOCKET");
    c
}

/// `ctsctl status --json key`: the instance's entry (null when there is none).
fn status_of(config: &Path, key: &str) -> serde_json::Value {
    let out = ctsctl(config)
        .args(["status", "--json", key])
        .output()
        .expect("status");
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    v["instances"][0].clone()
}

/// The ready workers of `key`, from `ctsctl status --json`.
fn ready_pids(config: &Path, key: &str) -> Vec<u32> {
    status_of(config, key)["workers"]
        .as_array()
        .map(|ws| {
            ws.iter()
                .filter(|w| w["state"] == "ready")
                .filter_map(|w| w["pid"].as_u64().map(|p| p as u32))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn django_under_gunicorn_behind_nginx_one_database_per_instance() {
    let started = Instant::now();
    let env = setup();
    let dir = tempfile::tempdir().expect("temp dir");
    // nginx's and PostgreSQL's unprivileged processes must reach their files in here.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");

    let pg_bindir = env.get("PG_BINDIR").filter(|d| !d.is_empty());
    let (_pg, db_env) = databases(&env, dir.path());

    // ctsd's configuration: the example's, with the test's ports, directories and database.
    let ports: Vec<u16> = INSTANCES.iter().map(|_| free_port()).collect();
    let mut yaml = format!(
        "ctsd:\n  environment: staging\n  socket: {}\n  log_dir: {}\n  bind: 127.0.0.1\n\
         defaults:\n  workers: 2\n  preload: true\n  command: [{}, -m, cts_preload, \"cts.wsgi:application\"]\n  \
         cwd: {}\n  env: {{{db_env}, HOME: {}, PYTHONPATH: {}}}\n  ready: {{notify: true, timeout: 60s}}\n  stop_timeout: 20s\ninstances:\n",
        dir.path().join("ctsd.sock").display(),
        dir.path().join("log").display(),
        env["PYTHON"],
        repo().join("examples/cts-django").display(),
        dir.path().display(),
        repo().join("python").display(),
    );
    for ((key, name, prefix, currency), port) in INSTANCES.iter().zip(&ports) {
        yaml.push_str(&format!(
            "  {key}: {{name: {name}, prefix: {prefix}, currency: {currency}, port: {port}}}\n"
        ));
    }
    let config = dir.path().join("ctsd.yaml");
    std::fs::write(&config, yaml).expect("config");

    // Each instance's database, as the deploy would: `ctsctl run <instance> -- manage.py migrate`.
    for (key, ..) in INSTANCES {
        run(ctsctl(&config).args(["run", key, "--"]).args([
            env["PYTHON"].as_str(),
            "manage.py",
            "migrate",
            "--noinput",
        ]));
    }

    // ctsd, ready once every worker said READY=1.
    let ctsd = start_ctsd(&config, dir.path());
    let stderr = || std::fs::read_to_string(dir.path().join("ctsd.stderr")).unwrap_or_default();
    for (key, ..) in INSTANCES {
        assert_eq!(ready_pids(&config, key).len(), 2, "{key}:\n{}", stderr());
    }

    // nginx with the generated routing.
    let nginx_port = free_port();
    let routing = run(ctsctl(&config).args([
        "nginx-config",
        "--server-name",
        "localhost",
        "--listen",
        &format!("127.0.0.1:{nginx_port}"),
    ]));
    let ndir = dir.path().join("nginx");
    std::fs::create_dir(&ndir).expect("nginx dir");
    let temp_paths: String = ["client_body", "proxy", "fastcgi", "uwsgi", "scgi"]
        .iter()
        .map(|t| format!("    {t}_temp_path {};\n", ndir.join(t).display()))
        .collect();
    std::fs::write(
        ndir.join("nginx.conf"),
        format!(
            "worker_processes 1;\nevents {{ worker_connections 256; }}\nhttp {{\n    access_log {};\n{temp_paths}{routing}}}\n",
            ndir.join("access.log").display()
        ),
    )
    .expect("nginx.conf");
    let nginx = Proc {
        what: "nginx",
        child: Command::new(&env["NGINX"])
            .arg("-p")
            .arg(&ndir)
            .arg("-c")
            .arg(ndir.join("nginx.conf"))
            .arg("-e")
            .arg(ndir.join("error.log"))
            .arg("-g")
            .arg(format!(
                "daemon off; pid {};",
                ndir.join("nginx.pid").display()
            ))
            .stdin(Stdio::null())
            .spawn()
            .expect("start nginx"),
        // SIGQUIT: nginx's graceful shutdown.
        stop: nix::sys::signal::Signal::SIGQUIT,
    };
    wait_until("nginx answers", || get(nginx_port, "/JO/hits/").is_ok());

    // Each prefix reaches its own instance, currency, links and database.
    let mut databases = Vec::new();
    for (key, name, prefix, currency) in INSTANCES {
        let v = get_json(nginx_port, &format!("{prefix}/?format=json"));
        assert_eq!(v["instance"], key, "{v}");
        assert_eq!(v["name"], name, "{v}");
        assert_eq!(v["currency"], currency, "{v}");
        assert_eq!(v["link"], format!("{prefix}/hits/"), "{v}");
        assert_eq!(
            v["absolute_link"],
            format!("http://localhost:{nginx_port}{prefix}/hits/"),
            "{v}"
        );
        assert_eq!(v["count"], 1, "first visit of {key}: {v}");
        if pg_bindir.is_some() {
            assert_eq!(v["vendor"], "postgresql", "{v}");
            assert_eq!(v["database"], format!("cts_{key}"), "{v}");
        }
        databases.push(v["database"].as_str().unwrap_or_default().to_owned());
        // The link itself, through nginx.
        assert_eq!(
            get_json(nginx_port, &format!("{prefix}/hits/"))["instance"],
            key
        );
        // `/JO` → `/JO/`.
        let (status, head, _) = get(nginx_port, prefix).expect("redirect");
        assert_eq!(status, 301, "{head}");
        assert!(
            head.lines().any(|l| l == format!("Location: {prefix}/")),
            "{head}"
        );
    }
    databases.dedup();
    assert_eq!(databases.len(), 3, "{databases:?}");
    // Counters are per instance: two more visits of Jordan leave Iraq's alone.
    get_json(nginx_port, "/JO/api/");
    assert_eq!(get_json(nginx_port, "/JO/api/")["count"], 3);
    assert_eq!(get_json(nginx_port, "/IQ/api/")["count"], 2);
    assert_eq!(get_json(nginx_port, "/TR/hits/")["count"], 1);

    // A rolling restart of jordan while a client loops through nginx: every request answered.
    let old = ready_pids(&config, "jordan");
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let looper = {
        let (stop, ok, failed) = (stop.clone(), ok.clone(), failed.clone());
        std::thread::spawn(move || {
            let mut failures = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                match get(nginx_port, "/JO/hits/") {
                    Ok((200, _, body)) if body.contains("\"jordan\"") => {
                        ok.fetch_add(1, Ordering::Relaxed);
                    }
                    other => {
                        failed.fetch_add(1, Ordering::Relaxed);
                        failures.push(format!("{other:?}"));
                    }
                }
            }
            failures
        })
    };
    wait_until("the client loop runs", || ok.load(Ordering::Relaxed) > 20);
    run(ctsctl(&config).args(["restart", "jordan"]));
    let before = ok.load(Ordering::Relaxed);
    wait_until("requests after the restart", || {
        ok.load(Ordering::Relaxed) > before + 20
    });
    stop.store(true, Ordering::Relaxed);
    let failures = looper.join().expect("client loop");
    let new = ready_pids(&config, "jordan");
    assert!(
        new.iter().all(|p| !old.contains(p)) && new.len() == 2,
        "{old:?} → {new:?}"
    );
    assert!(
        failures.is_empty(),
        "{} of {} requests failed during the restart: {failures:?}",
        failed.load(Ordering::Relaxed),
        ok.load(Ordering::Relaxed) + failed.load(Ordering::Relaxed)
    );
    eprintln!(
        "e2e: rolling restart of jordan: {} requests through nginx, 0 failed",
        ok.load(Ordering::Relaxed)
    );

    // kill -9 of a worker (forked by its instance's loader): replaced by a fork from the
    // loader; anything the worker forked goes with its process group.
    let victim = ready_pids(&config, "iraq")[0];
    let children = std::fs::read_to_string(format!("/proc/{victim}/task/{victim}/children"))
        .unwrap_or_default();
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(victim as i32),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    wait_until("a replacement for the killed worker", || {
        let pids = ready_pids(&config, "iraq");
        pids.len() == 2 && !pids.contains(&victim)
    });
    for child in children.split_whitespace() {
        let alive = Path::new(&format!("/proc/{child}")).exists()
            && !std::fs::read_to_string(format!("/proc/{child}/stat"))
                .unwrap_or_default()
                .contains(") Z ");
        assert!(
            !alive,
            "process {child} forked by the worker {victim} outlived it"
        );
    }
    assert_eq!(get_json(nginx_port, "/IQ/api/")["count"], 3);

    drop(nginx);
    let ctsd_pid = ctsd.pid();
    drop(ctsd);
    assert!(
        !Path::new(&format!("/proc/{ctsd_pid}")).exists()
            || std::fs::read_to_string(format!("/proc/{ctsd_pid}/stat"))
                .unwrap_or_default()
                .contains(") Z "),
        "ctsd stopped"
    );
    let summary = format!(
        "e2e: passed in {:.1}s: 3 preloaded instances (gunicorn sync workers) behind {}, each with its own {} database",
        started.elapsed().as_secs_f64(),
        env.get("NGINX").map_or("nginx", |n| n.as_str()),
        if pg_bindir.is_some() {
            "PostgreSQL"
        } else {
            "SQLite (no PostgreSQL server binaries were found)"
        }
    );
    eprintln!("{summary}");
    // tests/run.sh prints it after the tests, where it is seen.
    let _ = std::fs::write(repo().join("target/e2e/summary"), summary + "\n");
}
