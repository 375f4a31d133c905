//! `cargo run -p sim --release -- [--seeds N] [--from S] [--schedule NAME] [--trace]`: runs
//! schedules and reports schedules per second and every invariant violation, with the command
//! that replays it. `HORDE_SIM_SEED=S` runs that one seed with its trace. `--planted BUG`
//! switches one safety rule off (see `horde::core::planted`): a run that then breaks no
//! invariant shows a rule the simulator cannot see.

use std::process::ExitCode;
use std::time::Instant;

fn main() -> ExitCode {
    if let Ok(filter) = std::env::var("HORDE_SIM_LOG") {
        tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
            .with_writer(std::io::stderr)
            .without_time()
            .init();
    }
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut seeds: u64 = 100;
    let mut from: u64 = 0;
    let mut schedule = "random-faults".to_string();
    let mut trace = false;
    let mut keep_going = false;
    let mut planted: Option<horde::core::planted::Bug> = None;
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = |flag: &str| -> Option<String> {
            let v = it.next().cloned();
            if v.is_none() {
                eprintln!("{flag} needs a value");
            }
            v
        };
        match a.as_str() {
            "--seeds" => match value("--seeds").and_then(|v| v.parse().ok()) {
                Some(n) => seeds = n,
                None => return ExitCode::from(2),
            },
            "--from" => match value("--from").and_then(|v| v.parse().ok()) {
                Some(n) => from = n,
                None => return ExitCode::from(2),
            },
            "--schedule" => match value("--schedule") {
                Some(s) => schedule = s,
                None => return ExitCode::from(2),
            },
            "--planted" => match value("--planted").map(|v| horde::core::planted::Bug::parse(&v)) {
                Some(Some(b)) => planted = Some(b),
                _ => {
                    let all: Vec<&str> = horde::core::planted::Bug::ALL
                        .iter()
                        .map(|b| b.name())
                        .collect();
                    eprintln!("--planted takes one of: {}", all.join(", "));
                    return ExitCode::from(2);
                }
            },
            "--trace" => trace = true,
            "--keep-going" => keep_going = true,
            "-h" | "--help" => {
                println!(
                    "usage: sim [--seeds N] [--from S] [--schedule NAME] [--planted BUG] [--trace] [--keep-going]\n\
                     schedules: random-planned, random-faults, {}\n\
                     bugs (--planted: that safety rule off, to see the simulator catch it): {}\n\
                     HORDE_SIM_SEED=S replays one seed with its trace",
                    sim::schedule::SCENARIOS.join(", "),
                    horde::core::planted::Bug::ALL
                        .iter()
                        .map(|b| b.name())
                        .collect::<Vec<_>>()
                        .join(", ")
                );
                return ExitCode::SUCCESS;
            }
            other => {
                eprintln!("unknown argument `{other}` (see --help)");
                return ExitCode::from(2);
            }
        }
    }
    let (range, trace) = match sim::seed_from_env() {
        Some(s) => (s..s + 1, true),
        None => (from..from + seeds, trace),
    };
    let start = range.start;
    horde::core::planted::plant(planted);
    let started = Instant::now();
    let (mut ran, mut failed, mut acked) = (0u64, 0u64, 0u64);
    let mut largest: (usize, &str) = (0, "");
    let mut first_failure: Option<u64> = None;
    for seed in range {
        let Some(plan) = sim::schedule_named(&schedule, seed) else {
            eprintln!("unknown schedule `{schedule}` (see --help)");
            return ExitCode::from(2);
        };
        let outcome = sim::run(seed, &plan, trace);
        ran += 1;
        acked += outcome.acked;
        if outcome.largest_message.0 > largest.0 {
            largest = outcome.largest_message;
        }
        if !outcome.passed() {
            failed += 1;
            first_failure.get_or_insert(seed);
            let shown = if outcome.trace.is_some() {
                outcome
            } else {
                sim::run(seed, &plan, true)
            };
            println!("{}", sim::report(&shown));
            if !keep_going {
                break;
            }
        } else if let Some(t) = &outcome.trace {
            for line in t {
                println!("{line}");
            }
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{schedule}: {ran} schedules in {secs:.1} s ({:.1} schedules/s), {acked} inputs answered, largest message {} bytes ({}), {failed} broke an invariant{}",
        ran as f64 / secs.max(1e-9),
        largest.0,
        largest.1,
        first_failure
            .map(|s| format!(" (first at seed {s}, after {} seeds)", s - start + 1))
            .unwrap_or_default()
    );
    if failed > 0 {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
