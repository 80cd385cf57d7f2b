//! A one-shot job (a migration, `collectstatic`): runs once to completion and ends with
//! success or failure with its exit. No respawn; stopped like a worker (SIGTERM, then SIGKILL
//! after `stop_timeout`) when ctsd shuts down or its `timeout` passes.

use super::{human, Done, Effect, Event, Exit, Level, Refusal, Sig, Ticket, WorkerId};
use std::time::{Duration, Instant};

/// The one id a job's process has in events and effects.
const PROCESS: WorkerId = 0;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Not started yet.
    Pending,
    /// [`Effect::Spawn`] was emitted.
    Spawning,
    /// Running since `since`.
    Running { pid: u32, since: Instant },
    /// Asked to stop (shutdown, or its time was up); SIGKILL at `kill_at` (`None`: sent).
    Stopping {
        pid: u32,
        kill_at: Option<Instant>,
        timed_out: bool,
    },
    /// Ended; its answer was sent.
    Done,
}

/// The state of one job.
#[derive(Debug)]
pub struct Job {
    /// What it runs, for messages (`migrate of jordan`).
    name: String,
    /// Answered when it ends.
    ticket: Ticket,
    /// Stopped (and failed) when it runs longer than this.
    timeout: Option<Duration>,
    stop_timeout: Duration,
    phase: Phase,
    /// ctsd is stopping: do not start, stop if running.
    shutting_down: bool,
}

impl Job {
    /// A job answered on `ticket`; nothing runs until [`Job::start`].
    pub fn new(
        name: impl Into<String>,
        ticket: Ticket,
        timeout: Option<Duration>,
        stop_timeout: Duration,
    ) -> Self {
        Job {
            name: name.into(),
            ticket,
            timeout,
            stop_timeout,
            phase: Phase::Pending,
            shutting_down: false,
        }
    }

    /// Spawns the job's process (socketless).
    pub fn start(&mut self) -> Vec<Effect> {
        if self.phase != Phase::Pending {
            return Vec::new();
        }
        self.phase = Phase::Spawning;
        vec![Effect::Spawn {
            worker: PROCESS,
            slot: 0,
            socket: false,
        }]
    }

    /// Whether it has ended (its answer was sent).
    pub fn finished(&self) -> bool {
        self.phase == Phase::Done
    }

    /// When a timeout or SIGKILL escalation is due.
    pub fn deadline(&self) -> Option<Instant> {
        match self.phase {
            Phase::Running { since, .. } => self.timeout.map(|t| since + t),
            Phase::Stopping { kill_at, .. } => kill_at,
            _ => None,
        }
    }

    /// Feeds one event observed at `now`; returns what to do, in order.
    pub fn handle(&mut self, event: Event, now: Instant) -> Vec<Effect> {
        let mut out = Vec::new();
        match (event, self.phase) {
            (Event::Spawned(_, pid), Phase::Spawning) => {
                self.phase = Phase::Running { pid, since: now };
                out.push(Effect::Note(
                    Level::Info,
                    format!("{} started, pid {pid}", self.name),
                ));
                if self.shutting_down {
                    self.stop(pid, now, false, &mut out);
                }
            }
            (Event::SpawnFailed(_, error), Phase::Spawning) => {
                let why = format!("{} could not be started: {error}", self.name);
                self.finish(Err(Refusal::JobFailed(why)), &mut out);
            }
            (Event::Exited(_, exit), Phase::Running { pid, .. }) => {
                // Whatever it left behind in its process group goes with it.
                out.push(Effect::Signal {
                    pid,
                    signal: Sig::Kill,
                });
                self.ended(&exit, false, &mut out);
            }
            (Event::Exited(_, exit), Phase::Stopping { pid, timed_out, .. }) => {
                out.push(Effect::Signal {
                    pid,
                    signal: Sig::Kill,
                });
                self.ended(&exit, timed_out, &mut out);
            }
            (Event::Tick, Phase::Running { pid, since }) => {
                if let Some(t) = self.timeout.filter(|t| since + *t <= now) {
                    out.push(Effect::Note(
                        Level::Warning,
                        format!(
                            "{} still running after {}; stopping it",
                            self.name,
                            human(t)
                        ),
                    ));
                    self.stop(pid, now, true, &mut out);
                }
            }
            (
                Event::Tick,
                Phase::Stopping {
                    pid,
                    kill_at: Some(t),
                    timed_out,
                },
            ) if t <= now => {
                out.push(Effect::Signal {
                    pid,
                    signal: Sig::Kill,
                });
                out.push(Effect::Note(
                    Level::Warning,
                    format!(
                        "{} did not stop within {}; sent SIGKILL",
                        self.name,
                        human(self.stop_timeout)
                    ),
                ));
                self.phase = Phase::Stopping {
                    pid,
                    kill_at: None,
                    timed_out,
                };
            }
            (Event::Shutdown, phase) => {
                self.shutting_down = true;
                match phase {
                    Phase::Pending => self.finish(Err(Refusal::ShuttingDown), &mut out),
                    Phase::Running { pid, .. } => self.stop(pid, now, false, &mut out),
                    _ => {}
                }
            }
            (Event::Kill, phase) => {
                self.shutting_down = true;
                match phase {
                    Phase::Pending => self.finish(Err(Refusal::ShuttingDown), &mut out),
                    Phase::Running { pid, .. } | Phase::Stopping { pid, .. } => {
                        out.push(Effect::Signal {
                            pid,
                            signal: Sig::Kill,
                        });
                        self.phase = Phase::Stopping {
                            pid,
                            kill_at: None,
                            timed_out: false,
                        };
                    }
                    _ => {}
                }
            }
            // Requests, readiness and stale events mean nothing to a job.
            _ => {}
        }
        out
    }

    fn stop(&mut self, pid: u32, now: Instant, timed_out: bool, out: &mut Vec<Effect>) {
        out.push(Effect::Signal {
            pid,
            signal: Sig::Term,
        });
        self.phase = Phase::Stopping {
            pid,
            kill_at: Some(now + self.stop_timeout),
            timed_out,
        };
    }

    fn ended(&mut self, exit: &Exit, timed_out: bool, out: &mut Vec<Effect>) {
        let outcome = if exit.success && !timed_out && !self.shutting_down {
            Ok(Done::Completed)
        } else if self.shutting_down {
            Err(Refusal::ShuttingDown)
        } else if timed_out {
            Err(Refusal::JobFailed(format!(
                "{} was stopped after {} ({})",
                self.name,
                human(self.timeout.unwrap_or_default()),
                exit.description
            )))
        } else {
            Err(Refusal::JobFailed(format!(
                "{} {}",
                self.name, exit.description
            )))
        };
        out.push(match &outcome {
            Ok(_) => Effect::Note(Level::Info, format!("{} completed", self.name)),
            Err(e) => Effect::Note(Level::Warning, e.to_string()),
        });
        self.finish(outcome, out);
    }

    fn finish(&mut self, outcome: Result<Done, Refusal>, out: &mut Vec<Effect>) {
        self.phase = Phase::Done;
        out.push(Effect::Reply(self.ticket, outcome));
    }
}
