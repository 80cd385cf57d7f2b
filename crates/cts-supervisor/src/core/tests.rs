//! The pool and job machines as tables: each scenario is a list of steps, an input at a time
//! (milliseconds from the start) and the exact effects it must produce (log notes aside, which
//! are checked where they matter). Spawns are answered the way the actor answers them, at once
//! with pid `1000 + worker id`, unless a step makes them fail.

use super::InstanceState as S;
use super::*;
use crate::backoff::Jitter;
use cts_config::{CrashLoop, ReadySpec, RestartPolicy};
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

const MS: fn(u64) -> Duration = Duration::from_millis;

fn web(workers: u32) -> Settings {
    Settings {
        kind: Kind {
            socket: true,
            singleton: false,
        },
        workers,
        ready: ReadySpec {
            notify: true,
            after: MS(2000),
            timeout: MS(10_000),
        },
        stop_timeout: MS(30_000),
        batch: 1,
        restart: RestartPolicy {
            backoff_initial: MS(100),
            backoff_max: MS(30_000),
            reset_after: MS(10_000),
            crash_loop: CrashLoop {
                restarts: 3,
                within: MS(60_000),
            },
        },
    }
}

fn singleton() -> Settings {
    Settings {
        kind: Kind {
            socket: false,
            singleton: true,
        },
        ..web(1)
    }
}

fn pid(w: WorkerId) -> u32 {
    1000 + w as u32
}

// Effects, shortly.
fn spawn(worker: WorkerId, slot: u32) -> Effect {
    Effect::Spawn {
        worker,
        slot,
        socket: true,
    }
}
fn spawn_bare(worker: WorkerId, slot: u32) -> Effect {
    Effect::Spawn {
        worker,
        slot,
        socket: false,
    }
}
fn term(w: WorkerId) -> Effect {
    Effect::Signal {
        pid: pid(w),
        signal: Sig::Term,
    }
}
fn kill(w: WorkerId) -> Effect {
    Effect::Signal {
        pid: pid(w),
        signal: Sig::Kill,
    }
}
fn ok(t: u64, done: Done) -> Effect {
    Effect::Reply(Ticket(t), Ok(done))
}
fn err(t: u64, why: Refusal) -> Effect {
    Effect::Reply(Ticket(t), Err(why))
}
fn progress(replaced: u32, total: u32) -> Effect {
    Effect::Progress { replaced, total }
}
fn settled() -> Effect {
    Effect::Settled
}

// Events, shortly.
fn ready(w: WorkerId) -> Input {
    Input::Event(Event::Ready(w))
}
fn crash(w: WorkerId) -> Input {
    Input::Event(Event::Exited(w, Exit::code(1)))
}
fn exit(w: WorkerId) -> Input {
    Input::Event(Event::Exited(w, Exit::signaled("SIGTERM")))
}
fn tick() -> Input {
    Input::Event(Event::Tick)
}
fn req(t: u64, r: Request) -> Input {
    Input::Event(Event::Request(Ticket(t), r))
}

#[derive(Debug)]
enum Input {
    /// [`Pool::start`].
    Boot,
    Event(Event),
}

struct Step {
    at: u64,
    input: Input,
    want: Vec<Effect>,
    /// Spawns in this step fail with this error.
    spawn_error: Option<&'static str>,
    state: Option<S>,
    deadline: Option<Option<u64>>,
    note: Option<&'static str>,
    no_note: Option<&'static str>,
}

fn at(ms: u64, input: Input) -> Step {
    Step {
        at: ms,
        input,
        want: Vec::new(),
        spawn_error: None,
        state: None,
        deadline: None,
        note: None,
        no_note: None,
    }
}

impl Step {
    fn want(mut self, effects: impl IntoIterator<Item = Effect>) -> Self {
        self.want = effects.into_iter().collect();
        self
    }
    fn spawn_fails(mut self, error: &'static str) -> Self {
        self.spawn_error = Some(error);
        self
    }
    fn state(mut self, s: S) -> Self {
        self.state = Some(s);
        self
    }
    /// The next deadline, in ms from the start (`None`: nothing armed).
    fn deadline(mut self, ms: Option<u64>) -> Self {
        self.deadline = Some(ms);
        self
    }
    /// A log note containing this text.
    fn note(mut self, text: &'static str) -> Self {
        self.note = Some(text);
        self
    }
    /// No log note containing this text.
    fn no_note(mut self, text: &'static str) -> Self {
        self.no_note = Some(text);
        self
    }
}

/// Runs `steps` against a fresh pool; also checks that a singleton never has two processes.
fn run(settings: Settings, steps: Vec<Step>) -> Pool {
    let t0 = Instant::now();
    let singleton = settings.kind.singleton;
    let mut pool = Pool::new("jordan", settings, Jitter::fixed(0.5), t0);
    let mut alive = BTreeSet::new();
    for (n, step) in steps.into_iter().enumerate() {
        let now = t0 + MS(step.at);
        if let Input::Event(Event::Exited(w, _)) = &step.input {
            alive.remove(w);
        }
        let mut got = match step.input {
            Input::Boot => pool.start(now),
            Input::Event(e) => pool.handle(e, now),
        };
        // Answer every spawn, including those the answers cause.
        let mut i = 0;
        while i < got.len() {
            if let Effect::Spawn { worker, .. } = got[i] {
                let answer = match step.spawn_error {
                    Some(e) => Event::SpawnFailed(worker, e.to_owned()),
                    None => {
                        alive.insert(worker);
                        Event::Spawned(worker, pid(worker))
                    }
                };
                let more = pool.handle(answer, now);
                got.extend(more);
            }
            i += 1;
        }
        let notes: Vec<&str> = got
            .iter()
            .filter_map(|e| match e {
                Effect::Note(_, t) => Some(t.as_str()),
                _ => None,
            })
            .collect();
        let acts: Vec<&Effect> = got
            .iter()
            .filter(|e| !matches!(e, Effect::Note(..)))
            .collect();
        let want: Vec<&Effect> = step.want.iter().collect();
        assert_eq!(acts, want, "step {n} (at {}ms): notes {notes:#?}", step.at);
        if let Some(s) = step.state {
            assert_eq!(pool.state(), s, "state after step {n}");
        }
        if let Some(d) = step.deadline {
            let got = pool
                .deadline()
                .map(|t| t.duration_since(t0).as_millis() as u64);
            assert_eq!(got, d, "deadline after step {n}");
        }
        if let Some(text) = step.note {
            assert!(
                notes.iter().any(|t| t.contains(text)),
                "step {n}: no note containing {text:?} in {notes:#?}"
            );
        }
        if let Some(text) = step.no_note {
            assert!(
                !notes.iter().any(|t| t.contains(text)),
                "step {n}: a note contains {text:?}: {notes:#?}"
            );
        }
        if singleton {
            assert!(alive.len() <= 1, "step {n}: two processes alive: {alive:?}");
        }
    }
    pool
}

/// Boot of a two-worker pool with both ready at 10ms: workers 0 and 1, settled.
fn up2() -> Vec<Step> {
    vec![
        at(0, Input::Boot)
            .want([spawn(0, 0), spawn(1, 1)])
            .state(S::Starting)
            .deadline(Some(10_000)),
        at(10, ready(0)).want([]).state(S::Starting),
        at(10, ready(1))
            .want([settled()])
            .state(S::Running)
            .deadline(None),
    ]
}

/// Boot of a one-worker pool whose worker crashes four times within the window (one more
/// than `restarts: 3`): failing at 700ms, the next try at 30,700ms.
fn into_crash_loop() -> Vec<Step> {
    vec![
        at(0, Input::Boot).want([spawn(0, 0)]),
        at(10, ready(0)).want([settled()]),
        at(100, crash(0)).want([kill(0), spawn(1, 0)]),
        at(200, crash(1)).want([kill(1)]),
        at(300, tick()).want([spawn(2, 0)]),
        at(400, crash(2)).want([kill(2)]),
        at(600, tick()).want([spawn(3, 0)]),
        at(700, crash(3)).want([kill(3)]).state(S::Failing),
    ]
}

fn with(mut first: Vec<Step>, rest: Vec<Step>) -> Vec<Step> {
    first.extend(rest);
    first
}

// ---------------------------------------------------------------- start and readiness

#[test]
fn boot_spawns_every_slot_and_settles_once_all_are_ready() {
    let pool = run(web(2), up2());
    let st = pool.status();
    assert_eq!(st.ready, 2);
    assert_eq!(
        st.workers.iter().map(|w| w.pid).collect::<Vec<_>>(),
        [1000, 1001]
    );
}

#[test]
fn without_notify_a_worker_is_ready_after_staying_up() {
    let mut s = web(1);
    s.ready.notify = false;
    run(
        s,
        vec![
            at(0, Input::Boot).want([spawn(0, 0)]).deadline(Some(2000)),
            at(1999, tick()).want([]).state(S::Starting),
            at(2000, tick())
                .want([settled()])
                .state(S::Running)
                .deadline(None),
        ],
    );
}

#[test]
fn a_worker_not_ready_in_time_is_stopped_and_its_exit_is_a_failure() {
    run(
        web(1),
        vec![
            at(0, Input::Boot).want([spawn(0, 0)]),
            // A web pool starts the replacement while the late one stops.
            at(10_000, tick())
                .want([term(0), spawn(1, 0)])
                .note("not ready after 10s; stopping it")
                .deadline(Some(20_000)),
            at(10_050, exit(0))
                .want([kill(0), settled()])
                .note("worker 0 pid 1000 was not ready within 10s"),
        ],
    );
}

#[test]
fn readiness_of_a_worker_that_is_not_starting_is_ignored() {
    run(
        web(2),
        with(
            up2(),
            vec![at(20, ready(1)).want([]), at(20, ready(7)).want([])],
        ),
    );
}

// ---------------------------------------------------------------- crashes and backoff

#[test]
fn a_crash_is_respawned_at_once() {
    run(
        web(2),
        with(
            up2(),
            vec![
                at(100, crash(0))
                    .want([kill(0), spawn(2, 0)])
                    .state(S::Starting)
                    .note("worker 0 pid 1000 exited with status 1; restarting it now"),
                at(150, ready(2)).want([]).state(S::Running),
            ],
        ),
    );
}

#[test]
fn repeated_crashes_of_a_slot_back_off() {
    run(
        web(2),
        with(
            up2(),
            vec![
                at(100, crash(0)).want([kill(0), spawn(2, 0)]),
                // Second crash without a stable run: 100ms.
                at(200, crash(2))
                    .want([kill(2)])
                    .deadline(Some(300))
                    .note("restarting it in 100ms"),
                at(299, tick()).want([]),
                at(300, tick()).want([spawn(3, 0)]),
                // Third: 200ms.
                at(400, crash(3)).want([kill(3)]).deadline(Some(600)),
                at(600, tick()).want([spawn(4, 0)]),
            ],
        ),
    );
}

#[test]
fn a_stable_run_resets_the_backoff() {
    run(
        web(1),
        vec![
            at(0, Input::Boot).want([spawn(0, 0)]),
            at(10, ready(0)).want([settled()]),
            at(100, crash(0)).want([kill(0), spawn(1, 0)]),
            at(110, ready(1)).want([]).deadline(Some(10_100)),
            // Up 10s (reset_after): the slot's count is forgotten.
            at(10_100, tick()).want([]).deadline(None),
            at(20_000, crash(1)).want([kill(1), spawn(2, 0)]),
        ],
    );
}

#[test]
fn a_crash_loop_marks_the_pool_failing_and_retries_slowly() {
    run(
        web(1),
        vec![
            at(0, Input::Boot).want([spawn(0, 0)]),
            at(10, ready(0)).want([settled()]),
            at(100, crash(0)).want([kill(0), spawn(1, 0)]),
            at(200, crash(1)).want([kill(1)]),
            at(300, tick()).want([spawn(2, 0)]),
            // The fourth crash within 60s is one more than `restarts: 3`.
            at(400, crash(2)).want([kill(2)]).deadline(Some(600)),
            at(600, tick()).want([spawn(3, 0)]),
            at(700, crash(3))
                .want([kill(3)])
                .state(S::Failing)
                .deadline(Some(30_700))
                .note("failing: 4 crashes within 1m; retrying every 30s"),
        ],
    );
}

#[test]
fn a_failing_pool_recovers_when_every_worker_stays_up() {
    let steps = with(
        into_crash_loop(),
        vec![
            at(30_700, tick()).want([spawn(4, 0)]).state(S::Failing),
            at(30_800, ready(4))
                .want([])
                .state(S::Failing)
                .deadline(Some(40_700)),
            at(40_700, tick())
                .want([])
                .state(S::Running)
                .note("recovered: every worker has stayed up"),
        ],
    );
    run(web(1), steps);
}

#[test]
fn an_operator_start_clears_the_crash_loop() {
    run(
        web(1),
        with(
            into_crash_loop(),
            vec![
                at(800, req(1, Request::Start))
                    .want([spawn(4, 0)])
                    .state(S::Starting)
                    .note("crash-loop state cleared by the operator"),
                at(900, ready(4))
                    .want([ok(1, Done::Running(1))])
                    .state(S::Running),
            ],
        ),
    );
}

#[test]
fn a_start_waiting_on_a_pool_that_enters_a_crash_loop_is_told_why() {
    let mut s = web(1);
    s.restart.crash_loop.restarts = 0;
    run(
        s,
        vec![
            at(0, Input::Boot).want([spawn(0, 0)]),
            at(5, req(1, Request::Start)).want([]),
            at(10, crash(0)).want([
                kill(0),
                err(
                    1,
                    Refusal::Failing("worker 0 pid 1000 exited with status 1".into()),
                ),
                settled(),
            ]),
        ],
    );
}

#[test]
fn a_failed_spawn_is_never_retried_at_once() {
    run(
        web(1),
        vec![
            at(0, Input::Boot)
                .spawn_fails("gunicorn: No such file or directory")
                .want([spawn(0, 0), settled()])
                .deadline(Some(100))
                .note("worker 0 could not be started: gunicorn: No such file or directory; retrying in 100ms"),
            at(100, tick()).want([spawn(1, 0)]),
            at(110, ready(1)).want([]).state(S::Running),
        ],
    );
}

// ---------------------------------------------------------------- stop and start

#[test]
fn stop_terms_every_worker_and_answers_when_all_exited() {
    run(
        web(2),
        with(
            up2(),
            vec![
                at(100, req(1, Request::Stop))
                    .want([term(0), term(1)])
                    .state(S::Stopping)
                    .deadline(Some(30_100)),
                at(200, exit(0)).want([kill(0)]).state(S::Stopping),
                at(300, exit(1))
                    .want([kill(1), ok(1, Done::Stopped)])
                    .state(S::Stopped)
                    .deadline(None),
                at(400, req(2, Request::Stop)).want([ok(2, Done::AlreadyStopped)]),
            ],
        ),
    );
}

#[test]
fn a_worker_ignoring_sigterm_gets_sigkill_after_the_stop_timeout() {
    run(
        web(2),
        with(
            up2(),
            vec![
                at(100, req(1, Request::Stop)).want([term(0), term(1)]),
                at(200, exit(0)).want([kill(0)]).deadline(Some(30_100)),
                at(30_099, tick()).want([]),
                at(30_100, tick())
                    .want([kill(1)])
                    .deadline(None)
                    .note("worker 1 pid 1001 did not stop within 30s; sent SIGKILL"),
                at(
                    30_101,
                    Input::Event(Event::Exited(1, Exit::signaled("SIGKILL"))),
                )
                .want([kill(1), ok(1, Done::Stopped)]),
            ],
        ),
    );
}

#[test]
fn start_after_stop_spawns_again_and_answers_when_running() {
    run(
        web(1),
        vec![
            at(0, Input::Boot).want([spawn(0, 0)]),
            at(10, ready(0)).want([settled()]),
            at(20, req(1, Request::Stop)).want([term(0)]),
            at(30, exit(0)).want([kill(0), ok(1, Done::Stopped)]),
            at(40, req(2, Request::Start))
                .want([spawn(1, 0)])
                .state(S::Starting),
            at(50, ready(1)).want([ok(2, Done::Running(1))]),
        ],
    );
}

#[test]
fn a_crash_while_stopped_is_not_respawned() {
    run(
        web(1),
        vec![
            at(0, Input::Boot).want([spawn(0, 0)]),
            at(10_000, tick()).want([term(0), spawn(1, 0)]),
            at(10_001, req(1, Request::Stop)).want([term(1)]),
            // It was stopping for readiness: a failure, but the pool is stopped.
            at(10_002, exit(0))
                .want([kill(0), settled()])
                .state(S::Stopping),
            at(10_003, exit(1))
                .want([kill(1), ok(1, Done::Stopped)])
                .state(S::Stopped),
        ],
    );
}

#[test]
fn stop_then_start_before_the_old_worker_exits_surges() {
    // A web pool may start its new worker while the old one is still stopping.
    run(
        web(1),
        vec![
            at(0, Input::Boot).want([spawn(0, 0)]),
            at(10, ready(0)).want([settled()]),
            at(20, req(1, Request::Stop)).want([term(0)]),
            at(30, req(2, Request::Start)).want([err(1, Refusal::StartedMeanwhile), spawn(1, 0)]),
            at(40, exit(0)).want([kill(0)]),
            at(50, ready(1)).want([ok(2, Done::Running(1))]),
        ],
    );
}

// ---------------------------------------------------------------- rolling restart

#[test]
fn restart_replaces_one_worker_at_a_time_new_ready_before_old_stops() {
    run(
        web(2),
        with(
            up2(),
            vec![
                at(100, req(1, Request::Restart)).want([progress(0, 2), spawn(2, 0)]),
                at(200, ready(2)).want([progress(1, 2), term(0), spawn(3, 1)]),
                at(250, exit(0)).want([kill(0)]).state(S::Running),
                // Done once every new worker is ready and every old one told to stop.
                at(300, ready(3))
                    .want([progress(2, 2), term(1), ok(1, Done::Replaced(2))])
                    .note("rolling restart done: 2 workers replaced"),
                at(350, exit(1)).want([kill(1)]),
            ],
        ),
    );
}

#[test]
fn restart_with_a_batch_replaces_several_at_once() {
    let mut s = web(2);
    s.batch = 2;
    run(
        s,
        with(
            up2(),
            vec![
                at(100, req(1, Request::Restart)).want([progress(0, 2), spawn(2, 0), spawn(3, 1)]),
                at(200, ready(3)).want([progress(1, 2), term(1)]),
                at(200, ready(2)).want([progress(2, 2), term(0), ok(1, Done::Replaced(2))]),
                at(300, exit(0)).want([kill(0)]),
                at(300, exit(1)).want([kill(1)]),
            ],
        ),
    );
}

#[test]
fn two_restarts_back_to_back_merge_into_one() {
    run(
        web(2),
        with(
            up2(),
            vec![
                at(100, req(1, Request::Restart)).want([progress(0, 2), spawn(2, 0)]),
                at(110, req(2, Request::Restart)).want([]),
                // Worker 2 was started by the first restart: the second replaces it too,
                // lowest slot first.
                at(200, ready(2)).want([progress(1, 2), term(0), spawn(3, 0)]),
                at(300, ready(3)).want([progress(2, 2), term(2), spawn(4, 1)]),
                at(400, ready(4)).want([
                    progress(3, 2),
                    term(1),
                    ok(1, Done::Replaced(3)),
                    ok(2, Done::Replaced(3)),
                ]),
                at(500, exit(0)).want([kill(0)]),
                at(500, exit(1)).want([kill(1)]),
                at(500, exit(2)).want([kill(2)]),
            ],
        ),
    );
}

#[test]
fn a_new_worker_dying_mid_roll_stops_the_restart_and_the_old_ones_keep_serving() {
    let why = "new worker 0 pid 1002 exited with status 1 before it was ready; restart stopped, the old workers keep serving";
    let pool = run(
        web(2),
        with(
            up2(),
            vec![
                at(100, req(1, Request::Restart)).want([progress(0, 2), spawn(2, 0)]),
                at(150, crash(2))
                    .want([kill(2), err(1, Refusal::RolledBack(why.into()))])
                    .state(S::Running)
                    .deadline(None),
            ],
        ),
    );
    assert_eq!(pool.status().restarts, 0, "a failed roll is not a crash");
}

#[test]
fn a_new_worker_not_ready_in_time_stops_the_restart() {
    run(
        web(2),
        with(
            up2(),
            vec![
                at(100, req(1, Request::Restart)).want([progress(0, 2), spawn(2, 0)]),
                at(10_100, tick()).want([term(2)]),
                at(10_200, exit(2))
                    .want([kill(2), err(1, Refusal::RolledBack("new worker 0 pid 1002 was not ready within 10s before it was ready; restart stopped, the old workers keep serving".into()))])
                    .state(S::Running),
            ],
        ),
    );
}

#[test]
fn a_new_worker_that_cannot_be_spawned_stops_the_restart() {
    run(
        web(2),
        with(
            up2(),
            vec![at(100, req(1, Request::Restart))
                .spawn_fails("no such file")
                .want([
                    progress(0, 2),
                    spawn(2, 0),
                    err(
                        1,
                        Refusal::RolledBack("could not start a new worker: no such file".into()),
                    ),
                ])
                .state(S::Running)],
        ),
    );
}

#[test]
fn an_old_worker_crashing_mid_roll_is_replaced_by_the_roll() {
    run(
        web(2),
        with(
            up2(),
            vec![
                at(100, req(1, Request::Restart)).want([progress(0, 2), spawn(2, 0)]),
                // Slot 0 already has its new worker starting: no respawn beside it.
                at(150, crash(0)).want([kill(0)]),
                at(200, ready(2)).want([progress(1, 2), spawn(3, 1)]),
                at(300, ready(3)).want([progress(2, 2), term(1), ok(1, Done::Replaced(2))]),
                at(400, exit(1)).want([kill(1)]),
            ],
        ),
    );
}

#[test]
fn scale_down_during_a_roll_lets_the_roll_finish() {
    run(
        web(2),
        with(
            up2(),
            vec![
                at(100, req(1, Request::Restart)).want([progress(0, 2), spawn(2, 0)]),
                at(200, ready(2)).want([progress(1, 2), term(0), spawn(3, 1)]),
                // Slot 1 goes away, with its new worker: the roll is done, and the pool runs
                // at its new size.
                at(250, req(2, Request::Scale(1))).want([
                    term(1),
                    term(3),
                    ok(1, Done::Replaced(1)),
                    ok(2, Done::Running(1)),
                ]),
                at(300, exit(0)).want([kill(0)]),
                at(300, exit(3)).want([kill(3)]),
                at(300, exit(1)).want([kill(1)]),
            ],
        ),
    );
}

#[test]
fn stop_during_a_roll_ends_it_and_stops_everything() {
    run(
        web(2),
        with(
            up2(),
            vec![
                at(100, req(1, Request::Restart)).want([progress(0, 2), spawn(2, 0)]),
                at(150, req(2, Request::Stop)).want([
                    term(2),
                    err(1, Refusal::StoppedMeanwhile),
                    term(0),
                    term(1),
                ]),
                at(200, exit(2)).want([kill(2)]),
                at(200, exit(0)).want([kill(0)]),
                at(200, exit(1)).want([kill(1), ok(2, Done::Stopped)]),
            ],
        ),
    );
}

#[test]
fn restart_of_a_stopped_pool_is_refused() {
    run(
        web(1),
        vec![
            at(0, Input::Boot).want([spawn(0, 0)]),
            at(10, req(1, Request::Stop)).want([term(0)]),
            at(20, exit(0)).want([kill(0), ok(1, Done::Stopped)]),
            at(30, req(2, Request::Restart)).want([err(2, Refusal::IsStopped("jordan".into()))]),
        ],
    );
}

// ---------------------------------------------------------------- scale

#[test]
fn scale_up_fills_new_slots_and_answers_when_running() {
    run(
        web(2),
        with(
            up2(),
            vec![
                at(100, req(1, Request::Scale(3)))
                    .want([spawn(2, 2)])
                    .state(S::Starting)
                    .note("scaling from 2 to 3 workers"),
                at(200, ready(2)).want([ok(1, Done::Running(3))]),
            ],
        ),
    );
}

#[test]
fn scale_down_drains_the_highest_slots() {
    let pool = run(
        web(2),
        with(
            up2(),
            vec![
                at(100, req(1, Request::Scale(1)))
                    .want([term(1), ok(1, Done::Running(1))])
                    .state(S::Running),
                at(200, exit(1)).want([kill(1)]),
            ],
        ),
    );
    assert_eq!(pool.status().restarts, 0);
}

#[test]
fn scale_of_a_stopped_pool_is_kept_for_its_next_start() {
    run(
        web(1),
        vec![
            at(0, Input::Boot).want([spawn(0, 0)]),
            at(10, req(1, Request::Stop)).want([term(0)]),
            at(20, exit(0)).want([kill(0), ok(1, Done::Stopped)]),
            at(30, req(2, Request::Scale(2))).want([ok(2, Done::ScaledWhileStopped(2))]),
            at(40, req(3, Request::Start)).want([spawn(1, 0), spawn(2, 1)]),
        ],
    );
}

// ---------------------------------------------------------------- reconfigure

#[test]
fn reconfigure_during_backoff_keeps_the_backoff() {
    let mut longer = web(2);
    longer.stop_timeout = MS(60_000);
    run(
        web(2),
        with(
            up2(),
            vec![
                at(100, crash(0)).want([kill(0), spawn(2, 0)]),
                at(200, crash(2)).want([kill(2)]).deadline(Some(300)),
                at(
                    250,
                    req(
                        1,
                        Request::Reconfigure {
                            settings: longer,
                            roll: false,
                        },
                    ),
                )
                .want([ok(1, Done::SettingsUpdated)])
                .deadline(Some(300)),
                at(300, tick()).want([spawn(3, 0)]),
            ],
        ),
    );
}

#[test]
fn reconfigure_with_a_roll_during_backoff_respawns_at_once_and_rolls() {
    run(
        web(2),
        with(
            up2(),
            vec![
                at(100, crash(0)).want([kill(0), spawn(2, 0)]),
                at(200, crash(2)).want([kill(2)]),
                at(
                    250,
                    req(
                        1,
                        Request::Reconfigure {
                            settings: web(2),
                            roll: true,
                        },
                    ),
                )
                // Slot 1's old worker is replaced; slot 0 is empty and refilled with a new one.
                .want([progress(0, 1), spawn(3, 1), spawn(4, 0)]),
                at(300, ready(3)).want([progress(1, 1), term(1), ok(1, Done::Replaced(1))]),
                at(300, ready(4)).want([]),
                at(400, exit(1)).want([kill(1)]),
            ],
        ),
    );
}

#[test]
fn reconfigure_with_another_size_answers_when_running() {
    run(
        web(2),
        with(
            up2(),
            vec![
                at(
                    100,
                    req(
                        1,
                        Request::Reconfigure {
                            settings: web(3),
                            roll: false,
                        },
                    ),
                )
                .want([spawn(2, 2)]),
                at(200, ready(2)).want([ok(1, Done::Running(3))]),
            ],
        ),
    );
}

// ---------------------------------------------------------------- signals and shutdown

#[test]
fn a_signal_reaches_live_workers_only() {
    run(
        web(2),
        with(
            up2(),
            vec![
                at(100, req(1, Request::Scale(1))).want([term(1), ok(1, Done::Running(1))]),
                at(
                    110,
                    req(
                        2,
                        Request::Signal {
                            number: 1,
                            name: "SIGHUP".into(),
                        },
                    ),
                )
                .want([
                    Effect::Signal {
                        pid: 1000,
                        signal: Sig::Other(1),
                    },
                    ok(
                        2,
                        Done::Signalled {
                            name: "SIGHUP".into(),
                            count: 1,
                        },
                    ),
                ]),
            ],
        ),
    );
}

#[test]
fn shutdown_stops_every_worker_and_then_the_pool_is_finished() {
    let pool = run(
        web(2),
        with(
            up2(),
            vec![
                at(100, req(1, Request::Restart)).want([progress(0, 2), spawn(2, 0)]),
                at(110, Input::Event(Event::Shutdown)).want([
                    term(2),
                    err(1, Refusal::ShuttingDown),
                    term(0),
                    term(1),
                ]),
                at(120, req(2, Request::Start)).want([err(2, Refusal::ShuttingDown)]),
                at(130, req(3, Request::Scale(4))).want([err(3, Refusal::ShuttingDown)]),
                at(200, exit(0)).want([kill(0)]),
                at(200, exit(1)).want([kill(1)]),
                at(200, exit(2)).want([kill(2)]).state(S::Stopped),
            ],
        ),
    );
    assert!(pool.finished());
}

#[test]
fn a_second_stop_signal_kills_every_worker_at_once() {
    let pool = run(
        web(2),
        with(
            up2(),
            vec![
                at(100, Input::Event(Event::Shutdown)).want([term(0), term(1)]),
                at(200, Input::Event(Event::Kill))
                    .want([kill(0), kill(1)])
                    .deadline(None),
                at(210, exit(0)).want([kill(0)]),
                at(210, exit(1)).want([kill(1)]),
            ],
        ),
    );
    assert!(pool.finished());
}

// ---------------------------------------------------------------- kinds

#[test]
fn a_socketless_pool_spawns_without_the_socket() {
    let mut s = web(2);
    s.kind.socket = false;
    run(
        s,
        vec![at(0, Input::Boot).want([spawn_bare(0, 0), spawn_bare(1, 1)])],
    );
}

#[test]
fn a_singleton_restart_stops_the_old_process_before_spawning_the_new() {
    run(
        singleton(),
        vec![
            at(0, Input::Boot).want([spawn_bare(0, 0)]),
            at(10, ready(0)).want([settled()]),
            at(100, req(1, Request::Restart))
                .want([progress(0, 1), term(0)])
                .state(S::Starting),
            at(5000, exit(0)).want([kill(0), spawn_bare(1, 0)]),
            at(5100, ready(1))
                .want([progress(1, 1), ok(1, Done::Replaced(1))])
                .state(S::Running),
        ],
    );
}

#[test]
fn a_singleton_crash_while_its_restart_waits_is_not_doubled() {
    run(
        singleton(),
        vec![
            at(0, Input::Boot).want([spawn_bare(0, 0)]),
            at(10, ready(0)).want([settled()]),
            at(100, req(1, Request::Restart)).want([progress(0, 1), term(0)]),
            // A second restart while the first waits for the old process to exit.
            at(150, req(2, Request::Restart)).want([]),
            // It dies of its own accord meanwhile: still one new process, after the exit.
            at(200, crash(0)).want([kill(0), spawn_bare(1, 0)]),
            at(300, ready(1)).want([
                progress(1, 1),
                ok(1, Done::Replaced(1)),
                ok(2, Done::Replaced(1)),
            ]),
        ],
    );
}

#[test]
fn a_singleton_stop_then_start_waits_for_the_old_process() {
    run(
        singleton(),
        vec![
            at(0, Input::Boot).want([spawn_bare(0, 0)]),
            at(10, ready(0)).want([settled()]),
            at(20, req(1, Request::Stop)).want([term(0)]),
            at(30, req(2, Request::Start))
                .want([err(1, Refusal::StartedMeanwhile)])
                .state(S::Starting),
            at(5000, exit(0)).want([kill(0), spawn_bare(1, 0)]),
            at(5100, ready(1)).want([ok(2, Done::Running(1))]),
        ],
    );
}

#[test]
fn a_singleton_crash_is_respawned_after_the_exit_only() {
    run(
        singleton(),
        vec![
            at(0, Input::Boot).want([spawn_bare(0, 0)]),
            at(10_000, tick()).want([term(0)]),
            // Not ready in time and still stopping: no second process meanwhile.
            at(10_001, tick()).want([]),
            at(12_000, exit(0)).want([kill(0), spawn_bare(1, 0), settled()]),
        ],
    );
}

#[test]
fn a_singleton_refuses_to_scale() {
    run(
        singleton(),
        vec![
            at(0, Input::Boot).want([spawn_bare(0, 0)]),
            at(10, req(1, Request::Scale(2))).want([err(1, Refusal::Singleton("jordan".into()))]),
        ],
    );
}

#[test]
fn a_singleton_reconfigure_with_a_roll_is_stop_first() {
    run(
        singleton(),
        vec![
            at(0, Input::Boot).want([spawn_bare(0, 0)]),
            at(10, ready(0)).want([settled()]),
            at(
                20,
                req(
                    1,
                    Request::Reconfigure {
                        settings: singleton(),
                        roll: true,
                    },
                ),
            )
            .want([progress(0, 1), term(0)]),
            at(30, exit(0)).want([kill(0), spawn_bare(1, 0)]),
            at(40, ready(1)).want([progress(1, 1), ok(1, Done::Replaced(1))]),
        ],
    );
}

#[test]
fn a_program_of_two_made_a_singleton_starts_its_one_process_after_both_old_ones_exited() {
    let two = Settings {
        kind: Kind {
            socket: false,
            singleton: false,
        },
        ..web(2)
    };
    run(
        two,
        vec![
            at(0, Input::Boot).want([spawn_bare(0, 0), spawn_bare(1, 1)]),
            at(10, ready(0)).want([]),
            at(10, ready(1)).want([settled()]),
            at(
                20,
                req(
                    1,
                    Request::Reconfigure {
                        settings: singleton(),
                        roll: true,
                    },
                ),
            )
            .want([progress(0, 2), term(1), term(0)]),
            // Slot 0's old process gone, slot 1's still stopping: nothing new yet.
            at(30, exit(0)).want([kill(0)]),
            at(40, exit(1)).want([kill(1), spawn_bare(2, 0)]),
            at(50, ready(2)).want([progress(1, 2), ok(1, Done::Replaced(1))]),
        ],
    );
}

#[test]
fn a_singleton_whose_new_process_fails_backs_off_instead_of_spinning() {
    let pool = run(
        singleton(),
        vec![
            at(0, Input::Boot).want([spawn_bare(0, 0)]),
            at(10, ready(0)).want([settled()]),
            at(20, req(1, Request::Restart)).want([progress(0, 1), term(0)]),
            at(30, exit(0)).want([kill(0), spawn_bare(1, 0)]),
            at(40, crash(1)).want([
                kill(1),
                err(1, Refusal::RolledBack("new worker 0 pid 1001 exited with status 1 before it was ready; restart stopped".into())),
                spawn_bare(2, 0),
            ]),
            at(50, crash(2)).want([kill(2)]).deadline(Some(150)),
        ],
    );
    assert_eq!(pool.status().restarts, 2);
}

// ---------------------------------------------------------------- jobs

fn job_run(job: &mut Job, events: Vec<(u64, Event)>, t0: Instant) -> Vec<Vec<Effect>> {
    events
        .into_iter()
        .map(|(ms, e)| {
            job.handle(e, t0 + MS(ms))
                .into_iter()
                .filter(|e| !matches!(e, Effect::Note(..)))
                .collect()
        })
        .collect()
}

#[test]
fn a_job_runs_once_and_succeeds_with_status_zero() {
    let t0 = Instant::now();
    let mut job = Job::new("migrate", Ticket(9), None, MS(30_000));
    assert_eq!(job.start(), [spawn_bare(0, 0)]);
    assert!(job.start().is_empty(), "started once");
    let got = job_run(
        &mut job,
        vec![
            (0, Event::Spawned(0, 1000)),
            (50, Event::Ready(0)),
            (100, Event::Exited(0, Exit::code(0))),
        ],
        t0,
    );
    assert_eq!(got, [vec![], vec![], vec![kill(0), ok(9, Done::Completed)]]);
    assert!(job.finished());
}

#[test]
fn a_job_failure_carries_its_exit() {
    let t0 = Instant::now();
    let mut job = Job::new("migrate of jordan", Ticket(9), None, MS(30_000));
    job.start();
    let got = job_run(
        &mut job,
        vec![
            (0, Event::Spawned(0, 1000)),
            (100, Event::Exited(0, Exit::code(3))),
        ],
        t0,
    );
    assert_eq!(
        got[1],
        [
            kill(0),
            err(
                9,
                Refusal::JobFailed("migrate of jordan exited with status 3".into())
            )
        ]
    );
}

#[test]
fn a_job_that_cannot_be_spawned_fails() {
    let t0 = Instant::now();
    let mut job = Job::new("migrate", Ticket(9), None, MS(30_000));
    job.start();
    let got = job_run(
        &mut job,
        vec![(0, Event::SpawnFailed(0, "ENOENT".into()))],
        t0,
    );
    assert_eq!(
        got[0],
        [err(
            9,
            Refusal::JobFailed("migrate could not be started: ENOENT".into())
        )]
    );
    assert!(job.finished());
}

#[test]
fn shutdown_while_a_job_runs_stops_it_and_escalates() {
    let t0 = Instant::now();
    let mut job = Job::new("migrate", Ticket(9), None, MS(30_000));
    job.start();
    let got = job_run(
        &mut job,
        vec![
            (0, Event::Spawned(0, 1000)),
            (100, Event::Shutdown),
            (30_099, Event::Tick),
        ],
        t0,
    );
    assert_eq!(got[1], [term(0)]);
    assert!(got[2].is_empty());
    assert_eq!(job.deadline(), Some(t0 + MS(30_100)));
    let got = job_run(
        &mut job,
        vec![
            (30_100, Event::Tick),
            (30_200, Event::Exited(0, Exit::signaled("SIGKILL"))),
        ],
        t0,
    );
    assert_eq!(
        got,
        [vec![kill(0)], vec![kill(0), err(9, Refusal::ShuttingDown)]]
    );
    assert_eq!(job.deadline(), None);
}

#[test]
fn a_job_past_its_timeout_is_stopped_and_fails() {
    let t0 = Instant::now();
    let mut job = Job::new("migrate", Ticket(9), Some(MS(5000)), MS(30_000));
    job.start();
    let got = job_run(
        &mut job,
        vec![
            (0, Event::Spawned(0, 1000)),
            (4999, Event::Tick),
            (5000, Event::Tick),
            (5100, Event::Exited(0, Exit::signaled("SIGTERM"))),
        ],
        t0,
    );
    assert_eq!(
        got,
        [
            vec![],
            vec![],
            vec![term(0)],
            vec![
                kill(0),
                err(
                    9,
                    Refusal::JobFailed("migrate was stopped after 5s (killed by SIGTERM)".into())
                )
            ]
        ]
    );
}

#[test]
fn shutdown_before_a_job_starts_answers_at_once() {
    let t0 = Instant::now();
    let mut job = Job::new("migrate", Ticket(9), None, MS(30_000));
    let got = job_run(&mut job, vec![(0, Event::Shutdown)], t0);
    assert_eq!(got[0], [err(9, Refusal::ShuttingDown)]);
    assert!(job.start().is_empty());
}

#[test]
fn a_job_killed_by_a_second_stop_signal_ends_as_shutting_down() {
    let t0 = Instant::now();
    let mut job = Job::new("migrate", Ticket(9), Some(MS(5000)), MS(30_000));
    job.start();
    let got = job_run(
        &mut job,
        vec![(0, Event::Spawned(0, 1000)), (100, Event::Kill)],
        t0,
    );
    assert_eq!(got[1], [kill(0)]);
    assert!(!job.finished(), "it has not exited yet");
    assert_eq!(job.deadline(), None, "nothing left to escalate");
    let got = job_run(
        &mut job,
        vec![(150, Event::Exited(0, Exit::signaled("SIGKILL")))],
        t0,
    );
    assert_eq!(got[0], [kill(0), err(9, Refusal::ShuttingDown)]);
    assert!(job.finished());
    // Killed before it started: answered at once, never spawned.
    let mut pending = Job::new("migrate", Ticket(10), None, MS(30_000));
    let got = job_run(&mut pending, vec![(0, Event::Kill)], t0);
    assert_eq!(got[0], [err(10, Refusal::ShuttingDown)]);
    assert!(pending.start().is_empty());
}

#[test]
fn a_running_job_is_due_at_its_timeout_and_not_finished_before_its_exit() {
    let t0 = Instant::now();
    let mut job = Job::new("migrate", Ticket(9), Some(MS(5000)), MS(30_000));
    assert_eq!(job.deadline(), None);
    job.start();
    assert!(!job.finished());
    job_run(&mut job, vec![(200, Event::Spawned(0, 1000))], t0);
    assert_eq!(job.deadline(), Some(t0 + MS(5200)));
    assert!(!job.finished());
}

#[test]
fn a_pool_is_finished_only_once_shut_down_with_no_process_left() {
    let mut pool = run(
        web(1),
        vec![
            at(0, Input::Boot).want([spawn(0, 0)]),
            at(10, ready(0)).want([settled()]),
            at(20, req(1, Request::Stop)).want([term(0)]),
            at(30, exit(0)).want([kill(0), ok(1, Done::Stopped)]),
        ],
    );
    assert!(!pool.finished(), "stopped by an operator is not shut down");
    assert_eq!(pool.status().running_since, None);
    let t = Instant::now();
    pool.handle(Event::Request(Ticket(2), Request::Start), t);
    assert_eq!(pool.status().running_since, Some(t));
    pool.handle(Event::Shutdown, t);
    assert!(!pool.finished(), "its worker is still stopping");
    pool.handle(Event::Spawned(1, 1001), t);
    pool.handle(Event::Exited(1, Exit::code(0)), t);
    assert!(pool.finished());
}

#[test]
fn outcomes_read_as_sentences() {
    let table: [(Outcome, &str); 12] = [
        (Ok(Done::Running(1)), "1 worker ready"),
        (Ok(Done::Running(4)), "4 workers ready"),
        (Ok(Done::Replaced(2)), "2 workers replaced"),
        (Ok(Done::Stopped), "stopped"),
        (Ok(Done::AlreadyStopped), "already stopped"),
        (
            Ok(Done::ScaledWhileStopped(3)),
            "3 workers when started (the instance is stopped)",
        ),
        (Ok(Done::SettingsUpdated), "settings updated"),
        (
            Ok(Done::Signalled {
                name: "SIGHUP".into(),
                count: 1,
            }),
            "sent SIGHUP to 1 worker",
        ),
        (
            Err(Refusal::IsStopped("jordan".into())),
            "jordan is stopped; start it with `ctsctl start jordan`",
        ),
        (
            Err(Refusal::Failing("worker 0 exited".into())),
            "failing: worker 0 exited",
        ),
        (
            Err(Refusal::Singleton("jordan:beat".into())),
            "jordan:beat is a singleton: it always runs exactly one process",
        ),
        (Err(Refusal::ShuttingDown), "ctsd is shutting down"),
    ];
    for (outcome, text) in table {
        let got = match outcome {
            Ok(d) => d.to_string(),
            Err(r) => r.to_string(),
        };
        assert_eq!(got, text);
    }
}

#[test]
fn durations_read_as_the_config_file_writes_them() {
    let table = [
        (0, "0ms"),
        (999, "999ms"),
        (1000, "1s"),
        (1500, "1.5s"),
        (9_900, "9.9s"),
        (10_000, "10s"),
        (10_500, "10s"),
        (59_000, "59s"),
        (60_000, "1m"),
        (90_000, "1m30s"),
        (3_660_000, "1h1m"),
    ];
    for (millis, text) in table {
        assert_eq!(human(MS(millis)), text, "{millis}ms");
    }
}

#[test]
fn a_second_stop_while_workers_are_stopping_waits_for_them_too() {
    run(
        web(1),
        vec![
            at(0, Input::Boot).want([spawn(0, 0)]),
            at(10, ready(0)).want([settled()]),
            at(20, req(1, Request::Stop)).want([term(0)]),
            at(30, req(2, Request::Stop)).want([]),
            at(40, exit(0)).want([kill(0), ok(1, Done::Stopped), ok(2, Done::Stopped)]),
        ],
    );
}

#[test]
fn a_stop_of_a_running_pool_with_no_live_worker_is_not_already_stopped() {
    // Both workers crashed and back off: the pool is up, just empty for a moment.
    let mut s = web(1);
    s.restart.backoff_initial = MS(1000);
    run(
        s,
        vec![
            at(0, Input::Boot).want([spawn(0, 0)]),
            at(10, crash(0)).want([kill(0), spawn(1, 0), settled()]),
            at(20, crash(1)).want([kill(1)]),
            at(30, req(1, Request::Stop))
                .want([ok(1, Done::Stopped)])
                .note("stopping"),
        ],
    );
}

#[test]
fn a_worker_stopped_before_its_pid_is_known_gets_sigterm_and_its_sigkill_deadline() {
    let t0 = Instant::now();
    let mut pool = Pool::new("jordan", web(1), Jitter::fixed(0.5), t0);
    assert_eq!(pool.start(t0), [spawn(0, 0)]);
    // ctsd is told to stop before the spawn is answered (the actor answers at once; the
    // core does not rely on it).
    let got = pool.handle(Event::Shutdown, t0 + MS(1));
    assert!(got.iter().all(|e| matches!(e, Effect::Note(..))), "{got:?}");
    let got = pool.handle(Event::Spawned(0, pid(0)), t0 + MS(5));
    assert_eq!(got[0], term(0));
    assert_eq!(pool.deadline(), Some(t0 + MS(5) + MS(30_000)));
}

#[test]
fn a_singleton_whose_new_process_cannot_be_spawned_backs_off() {
    let pool = run(
        singleton(),
        vec![
            at(0, Input::Boot).want([spawn_bare(0, 0)]),
            at(10, ready(0)).want([settled()]),
            at(20, req(1, Request::Restart)).want([progress(0, 1), term(0)]),
            at(30, exit(0))
                .spawn_fails("ENOENT")
                .want([
                    kill(0),
                    spawn_bare(1, 0),
                    err(
                        1,
                        Refusal::RolledBack("could not start a new worker: ENOENT".into()),
                    ),
                ])
                .deadline(Some(130))
                .note("worker 0 could not be started: ENOENT; retrying in 100ms"),
            at(130, tick()).want([spawn_bare(2, 0)]),
        ],
    );
    assert_eq!(pool.status().restarts, 1);
}

#[test]
fn the_crash_loop_is_announced_once() {
    let mut s = web(1);
    s.restart.crash_loop.restarts = 1;
    run(
        s,
        vec![
            at(0, Input::Boot).want([spawn(0, 0)]),
            at(10, crash(0)).want([kill(0), spawn(1, 0), settled()]),
            at(20, crash(1))
                .want([kill(1)])
                .state(S::Failing)
                .note("failing: 2 crashes"),
            at(30_020, tick()).want([spawn(2, 0)]),
            at(30_030, crash(2))
                .want([kill(2)])
                .state(S::Failing)
                .no_note("failing:"),
        ],
    );
}

fn killed(w: WorkerId) -> Input {
    Input::Event(Event::Exited(w, Exit::signaled("SIGKILL")))
}

#[test]
fn a_ready_worker_killed_from_outside_is_replaced_at_once_every_time() {
    // A kill storm: the replacements boot fine and are killed again; the pool is never left
    // empty behind a backoff, and it is no crash loop.
    let mut steps = vec![
        at(0, Input::Boot).want([spawn(0, 0)]),
        at(5, ready(0)).want([settled()]),
    ];
    for n in 0..10u64 {
        let t = 50 + n * 50;
        steps.push(
            at(t, killed(n))
                .want([kill(n), spawn(n + 1, 0)])
                .note("killed by SIGKILL; restarting it now")
                .deadline(Some(t + 10_000)),
        );
        steps.push(at(t + 5, ready(n + 1)).want([]).state(S::Running));
    }
    let pool = run(web(1), steps);
    assert_eq!(pool.status().restarts, 10);
}

#[test]
fn a_worker_killed_before_it_was_ready_backs_off() {
    run(
        web(1),
        vec![
            at(0, Input::Boot).want([spawn(0, 0)]),
            at(10, killed(0)).want([kill(0), spawn(1, 0), settled()]),
            at(20, killed(1)).want([kill(1)]).deadline(Some(120)),
            at(120, tick()).want([spawn(2, 0)]),
        ],
    );
}

#[test]
fn a_ready_worker_that_fails_on_its_own_backs_off() {
    let segfault = |w| Input::Event(Event::Exited(w, Exit::signaled("SIGSEGV")));
    run(
        web(1),
        vec![
            at(0, Input::Boot).want([spawn(0, 0)]),
            at(5, ready(0)).want([settled()]),
            at(10, segfault(0)).want([kill(0), spawn(1, 0)]),
            at(15, ready(1)).want([]),
            at(20, segfault(1)).want([kill(1)]).deadline(Some(120)),
        ],
    );
}

/// Drives `pool` with `event` at `t` ms after `t0`, answering spawns with `1000 + id`.
fn feed(pool: &mut Pool, t0: Instant, t: u64, event: Event) -> Vec<Effect> {
    let now = t0 + MS(t);
    let mut out = Vec::new();
    let mut queue = std::collections::VecDeque::from(pool.handle(event, now));
    while let Some(e) = queue.pop_front() {
        if let Effect::Spawn { worker, .. } = e {
            queue.extend(pool.handle(Event::Spawned(worker, pid(worker)), now));
        }
        out.push(e);
    }
    out
}

#[test]
fn a_snapshot_adopted_decides_as_the_pool_it_was_taken_from() {
    let t0 = Instant::now();
    let mut pool = Pool::new("jordan", web(2), Jitter::fixed(0.5), t0);
    for e in pool.start(t0) {
        if let Effect::Spawn { worker, .. } = e {
            pool.handle(Event::Spawned(worker, pid(worker)), t0);
        }
    }
    feed(&mut pool, t0, 10, Event::Ready(0));
    feed(&mut pool, t0, 20, Event::Ready(1));
    // Worker 1 crashes twice: slot 1 backs off, worker 3 not yet spawned.
    feed(&mut pool, t0, 30, Event::Exited(1, Exit::code(1)));
    feed(&mut pool, t0, 40, Event::Exited(2, Exit::code(1)));
    let now = t0 + MS(50);
    let snap = pool.snapshot(now).expect("at rest");
    // Through JSON, as it travels to the new ctsd.
    let text = serde_json::to_string(&snap).unwrap();
    let back: Snapshot = serde_json::from_str(&text).unwrap();
    assert_eq!(back, snap);
    let mut adopted = Pool::adopt("jordan", web(2), &back, Jitter::fixed(0.5), now);
    let (a, b) = (pool.status(), adopted.status());
    assert_eq!(
        (a.state, a.restarts, a.ready),
        (b.state, b.restarts, b.ready)
    );
    assert_eq!(a.last_exit, b.last_exit);
    assert_eq!(
        a.workers
            .iter()
            .map(|w| (w.slot, w.pid))
            .collect::<Vec<_>>(),
        b.workers
            .iter()
            .map(|w| (w.slot, w.pid))
            .collect::<Vec<_>>()
    );
    assert_eq!(pool.deadline(), adopted.deadline());
    // The backoff ends at the same time in both, and both spawn the same next worker.
    let due = pool.deadline().expect("backoff");
    let later = due.saturating_duration_since(t0).as_millis() as u64;
    assert_eq!(
        feed(&mut pool, t0, later, Event::Tick),
        feed(&mut adopted, t0, later, Event::Tick)
    );
    // A crash of an adopted worker is a crash like any other.
    let crash = feed(
        &mut adopted,
        t0,
        later + 10,
        Event::Exited(0, Exit::code(1)),
    );
    assert!(crash.contains(&kill(0)), "{crash:?}");
    assert_eq!(adopted.status().restarts, 3);
}

#[test]
fn a_pool_in_the_middle_of_a_request_is_not_handed_over() {
    let t0 = Instant::now();
    let mut pool = Pool::new("jordan", web(1), Jitter::fixed(0.5), t0);
    for e in pool.start(t0) {
        if let Effect::Spawn { worker, .. } = e {
            pool.handle(Event::Spawned(worker, pid(worker)), t0);
        }
    }
    feed(&mut pool, t0, 10, Event::Ready(0));
    feed(
        &mut pool,
        t0,
        20,
        Event::Request(Ticket(1), Request::Restart),
    );
    let why = pool.snapshot(t0 + MS(30)).unwrap_err();
    assert!(why.contains("restart"), "{why}");
    feed(&mut pool, t0, 40, Event::Ready(1));
    feed(
        &mut pool,
        t0,
        50,
        Event::Exited(0, Exit::signaled("SIGTERM")),
    );
    let snap = pool.snapshot(t0 + MS(60)).expect("the roll is done");
    assert_eq!(snap.workers.len(), 1);
    assert_eq!(snap.generation, 1);
}

#[test]
fn a_spawn_answered_late_is_stopped_once_its_pid_is_known() {
    // A preload loader answers a spawn after other events: a stop asked meanwhile reaches
    // the worker as soon as its pid is known, and the stop completes when it exits.
    let t0 = Instant::now();
    let mut pool = Pool::new("jordan", web(1), Jitter::fixed(0.5), t0);
    let first = pool.start(t0);
    assert_eq!(first, vec![spawn(0, 0)]);
    // Not answered yet: the slot is taken (no second spawn on a tick).
    assert_eq!(pool.handle(Event::Tick, t0 + MS(5)), vec![]);
    let stop = pool.handle(Event::Request(Ticket(1), Request::Stop), t0 + MS(10));
    assert!(
        !stop.iter().any(|e| matches!(e, Effect::Signal { .. })),
        "{stop:?}"
    );
    let spawned = pool.handle(Event::Spawned(0, pid(0)), t0 + MS(20));
    assert!(spawned.contains(&term(0)), "{spawned:?}");
    let gone = pool.handle(Event::Exited(0, Exit::signaled("SIGTERM")), t0 + MS(30));
    assert!(gone.contains(&ok(1, Done::Stopped)), "{gone:?}");
}
