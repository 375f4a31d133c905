//! The values of the wire corpus (`tests/corpus/<release>/*.bin`): one of every message kind
//! that crosses between nodes (horde's, the connector's heartbeats, the console link, the
//! game's messages inside horde's) and a game's state, as this build builds them.
//!
//! Each release's generator wrote these same values with its own build (the release's
//! `tests/corpus/<release>/generate.rs`); [`as_of`] says how a value written by an older
//! release reads now (the fields added since take their defaults). Change a value here only
//! with a new file name: the files of a release are never rewritten.

use discovery::NodeId;
use discovery::connector::beacon::{MeshPeer, MeshReport, PingReply, PingRequest};
use game::{Action, GameMsg, GameSpec, Input, Session};
use horde::protocol::{
    Hello, MemberStatus, MemberWire, OfferItem, OfferRefusal, Replica, ReplicaRefusal, Route,
    RouteBody, RouteReply, StartChild, StartRefusal, Started, StopChild, Stopped, Subscriber,
    Unavailable, Wire, WireEntry,
};
use horde::{Child, Ctx};

/// One value of the corpus.
#[derive(Debug)]
pub enum Item {
    /// A horde message (`encode_wire`).
    Wire(Wire),
    /// Horde call replies (enveloped).
    Started(Started),
    Stopped(Stopped),
    RouteReply(RouteReply),
    /// The connector's heartbeat and its answer (enveloped).
    Ping(PingRequest),
    Pong(PingReply),
    /// The console link (enveloped): a command line, an answer (ok, text, json).
    ConsoleRequest(Vec<String>),
    ConsoleResponse(bool, String, String),
    /// The game's own messages, inside horde's (postcard).
    GameSpec(GameSpec),
    GameMsg(GameMsg),
    GameReply(Vec<Input>),
    GameEvent(Vec<Input>),
    /// A game's state (schema 1, as a backup or a move carries it): the game after these
    /// inputs, packed at [`STATE_AT_MS`].
    GameState(Vec<Input>),
}

/// When the game of the state fixtures is packed (its host clock, ms).
pub const STATE_AT_MS: u64 = 5_000;

fn node(n: u8) -> NodeId {
    NodeId {
        name: format!("minotaur@10.0.1.{n}"),
        incarnation: 1_796_000_000_000_000 + u64::from(n),
    }
}

fn entry(name: &str, owner: u32, epoch: u64, removed: bool) -> WireEntry {
    WireEntry {
        name: name.into(),
        owner,
        epoch,
        spec: vec![1, 2, 3],
        removed,
    }
}

fn hello(status: MemberStatus) -> Hello {
    Hello {
        node: node(1),
        protocol: 2,
        version: "0.1.0".into(),
        status,
        seq: 7,
        reads: vec![1],
        max_protocol: Some(3),
    }
}

fn subscriber() -> Subscriber {
    Subscriber {
        node: node(2),
        sink: 42,
    }
}

fn replica() -> Replica {
    Replica {
        name: "ABCDEF".into(),
        owner: node(1),
        epoch: 3,
        seq: 9,
        schema: 1,
        state: vec![5; 40],
        subscribers: vec![subscriber()],
        event_seq: 4,
    }
}

fn spec() -> GameSpec {
    GameSpec {
        id: "g-7f3a".into(),
        code: "ABCDEF".into(),
        round_ms: 30_000,
        seed: 77,
    }
}

/// The inputs of the game fixtures: two join, one moves... every action.
pub fn inputs() -> Vec<Input> {
    vec![
        Input::new("ann", "a-1", Action::Join),
        Input::new("bob", "b-1", Action::Join),
        Input::new("ann", "a-2", Action::EndTurn),
        Input::new("bob", "b-2", Action::EndTurn),
        Input::new(
            "ann",
            "a-3",
            Action::Attack {
                target: "bob".into(),
            },
        ),
        Input::new("ann", "a-4", Action::Leave),
    ]
}

/// Every value, by file name.
pub fn all() -> Vec<(&'static str, Item)> {
    use Item as I;
    let w = |x: Wire| I::Wire(x);
    vec![
        ("wire-hello", w(Wire::Hello(hello(MemberStatus::Alive)))),
        (
            "wire-sync",
            w(Wire::Sync {
                from: node(1),
                members: vec![MemberWire {
                    node: node(3),
                    status: MemberStatus::Draining,
                    version: "0.1.0".into(),
                    reads: vec![1, 2],
                }],
                nodes: vec![node(1), node(2)],
                entries: vec![entry("ABCDEF", 0, 3, false), entry("GONE00", 1, 5, true)],
                done: true,
            }),
        ),
        (
            "wire-deltas",
            w(Wire::Deltas {
                from: node(1),
                batch: 12,
                nodes: vec![node(2)],
                entries: vec![entry("ABCDEF", 0, 4, false)],
            }),
        ),
        (
            "wire-delta-ack",
            w(Wire::DeltaAck {
                node: node(2),
                batch: 12,
            }),
        ),
        (
            "wire-route",
            w(Wire::Route(Route {
                name: "ABCDEF".into(),
                hops: 1,
                body: RouteBody::User(vec![9, 8, 7]),
            })),
        ),
        (
            "wire-event",
            w(Wire::Event {
                sink: 42,
                name: "ABCDEF".into(),
                seq: 5,
                event: vec![1, 0, 1],
            }),
        ),
        (
            "wire-offer",
            w(Wire::Offer {
                from: node(1),
                id: 33,
                items: vec![OfferItem {
                    name: "ABCDEF".into(),
                    epoch: 4,
                    spec: vec![1, 2, 3],
                    schema: 1,
                    state: vec![6; 30],
                    subscribers: vec![subscriber()],
                    event_seq: 4,
                }],
                frozen_us: vec![1_250],
            }),
        ),
        (
            "wire-offer-reply",
            w(Wire::OfferReply {
                from: node(2),
                id: 33,
                accepted: vec!["ABCDEF".into()],
                refused: vec![
                    (
                        "GHIJKL".into(),
                        OfferRefusal::NotAlive(MemberStatus::Draining),
                    ),
                    ("MNOPQR".into(), OfferRefusal::AlreadyHere),
                    ("STUVWX".into(), OfferRefusal::Stale),
                    ("YZABCD".into(), OfferRefusal::Rehydrate("schema 3".into())),
                ],
            }),
        ),
        (
            "wire-abort",
            w(Wire::Abort {
                names: vec![("ABCDEF".into(), 4)],
            }),
        ),
        (
            "wire-start-child",
            w(Wire::StartChild(StartChild {
                name: "ABCDEF".into(),
                spec: vec![1, 2, 3],
            })),
        ),
        ("wire-replicate", w(Wire::Replicate(replica()))),
        (
            "wire-replica-ack",
            w(Wire::ReplicaAck {
                from: node(2),
                name: "ABCDEF".into(),
                epoch: 3,
                seq: 9,
            }),
        ),
        (
            "wire-replica-nack",
            w(Wire::ReplicaNack {
                from: node(2),
                name: "ABCDEF".into(),
                epoch: 3,
                why: ReplicaRefusal::Fenced,
            }),
        ),
        (
            "wire-fetch-replicas",
            w(Wire::FetchReplicas {
                from: node(3),
                id: 8,
                names: vec!["ABCDEF".into()],
            }),
        ),
        (
            "wire-replicas-found",
            w(Wire::ReplicasFound {
                from: node(2),
                id: 8,
                items: vec![replica()],
                members: None,
            }),
        ),
        (
            "wire-replicas-found-members",
            w(Wire::ReplicasFound {
                from: node(2),
                id: 8,
                items: vec![replica()],
                members: Some(vec![node(3), node(4)]),
            }),
        ),
        (
            "wire-handover",
            w(Wire::Handover {
                from: node(2),
                id: 9,
                items: vec![replica()],
            }),
        ),
        (
            "wire-handover-ack",
            w(Wire::HandoverAck {
                from: node(3),
                id: 9,
            }),
        ),
        (
            "wire-lease",
            w(Wire::Lease {
                from: node(1),
                round: 1_000,
                votes: vec![node(4)],
            }),
        ),
        (
            "wire-lease-grant",
            w(Wire::LeaseGrant {
                from: node(2),
                round: 1_000,
            }),
        ),
        (
            "wire-digest",
            w(Wire::Digest {
                from: node(1),
                buckets: (0..64).map(|b| b * 0x9e37_79b9).collect(),
            }),
        ),
        (
            "wire-repair",
            w(Wire::Repair {
                from: node(2),
                buckets: vec![0, 17, 63],
            }),
        ),
        (
            "wire-entries",
            w(Wire::Entries {
                from: node(1),
                nodes: vec![node(1)],
                entries: vec![entry("ABCDEF", 0, 4, false)],
            }),
        ),
        (
            "wire-reintroduce",
            w(Wire::Reintroduce(hello(MemberStatus::Joining))),
        ),
        (
            "wire-stop-child",
            w(Wire::StopChild(StopChild {
                name: "ABCDEF".into(),
            })),
        ),
        (
            "wire-collect",
            w(Wire::Collect {
                from: node(1),
                nodes: vec![node(1)],
                entries: vec![entry("GONE00", 0, 6, true)],
            }),
        ),
        (
            "wire-farewell-ack",
            w(Wire::FarewellAck {
                from: node(2),
                seq: 17,
            }),
        ),
        (
            "wire-lease-answer",
            w(Wire::LeaseAnswer {
                from: node(3),
                round: 1_001,
                granted: false,
                votes: vec![node(4)],
            }),
        ),
        (
            "reply-started-ok",
            I::Started(Started {
                result: Ok(node(2)),
            }),
        ),
        (
            "reply-started-refused",
            I::Started(Started {
                result: Err(StartRefusal::Full { limit: 100_000 }),
            }),
        ),
        ("reply-stopped", I::Stopped(Stopped { found: true })),
        ("reply-route-ok", I::RouteReply(RouteReply::Ok(vec![4, 2]))),
        ("reply-route-not-found", I::RouteReply(RouteReply::NotFound)),
        (
            "reply-route-unavailable",
            I::RouteReply(RouteReply::Unavailable(Unavailable::NoLease)),
        ),
        (
            "beacon-ping",
            I::Ping(PingRequest {
                from: node(1),
                mesh_known: Some(99),
            }),
        ),
        (
            "beacon-pong",
            I::Pong(PingReply {
                node: node(2),
                mesh: Some(MeshReport {
                    digest: 100,
                    peers: Some(vec![MeshPeer {
                        name: "minotaur@10.0.1.3".into(),
                        addr: "10.0.1.3:9000".parse().unwrap_or_else(|_| unreachable!()),
                    }]),
                }),
            }),
        ),
        (
            "console-request",
            I::ConsoleRequest(vec!["whereis".into(), "ABCDEF".into()]),
        ),
        (
            "console-response",
            I::ConsoleResponse(
                true,
                "minotaur@10.0.1.2".into(),
                "\"minotaur@10.0.1.2\"".into(),
            ),
        ),
        ("game-spec", I::GameSpec(spec())),
        (
            "game-msg-input",
            I::GameMsg(GameMsg::Input(Input::new(
                "ann",
                "a-9",
                Action::Move {
                    to: game::Hex { q: 1, r: -1 },
                },
            ))),
        ),
        ("game-msg-get", I::GameMsg(GameMsg::Get)),
        ("game-reply", I::GameReply(inputs()[..4].to_vec())),
        ("game-event", I::GameEvent(inputs()[..2].to_vec())),
        ("game-state-active", I::GameState(inputs()[..5].to_vec())),
        ("game-state-over", I::GameState(inputs())),
    ]
}

/// The game of the fixtures after `inputs` (one every 100 ms from 1 s), and a context at
/// [`STATE_AT_MS`].
pub fn game_after(inputs: &[Input]) -> (Session, Ctx<Session>) {
    let mut ctx = Ctx::for_test("ABCDEF", 1_000);
    let mut s = Session::start("ABCDEF", spec(), &mut ctx);
    for (i, input) in inputs.iter().enumerate() {
        let mut ctx = Ctx::for_test("ABCDEF", 1_000 + 100 * (i as u64 + 1));
        let _ = s.handle(GameMsg::Input(input.clone()), &mut ctx);
    }
    (s, Ctx::for_test("ABCDEF", STATE_AT_MS))
}

/// What `item` written by release `version` reads as in this build: the fields added since
/// take their defaults (0.1.0 wrote no protocol range in hellos and no frozen times in offers).
pub fn as_of(version: &str, item: Item) -> Item {
    if version != "0.1.0" {
        return item;
    }
    match item {
        Item::Wire(Wire::Hello(mut h)) => {
            h.max_protocol = None;
            Item::Wire(Wire::Hello(h))
        }
        Item::Wire(Wire::Reintroduce(mut h)) => {
            h.max_protocol = None;
            Item::Wire(Wire::Reintroduce(h))
        }
        Item::Wire(Wire::Offer {
            from, id, items, ..
        }) => Item::Wire(Wire::Offer {
            from,
            id,
            items,
            frozen_us: Vec::new(),
        }),
        other => other,
    }
}
