//! How every command that acts prints its outcomes, and the exit code they give.

use cts_proto::exit_codes;

/// Prints one line per outcome; the exit code is that of the first failure's kind
/// (`rolled back`, `failing`, `stopped`, `shutting down`, else FAILED), OK when none failed.
pub fn outcomes(outcomes: Vec<cts_proto::Outcome>, verb: &str) -> u8 {
    let mut code = exit_codes::OK;
    for o in outcomes {
        if o.ok {
            println!("{}: {}", o.instance, o.message);
        } else {
            eprintln!("ctsctl: {}: {verb} failed: {}", o.instance, o.message);
            if code == exit_codes::OK {
                code = exit_codes::of_failure(o.failure);
            }
        }
    }
    code
}
