//! The wire corpus: what every release put on the wire, kept as bytes, read by this build.
//!
//! `tests/corpus/<release>/` holds one file per message kind (and game state) in the bytes
//! that release's own build wrote (`tests/corpus/<release>/generate.rs`, run in a worktree of
//! the release by `tests/corpus/write.sh <release>`). For every release kept here, this build
//! must decode every file to the value [`fixtures`] says it means now, and encode that value
//! to the very same bytes: a field removed, added in the middle or reordered, a variant moved,
//! anything that changes the bytes of a message an older release sends or reads, fails here.
//! The files of a release are never rewritten; each release adds its own directory
//! (`MINOTAUR_WRITE_CORPUS=1 cargo test -p minotaur --test corpus` writes this release's, the
//! one directory it may write).

#![allow(clippy::unwrap_used, clippy::expect_used)] // test code: a failed unwrap is a failed test

#[path = "corpus/fixtures.rs"]
mod fixtures;

use std::path::{Path, PathBuf};

use discovery::Envelope;
use discovery::connector::beacon::{PingReply, PingRequest};
use fixtures::{Item, as_of, game_after};
use game::{GameMsg, GameReply, GameSpec, Session, Snapshot};
use horde::protocol::{RouteReply, Started, Stopped, decode_wire, encode_wire};
use horde::{Child, Ctx, Handoff};
use minotaur::console::protocol::{Request, Response};
use ractor::BytesConvertable;

/// This release.
const THIS: &str = env!("CARGO_PKG_VERSION");

fn corpus() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests/corpus")
}

fn envelope<T: serde::Serialize>(value: &T) -> Vec<u8> {
    Envelope::encode(value).unwrap().into_bytes()
}

/// The bytes this build writes for `item`.
fn encode(item: &Item) -> Vec<u8> {
    match item {
        Item::Wire(w) => encode_wire(w).unwrap().into_bytes(),
        Item::Started(x) => envelope(x),
        Item::Stopped(x) => envelope(x),
        Item::RouteReply(x) => envelope(x),
        Item::Ping(x) => envelope(x),
        Item::Pong(x) => envelope(x),
        Item::ConsoleRequest(args) => envelope(&Request { args: args.clone() }),
        Item::ConsoleResponse(ok, text, json) => envelope(&Response {
            ok: *ok,
            text: text.clone(),
            json: json.clone(),
        }),
        Item::GameSpec(x) => postcard::to_stdvec(x).unwrap(),
        Item::GameMsg(x) => postcard::to_stdvec(x).unwrap(),
        Item::GameReply(inputs) => postcard::to_stdvec(&reply_after(inputs)).unwrap(),
        Item::GameEvent(inputs) => postcard::to_stdvec(&event_after(inputs)).unwrap(),
        Item::GameState(inputs) => {
            let (game, ctx) = game_after(inputs);
            game.dehydrate(&ctx)
        }
    }
}

/// The answer to the last of `inputs` (the game's reply as it crosses between nodes).
fn reply_after(inputs: &[game::Input]) -> GameReply {
    let (last, before) = inputs.split_last().unwrap();
    let (mut game, _) = game_after(before);
    let mut ctx = Ctx::for_test("ABCDEF", fixtures::STATE_AT_MS);
    game.handle(GameMsg::Input(last.clone()), &mut ctx)
}

/// The event the last of `inputs` emitted (what a subscriber on another node receives).
fn event_after(inputs: &[game::Input]) -> Snapshot {
    reply_after(inputs).unwrap()
}

/// What this build reads `bytes` as, in a form to compare (`Debug` of the decoded value; for
/// a game state, the state this build writes back after taking it in at the same moment).
fn decode(item: &Item, bytes: &[u8]) -> Result<String, String> {
    let env = || <Envelope as BytesConvertable>::from_bytes(bytes.to_vec());
    let e = |e: &dyn std::fmt::Display| e.to_string();
    Ok(match item {
        Item::Wire(_) => format!("{:?}", decode_wire(&env()).map_err(|u| e(&u.error))?),
        Item::Started(_) => format!("{:?}", env().decode::<Started>().map_err(|x| e(&x))?),
        Item::Stopped(_) => format!("{:?}", env().decode::<Stopped>().map_err(|x| e(&x))?),
        Item::RouteReply(_) => format!("{:?}", env().decode::<RouteReply>().map_err(|x| e(&x))?),
        Item::Ping(_) => format!("{:?}", PingRequest::decode(&env()).map_err(|x| e(&x))?),
        Item::Pong(_) => format!("{:?}", PingReply::decode(&env()).map_err(|x| e(&x))?),
        Item::ConsoleRequest(_) => {
            format!("{:?}", env().decode::<Request>().map_err(|x| e(&x))?.args)
        }
        Item::ConsoleResponse(..) => {
            let r = env().decode::<Response>().map_err(|x| e(&x))?;
            format!("{:?}", (r.ok, r.text, r.json))
        }
        Item::GameSpec(_) => {
            format!(
                "{:?}",
                postcard::from_bytes::<GameSpec>(bytes).map_err(|x| e(&x))?
            )
        }
        Item::GameMsg(_) => {
            format!(
                "{:?}",
                postcard::from_bytes::<GameMsg>(bytes).map_err(|x| e(&x))?
            )
        }
        Item::GameReply(_) => {
            format!(
                "{:?}",
                postcard::from_bytes::<GameReply>(bytes).map_err(|x| e(&x))?
            )
        }
        Item::GameEvent(_) => {
            format!(
                "{:?}",
                postcard::from_bytes::<Snapshot>(bytes).map_err(|x| e(&x))?
            )
        }
        Item::GameState(_) => {
            let mut ctx = Ctx::for_test("ABCDEF", fixtures::STATE_AT_MS);
            let game = Session::rehydrate("ABCDEF", 1, bytes, &mut ctx).map_err(|x| e(&x))?;
            format!("{:?}", game.dehydrate(&ctx))
        }
    })
}

/// What `item` is expected to read as (see [`decode`]).
fn expected(item: &Item) -> String {
    match item {
        Item::Wire(w) => format!("{w:?}"),
        Item::Started(x) => format!("{x:?}"),
        Item::Stopped(x) => format!("{x:?}"),
        Item::RouteReply(x) => format!("{x:?}"),
        Item::Ping(x) => format!("{x:?}"),
        Item::Pong(x) => format!("{x:?}"),
        Item::ConsoleRequest(args) => format!("{args:?}"),
        Item::ConsoleResponse(ok, text, json) => format!("{:?}", (ok, text, json)),
        Item::GameSpec(x) => format!("{x:?}"),
        Item::GameMsg(x) => format!("{x:?}"),
        Item::GameReply(inputs) => format!("{:?}", reply_after(inputs)),
        Item::GameEvent(inputs) => format!("{:?}", event_after(inputs)),
        Item::GameState(_) => format!("{:?}", encode(item)),
    }
}

/// The releases kept in the corpus, oldest first.
fn releases() -> Vec<String> {
    let mut out: Vec<(semver::Version, String)> = std::fs::read_dir(corpus())
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().is_dir())
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().to_string();
            Some((semver::Version::parse(&name).ok()?, name))
        })
        .collect();
    out.sort();
    out.into_iter().map(|(_, n)| n).collect()
}

/// Every file of `release` read by this build; the problems found.
fn check_release(release: &str) -> Vec<String> {
    let dir = corpus().join(release);
    let mut problems = Vec::new();
    let mut seen = 0;
    for (name, item) in fixtures::all() {
        let path = dir.join(format!("{name}.bin"));
        let Ok(bytes) = std::fs::read(&path) else {
            // A kind added after that release has no file there.
            continue;
        };
        seen += 1;
        let item = as_of(release, item);
        match decode(&item, &bytes) {
            Ok(got) if got == expected(&item) => {}
            Ok(got) => problems.push(format!(
                "{release}/{name}: reads as\n    {got}\n  expected\n    {}",
                expected(&item)
            )),
            Err(e) => problems.push(format!("{release}/{name}: does not decode: {e}")),
        }
        let ours = encode(&item);
        if ours != bytes {
            problems.push(format!(
                "{release}/{name}: this build writes\n    {ours:?}\n  where {release} wrote\n    {bytes:?}"
            ));
        }
    }
    let files = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(Result::ok)
        .filter(|e| e.path().extension().is_some_and(|x| x == "bin"))
        .count();
    if files != seen {
        problems.push(format!(
            "{release}: {files} files, {seen} of them known to the fixtures (a file without a fixture is never checked)"
        ));
    }
    problems
}

fn write_release(dir: &Path) {
    std::fs::create_dir_all(dir).unwrap();
    for (name, item) in fixtures::all() {
        std::fs::write(dir.join(format!("{name}.bin")), encode(&item)).unwrap();
    }
}

#[test]
fn this_build_reads_and_writes_every_release_s_corpus_byte_for_byte() {
    if std::env::var_os("MINOTAUR_WRITE_CORPUS").is_some() {
        write_release(&corpus().join(THIS));
    }
    let releases = releases();
    let previous = std::fs::read_to_string(corpus().join("../../rel/previous-release")).unwrap();
    let previous = previous.split_whitespace().nth(1).unwrap().to_string();
    assert!(
        releases.contains(&previous),
        "no corpus of the previous release {previous} (tests/corpus/write.sh {previous})"
    );
    assert!(
        releases.iter().any(|r| r == THIS),
        "no corpus of this release {THIS}: MINOTAUR_WRITE_CORPUS=1 cargo test -p minotaur --test corpus"
    );
    let mut problems = Vec::new();
    for release in &releases {
        problems.extend(check_release(release));
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // Every kind of this release is in its corpus.
    assert_eq!(
        std::fs::read_dir(corpus().join(THIS)).unwrap().count(),
        fixtures::all().len()
    );
}

#[test]
fn every_kind_of_message_is_in_the_corpus() {
    let kinds: std::collections::BTreeSet<&str> = fixtures::all()
        .iter()
        .filter_map(|(_, item)| match item {
            Item::Wire(w) => Some(w.kind()),
            _ => None,
        })
        .collect();
    let all: std::collections::BTreeSet<&str> =
        horde::protocol::WIRE_KINDS.iter().copied().collect();
    assert_eq!(kinds, all, "a message kind without a fixture");
}
