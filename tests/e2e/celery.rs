//! A CTS instance as CTS ran it (issue #12): gunicorn, a celery worker on `queue_<instance>` and
//! exactly one celery beat per instance, on a real Redis, with Memcached as Django's cache
//! (`KEY_PREFIX` per instance) and one database per instance, secrets from a 0600 `env_file`,
//! and `ctsctl deploy` of release directories (a good one under a client loop, one whose
//! migration fails, one whose code cannot import). A thread samples the process table
//! throughout: two beats of one instance are never alive at once. Every process started here
//! is stopped by its pid, also on failure.

use super::*;
use std::collections::BTreeSet;

/// Beat's period here.
const PERIOD: f64 = 2.0;

/// Copies the Django example into `to` (what a build would prepare as a release directory).
fn copy_release(to: &Path) {
    run(Command::new("cp")
        .arg("-r")
        .arg(repo().join("examples/cts-django"))
        .arg(to));
    for leftover in ["var", "run", "ctsd.yaml"] {
        let p = to.join(leftover);
        let _ = std::fs::remove_dir_all(&p);
        let _ = std::fs::remove_file(&p);
    }
}

/// Adds `text` to the file `path`.
fn append(path: &Path, text: &str) {
    let mut old = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    old.push_str(text);
    std::fs::write(path, old).expect("write");
}

/// r2: a model `Rate` with its migration, which `/api/` reads (an unmigrated database answers
/// 500 there).
fn release_r2(to: &Path) {
    copy_release(to);
    let app = to.join("cts/counter");
    append(
        &app.join("models.py"),
        "\n\nclass Rate(models.Model):\n    code = models.CharField(max_length=3)\n",
    );
    std::fs::write(
        app.join("migrations/0003_rate.py"),
        "from django.db import migrations, models\n\n\nclass Migration(migrations.Migration):\n    \
         dependencies = [(\"counter\", \"0002_tick\")]\n    operations = [\n        \
         migrations.CreateModel(name=\"Rate\", fields=[(\"id\", models.BigAutoField(primary_key=True, serialize=False)), \
         (\"code\", models.CharField(max_length=3))]),\n    ]\n",
    )
    .expect("migration");
    append(
        &app.join("views.py"),
        "\n\n_api = api\n\n\ndef api(request):\n    from .models import Rate\n\n    Rate.objects.exists()\n    return _api(request)\n",
    );
}

/// Processes of this ctsd that run `celery … beat` for `key`: scanned from /proc.
fn beats(ctsd: u32) -> BTreeMap<String, u32> {
    let mut count = BTreeMap::new();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return count;
    };
    for pid in dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
    {
        let Ok(cmd) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
            continue;
        };
        let args: Vec<&[u8]> = cmd.split(|&b| b == 0).collect();
        if !args.iter().any(|a| a.ends_with(b"celery")) || !args.iter().any(|a| *a == b"beat") {
            continue;
        }
        let Ok(environ) = std::fs::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let vars: Vec<&[u8]> = environ.split(|&b| b == 0).collect();
        let mine = format!("CTS_WORKER={ctsd}:");
        if !vars.iter().any(|v| v.starts_with(mine.as_bytes())) {
            continue;
        }
        if let Some(key) = vars.iter().find_map(|v| v.strip_prefix(b"CTS_INSTANCE=")) {
            *count
                .entry(String::from_utf8_lossy(key).into_owned())
                .or_default() += 1;
        }
    }
    count
}

/// Every pid of `key` (web and programs) from `ctsctl status --json`.
fn all_pids(config: &Path, key: &str) -> BTreeSet<u32> {
    let inst = status_of(config, key);
    let programs = inst["programs"].as_array().cloned().unwrap_or_default();
    std::iter::once(inst)
        .chain(programs)
        .flat_map(|p| p["workers"].as_array().cloned().unwrap_or_default())
        .filter_map(|w| w["pid"].as_u64().map(|p| p as u32))
        .collect()
}

/// Waits until every pool of every instance runs with all its processes ready.
fn wait_all_ready(config: &Path) {
    wait_until("every program ready", || {
        ctsctl(config)
            .args(["status", "--quiet"])
            .status()
            .is_ok_and(|s| s.success())
    });
}

/// A client looping on `port`, counting failures.
struct Looper {
    stop: Arc<AtomicBool>,
    ok: Arc<AtomicU64>,
    thread: std::thread::JoinHandle<Vec<String>>,
}

impl Looper {
    fn start(port: u16, prefix: &str) -> Looper {
        let stop = Arc::new(AtomicBool::new(false));
        let ok = Arc::new(AtomicU64::new(0));
        let (s, o, path) = (stop.clone(), ok.clone(), format!("{prefix}/api/"));
        let thread = std::thread::spawn(move || {
            let mut failed = Vec::new();
            while !s.load(Ordering::Relaxed) {
                match get(port, &path) {
                    Ok((200, ..)) => {
                        o.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok((status, _, body)) => {
                        failed.push(format!("{status}: {}", &body[..body.len().min(300)]))
                    }
                    Err(e) => failed.push(e),
                }
            }
            failed
        });
        Looper { stop, ok, thread }
    }

    fn wait_for(&self, n: u64) {
        let target = self.ok.load(Ordering::Relaxed) + n;
        wait_until("the client loop goes on", || {
            self.ok.load(Ordering::Relaxed) >= target
        });
    }

    fn finish(self) -> (u64, Vec<String>) {
        self.stop.store(true, Ordering::Relaxed);
        let failed = self.thread.join().expect("looper");
        (self.ok.load(Ordering::Relaxed), failed)
    }
}

#[test]
fn celery_worker_and_one_beat_per_instance_through_restarts_reloads_and_deploys() {
    let started = Instant::now();
    let env = setup();
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let d = dir.path();

    // The broker and the cache: one Redis, one Memcached, shared by every instance as on the
    // CTS server; each instance has its own queue and cache key prefix.
    let redis_port = free_port();
    let _redis = Proc {
        what: "redis-server",
        child: Command::new(&env["REDIS_SERVER"])
            .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(d.join("redis.log")).expect("log"))
            .spawn()
            .expect("start redis-server"),
        stop: nix::sys::signal::Signal::SIGTERM,
    };
    let memcached_port = free_port();
    let mut memcached = Command::new(&env["MEMCACHED"]);
    memcached.args([
        "-l",
        "127.0.0.1",
        "-p",
        &memcached_port.to_string(),
        "-U",
        "0",
    ]);
    if nix::unistd::geteuid().is_root() {
        memcached.args(["-u", "nobody"]);
    }
    let _memcached = Proc {
        what: "memcached",
        child: memcached
            .stdin(Stdio::null())
            .spawn()
            .expect("start memcached"),
        stop: nix::sys::signal::Signal::SIGTERM,
    };

    let (_pg, db_env) = databases(&env, d);

    // Releases, `current` pointing at r1, and each instance's secrets.
    let releases = d.join("releases");
    std::fs::create_dir(&releases).expect("releases");
    let (r1, r2) = (releases.join("r1"), releases.join("r2"));
    copy_release(&r1);
    release_r2(&r2);
    let current = d.join("current");
    std::os::unix::fs::symlink(&r1, &current).expect("current");
    std::fs::create_dir(d.join("secrets")).expect("secrets");
    for (key, ..) in INSTANCES {
        let path = d.join(format!("secrets/{key}.env"));
        std::fs::write(
            &path,
            format!("CTS_SECRET_KEY=\"{key}-secret-for-the-test\"\n"),
        )
        .expect("env file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    }

    let venv = Path::new(&env["VENV"]).join("bin");
    let ports: Vec<u16> = INSTANCES.iter().map(|_| free_port()).collect();
    let mut yaml = format!(
        "ctsd:\n  environment: staging\n  socket: {sock}\n  log_dir: {log}\n  bind: 127.0.0.1\n\
         defaults:\n  workers: 2\n  \
         preload: true\n  \
         command: [{venv}/python, -m, cts_preload, \"cts.wsgi:application\"]\n  \
         cwd: {current}\n  env_file: {secrets}/{{instance}}.env\n  \
         env: {{{db_env}, HOME: {home}, PYTHONPATH: {pythonpath}, CTS_BROKER_URL: \"redis://127.0.0.1:{redis_port}/0\", \
         CTS_MEMCACHED: \"127.0.0.1:{memcached_port}\", CTS_BEAT_SECONDS: \"{PERIOD}\", \
         CTS_TICK_LOG: \"{home}/ticks-{{instance}}.log\"}}\n  \
         ready: {{notify: true, timeout: 60s}}\n  stop_timeout: 20s\n  \
         programs:\n    \
         celery: {{command: [{venv}/celery, -A, cts, worker, -Q, \"queue_{{instance}}\", --concurrency, \"2\", --loglevel, INFO], \
         ready: {{notify: false, after: 3s}}, stop_timeout: 30s}}\n    \
         beat: {{command: [{venv}/celery, -A, cts, beat, --schedule, \"{home}/beat-{{instance}}.db\", --loglevel, INFO], \
         ready: {{notify: false, after: 2s}}, singleton: true}}\n  \
         release:\n    - [{venv}/python, manage.py, migrate, --noinput]\n\
         instances:\n",
        sock = d.join("ctsd.sock").display(),
        pythonpath = repo().join("python").display(),
        log = d.join("log").display(),
        venv = venv.display(),
        current = current.display(),
        secrets = d.join("secrets").display(),
        home = d.display(),
    );
    for ((key, name, prefix, currency), port) in INSTANCES.iter().zip(&ports) {
        yaml.push_str(&format!(
            "  {key}: {{name: {name}, prefix: {prefix}, currency: {currency}, port: {port}}}\n"
        ));
    }
    let config = d.join("ctsd.yaml");
    std::fs::write(&config, &yaml).expect("config");
    for (key, ..) in INSTANCES {
        run(ctsctl(&config).args(["run", key, "--"]).args([
            venv.join("python").to_str().expect("path"),
            "manage.py",
            "migrate",
            "--noinput",
        ]));
    }
    let ctsd = start_ctsd(&config, d);
    wait_all_ready(&config);
    let stderr = || std::fs::read_to_string(d.join("ctsd.stderr")).unwrap_or_default();

    // Two beats of one instance are never alive at once: sampled every 20 ms throughout.
    let sampling = Arc::new(AtomicBool::new(true));
    let sampler = {
        let (on, ctsd) = (sampling.clone(), ctsd.pid());
        std::thread::spawn(move || {
            let (mut samples, mut worst) = (0u64, BTreeMap::<String, u32>::new());
            while on.load(Ordering::Relaxed) {
                for (key, n) in beats(ctsd) {
                    let w = worst.entry(key).or_default();
                    *w = (*w).max(n);
                }
                samples += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            (samples, worst)
        })
    };

    // A task enqueued by iraq's web runs on iraq's worker, in iraq's database, and nowhere else.
    let port = |key: &str| ports[INSTANCES.iter().position(|i| i.0 == key).expect("key")];
    let counters = |key: &str| {
        let prefix = INSTANCES.iter().find(|i| i.0 == key).expect("key").2;
        get_json(port(key), &format!("{prefix}/counters/"))
    };
    for _ in 0..3 {
        let sent = get_json(port("iraq"), "/IQ/enqueue/");
        assert_eq!(sent["instance"], "iraq", "{sent}");
    }
    get_json(port("jordan"), "/JO/enqueue/");
    wait_until("iraq's tasks ran", || {
        counters("iraq")["counters"]["task:iraq@iraq"] == 3
            && counters("jordan")["counters"]["task:jordan@jordan"] == 1
    });
    for (key, ..) in INSTANCES {
        let c = counters(key);
        let foreign: Vec<&String> = c["counters"]
            .as_object()
            .into_iter()
            .flatten()
            .map(|(k, _)| k)
            .filter(|k| k.starts_with("task:") && !k.ends_with(&format!("@{key}")))
            .collect();
        assert!(
            foreign.is_empty(),
            "{key} ran another instance's tasks: {c}"
        );
        assert!(
            !c["counters"].as_object().is_some_and(|m| m
                .keys()
                .any(|k| k.starts_with("task:") && !k.starts_with(&format!("task:{key}@")))),
            "{key}'s database has another instance's tasks: {c}"
        );
        // One memcached, a key prefix per instance: each sees its own value under one key.
        assert_eq!(c["cache_owner"], key, "{c}");
        assert!(c["cache_backend"]
            .as_str()
            .is_some_and(|b| b.ends_with("PyMemcacheCache")));
    }

    // Beat: a restart of beat alone, of the whole instance, and a reload that changes it.
    std::thread::sleep(Duration::from_secs_f64(PERIOD * 2.0));
    run(ctsctl(&config).args(["restart", "jordan:beat"]));
    run(ctsctl(&config).args(["restart", "iraq"]));
    let changed = yaml.replace(
        "singleton: true}",
        "singleton: true, env: {BEAT_VERSION: \"2\"}}",
    );
    assert_ne!(changed, yaml);
    std::fs::write(&config, &changed).expect("config");
    let plan = run(ctsctl(&config).args(["reload"]));
    assert!(
        plan.contains("jordan:beat: rolling restart (env)"),
        "{plan}"
    );
    wait_all_ready(&config);

    // A deploy under a client loop on every instance: 0 failed requests; each instance's
    // migration before its first new worker serves (r2's /api/ reads the new table).
    let loops: Vec<Looper> = INSTANCES
        .iter()
        .zip(&ports)
        .map(|((_, _, prefix, _), port)| Looper::start(*port, prefix))
        .collect();
    for l in &loops {
        l.wait_for(5);
    }
    let t = Instant::now();
    let out = ctsctl(&config)
        .args(["deploy", r2.to_str().expect("path"), "--canary", "jordan"])
        .output()
        .expect("deploy");
    let deploy_secs = t.elapsed().as_secs_f64();
    let shown = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "deploy r2: {}\n{shown}\n{}",
        String::from_utf8_lossy(&out.stderr),
        stderr()
    );
    for l in &loops {
        l.wait_for(5);
    }
    let mut served = 0;
    for (l, (key, ..)) in loops.into_iter().zip(INSTANCES) {
        let (ok, failed) = l.finish();
        served += ok;
        eprintln!(
            "e2e: deploy r2: {key}: {ok} requests, {} failed",
            failed.len()
        );
        assert!(
            failed.is_empty(),
            "{key}: {} failed: {:?}",
            failed.len(),
            &failed[..failed.len().min(3)]
        );
    }
    eprintln!("e2e: deploy r2 of 3 instances took {deploy_secs:.1} s:\n{shown}");
    assert_eq!(std::fs::read_link(&current).expect("current"), r2);
    for (key, _, prefix, _) in INSTANCES {
        let v = get_json(port(key), &format!("{prefix}/api/"));
        assert_eq!(v["instance"], key);
        let at = |s: &str| {
            shown
                .find(s)
                .unwrap_or_else(|| panic!("no {s:?} in\n{shown}"))
        };
        assert!(at(&format!("{key}: release[0]: ok")) < at(&format!("{key}:web:")));
    }

    // A release whose migration fails: nothing running changes, the migration's error shown.
    let r3 = releases.join("r3");
    release_r2(&r3);
    std::fs::write(
        r3.join("cts/counter/migrations/0004_boom.py"),
        "from django.db import migrations\n\n\ndef boom(apps, schema_editor):\n    \
         raise RuntimeError(\"boom: this migration cannot run\")\n\n\n\
         class Migration(migrations.Migration):\n    dependencies = [(\"counter\", \"0003_rate\")]\n    \
         operations = [migrations.RunPython(boom)]\n",
    )
    .expect("migration");
    let before: Vec<BTreeSet<u32>> = INSTANCES.iter().map(|i| all_pids(&config, i.0)).collect();
    let out = ctsctl(&config)
        .args(["deploy", r3.to_str().expect("path")])
        .output()
        .expect("deploy");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "deploy r3 succeeded");
    assert!(err.contains("boom: this migration cannot run"), "{err}");
    let after: Vec<BTreeSet<u32>> = INSTANCES.iter().map(|i| all_pids(&config, i.0)).collect();
    assert_eq!(before, after, "a failed migration moved processes");
    assert_eq!(std::fs::read_link(&current).expect("current"), r2);

    // A release whose code cannot import: the canary rolls back, the others do not move.
    let r4 = releases.join("r4");
    release_r2(&r4);
    let wsgi = r4.join("cts/wsgi.py");
    let text = std::fs::read_to_string(&wsgi).expect("wsgi");
    std::fs::write(
        &wsgi,
        format!("raise ImportError(\"No module named 'cts.payments'\")\n{text}"),
    )
    .expect("wsgi");
    let looper = Looper::start(port("turkey"), "/TR");
    looper.wait_for(5);
    let untouched = all_pids(&config, "iraq");
    let out = ctsctl(&config)
        .args(["deploy", r4.to_str().expect("path"), "--canary", "turkey"])
        .output()
        .expect("deploy");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "deploy r4 succeeded");
    assert!(err.contains("turkey:web did not become ready"), "{err}");
    assert!(err.contains("No module named 'cts.payments'"), "{err}");
    looper.wait_for(5);
    let (ok, failed) = looper.finish();
    eprintln!(
        "e2e: deploy r4 (cannot import): turkey {ok} requests, {} failed",
        failed.len()
    );
    assert!(failed.is_empty(), "turkey: {failed:?}");
    assert_eq!(
        all_pids(&config, "iraq"),
        untouched,
        "iraq moved after the canary failed"
    );
    assert_eq!(std::fs::read_link(&current).expect("current"), r2);
    wait_all_ready(&config);

    // Beat fired each period once per instance, across all of it: its sends (each beat
    // process logs them) never twice within half a period, and about as often as the time
    // allows; and the workers ran what it sent (ticks in the instance's database).
    std::thread::sleep(Duration::from_secs_f64(PERIOD * 2.0));
    sampling.store(false, Ordering::Relaxed);
    let (samples, worst) = sampler.join().expect("sampler");
    eprintln!("e2e: process table sampled {samples} times; most beats alive at once: {worst:?}");
    for (key, ..) in INSTANCES {
        assert_eq!(worst.get(key).copied().unwrap_or(0), 1, "{key}: {worst:?}");
        let log = std::fs::read_to_string(d.join(format!("ticks-{key}.log"))).unwrap_or_default();
        let sends: Vec<(f64, u32)> = log
            .lines()
            .filter_map(|l| {
                let (t, pid) = l.split_once(' ')?;
                Some((t.parse().ok()?, pid.parse().ok()?))
            })
            .collect();
        let beats: BTreeSet<u32> = sends.iter().map(|s| s.1).collect();
        let span = sends.last().map_or(0.0, |s| s.0) - sends.first().map_or(0.0, |s| s.0);
        let closest = sends
            .windows(2)
            .map(|w| w[1].0 - w[0].0)
            .fold(f64::INFINITY, f64::min);
        let ran = counters(key)["ticks"].as_array().map_or(0, Vec::len);
        eprintln!(
            "e2e: {key}: beat sent {} ticks over {span:.1} s from {} beat processes, closest two \
             {closest:.2} s apart; the workers ran {ran}",
            sends.len(),
            beats.len()
        );
        // Started, then replaced by the reload and by the deploy (jordan's and iraq's also by
        // a restart).
        assert!(
            beats.len() >= 3,
            "{key}: beat was not replaced twice: {beats:?}"
        );
        assert!(
            closest >= PERIOD / 2.0,
            "{key}: two sends {closest:.2} s apart: a period fired twice:\n{log}"
        );
        assert!(
            sends.len() as f64 >= span / PERIOD * 0.5,
            "{key}: {} sends in {span:.1} s: beat stopped firing",
            sends.len()
        );
        assert!(
            ran + 2 >= sends.len(),
            "{key}: {ran} of {} ticks ran",
            sends.len()
        );
    }
    drop(ctsd);
    let summary = format!(
        "e2e: passed in {:.1}s: a celery worker and one beat per instance on Redis, Memcached, \
         secrets; a deploy of 3 instances in {deploy_secs:.1} s under load, {served} requests, \
         0 failed",
        started.elapsed().as_secs_f64()
    );
    eprintln!("{summary}");
    // tests/run.sh prints it after the tests, where it is seen.
    let _ = std::fs::write(repo().join("target/e2e/summary-celery"), summary + "\n");
}
