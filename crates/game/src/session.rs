//! The game actor: one [`Game`] hosted by horde, with its round timer, its subscribers, and
//! its state schema for live moves between nodes.
//!
//! It owns the hosting glue only: every rule decision is [`Game::apply`] / [`Game::tick`].
//! The round deadline survives a move: the state carries the time it was packed on the old
//! node's clock, and [`Game::rebase`] sets the same time left on the new node's clock.
//!
//! Lifecycle ([`Lifecycle`]: `GAME_RETENTION_MS`, `GAME_IDLE_TIMEOUT_MS`): a game with no
//! applied input for the idle timeout becomes over (`ended: idle`), and a game that is over
//! stops itself after the retention, which removes its name from the cluster. Both clocks
//! are kept in the state as time elapsed (like the round deadline), so they survive moves
//! and failover; the game's one timer wakes it for whichever comes first.
//!
//! State schemas: v1 is `{game, packed_at_ms}`. A build with the `schema-v2` feature writes v2
//! (v1 plus a count of how many moves the game has made, a field a newer version needs) and
//! reads v1 and v2, which is what lets a rolling update hand v1 games to v2 code. Either is
//! followed by a [`Trailer`] (the lifecycle clocks): a build that predates it decodes the
//! state and ignores the bytes after it (postcard reads what it needs), and state without it
//! (from such a build) starts both clocks on arrival.

use std::sync::OnceLock;
use std::time::Duration;

use horde::{Child, Ctx, Handoff, HandoffError, Replication};
use serde::{Deserialize, Serialize};

use crate::{Game, GameView, Input, RuleError};

/// The app version of this build, as members report it: `MINOTAUR_APP_VERSION` at build time,
/// else the crate version.
pub const APP_VERSION: &str = match option_env!("MINOTAUR_APP_VERSION") {
    Some(v) if !v.is_empty() => v,
    _ => env!("CARGO_PKG_VERSION"),
};

/// The state schema this build writes.
#[cfg(not(feature = "schema-v2"))]
pub const STATE_SCHEMA: u16 = 1;
/// The state schema this build writes.
#[cfg(feature = "schema-v2")]
pub const STATE_SCHEMA: u16 = 2;

/// Default of `GAME_RETENTION_MS`: an over game stays readable this long.
pub const DEFAULT_RETENTION_MS: u64 = 300_000;
/// Default of `GAME_IDLE_TIMEOUT_MS`: a game with no applied input this long is over.
pub const DEFAULT_IDLE_TIMEOUT_MS: u64 = 1_800_000;

/// How long games live, for every game hosted by this process (set once at start).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lifecycle {
    /// An over game is removed this long after it ended.
    pub retention_ms: u64,
    /// A game with no applied input this long becomes over (`ended: idle`).
    pub idle_timeout_ms: u64,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Self {
            retention_ms: DEFAULT_RETENTION_MS,
            idle_timeout_ms: DEFAULT_IDLE_TIMEOUT_MS,
        }
    }
}

static LIFECYCLE: OnceLock<Lifecycle> = OnceLock::new();

/// Sets the lifecycle of the games this process hosts (the node does it once, from its
/// configuration, before it hosts any); later calls change nothing. Unset: the defaults.
pub fn set_lifecycle(l: Lifecycle) {
    let _ = LIFECYCLE.set(l);
}

/// How long the games this process hosts live ([`set_lifecycle`], else the defaults).
pub fn lifecycle() -> Lifecycle {
    LIFECYCLE.get().copied().unwrap_or_default()
}

/// Why a game ended other than by its rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Ended {
    /// Nobody played for the idle timeout.
    Idle,
}

impl Ended {
    /// As the state JSON shows it (`"ended": "idle"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Ended::Idle => "idle",
        }
    }
}

/// How to start a game (kept in the registry for restarts from scratch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GameSpec {
    /// The game's id.
    pub id: String,
    /// Its join code (also its registry name).
    pub code: String,
    /// Round length.
    pub round_ms: u64,
    /// Maze seed.
    pub seed: u64,
}

/// Messages to a game.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum GameMsg {
    /// Apply a player's input.
    Input(Input),
    /// Read the state.
    Get,
}

/// A game's state as answered: the client view plus where the game lives now.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Snapshot {
    /// The client view.
    pub view: GameView,
    /// The node hosting the game when it answered.
    pub node: String,
    /// State schema of the hosting build (observability of upgrades).
    pub schema: u16,
    /// How many times the game moved between nodes (known to schema v2 builds; 0 before).
    pub moves: u64,
    /// Why the game ended other than by its rules (`None` while it runs or when it ended
    /// by them). Last, and read as `None` when absent: a reply or event from a build that
    /// predates it still decodes (and that build ignores it), so a rolling update to this
    /// version keeps answering.
    #[serde(default, deserialize_with = "ended_or_none")]
    pub ended: Option<Ended>,
}

/// `ended`, or `None` when the bytes end before it (an older build's snapshot).
fn ended_or_none<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Ended>, D::Error> {
    Ok(Option::<Ended>::deserialize(d).unwrap_or(None))
}

/// The answer to a message.
pub type GameReply = Result<Snapshot, RuleError>;

/// The hosted game.
#[derive(Debug)]
pub struct Session {
    game: Game,
    /// Moves between nodes so far (only a v2 build counts them, and it carries them on).
    moves: u64,
    /// When an input was last applied (or the game started), host clock.
    last_input_ms: u64,
    /// When the game was first seen over, host clock.
    over_at_ms: Option<u64>,
    /// Why it ended, if not by its rules.
    ended: Option<Ended>,
}

/// The lifecycle clocks after the state of either schema, as time elapsed when packed.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize)]
struct Trailer {
    /// Milliseconds since the last applied input.
    idle_for_ms: u64,
    /// Milliseconds since the game was over, if it is.
    over_for_ms: Option<u64>,
    /// Why it ended, if not by its rules.
    ended: Option<Ended>,
}

/// Schema v1 of the state: the game and when it was packed (sender's clock). Packed from a
/// borrowed game (`G = &Game`: the snapshot after every input copies nothing), read as `Game`.
#[derive(Serialize, Deserialize)]
struct StateV1<G = Game> {
    game: G,
    packed_at_ms: u64,
}

/// Schema v2: v1 plus the move count.
#[derive(Serialize, Deserialize)]
struct StateV2<G = Game> {
    game: G,
    packed_at_ms: u64,
    moves: u64,
}

impl Session {
    fn snapshot(&self, ctx: &Ctx<Self>) -> Snapshot {
        Snapshot {
            view: self.game.view(ctx.now_ms()),
            node: ctx.node().to_string(),
            schema: STATE_SCHEMA,
            moves: self.moves,
            ended: self.ended,
        }
    }

    fn is_over(&self) -> bool {
        self.game.status() == crate::Status::Over
    }

    /// Notes when the game became over (once).
    fn note_over(&mut self, now_ms: u64) {
        if self.is_over() && self.over_at_ms.is_none() {
            self.over_at_ms = Some(now_ms);
        }
    }

    /// Arms the one timer for whatever comes first: the round deadline, the idle timeout,
    /// the end of the retention.
    fn arm(&self, ctx: &mut Ctx<Self>) {
        self.arm_for(ctx, lifecycle());
    }

    fn arm_for(&self, ctx: &mut Ctx<Self>, l: Lifecycle) {
        let now = ctx.now_ms();
        // One millisecond past the deadline so `tick` sees it passed.
        let round = self.game.deadline_in(now).map(|left| left + 1);
        let next = match self.over_at_ms {
            Some(at) => Some(at.saturating_add(l.retention_ms).saturating_sub(now)),
            None => {
                let idle = self
                    .last_input_ms
                    .saturating_add(l.idle_timeout_ms)
                    .saturating_sub(now);
                Some(round.map_or(idle, |r| r.min(idle)))
            }
        };
        if let Some(after) = next {
            ctx.set_timer(Duration::from_millis(after));
        }
    }

    fn trailer(&self, now_ms: u64) -> Trailer {
        Trailer {
            idle_for_ms: now_ms.saturating_sub(self.last_input_ms),
            over_for_ms: self.over_at_ms.map(|at| now_ms.saturating_sub(at)),
            ended: self.ended,
        }
    }

    /// The state bytes of schema `schema` followed by the trailer.
    fn pack(&self, schema: u16, ctx: &Ctx<Self>) -> Option<Vec<u8>> {
        let now = ctx.now_ms();
        let mut bytes = match schema {
            2 if STATE_SCHEMA >= 2 => postcard::to_stdvec(&StateV2 {
                game: &self.game,
                packed_at_ms: now,
                moves: self.moves,
            }),
            1 => postcard::to_stdvec(&StateV1 {
                game: &self.game,
                packed_at_ms: now,
            }),
            _ => return None,
        }
        .ok()?;
        bytes.extend(postcard::to_stdvec(&self.trailer(now)).ok()?);
        Some(bytes)
    }
}

impl Child for Session {
    type Spec = GameSpec;
    type Msg = GameMsg;
    type Reply = GameReply;
    type Event = Snapshot;

    fn start(_name: &str, spec: GameSpec, ctx: &mut Ctx<Self>) -> Self {
        let s = Session {
            game: Game::new(spec.id, spec.code, spec.round_ms, spec.seed),
            moves: 0,
            last_input_ms: ctx.now_ms(),
            over_at_ms: None,
            ended: None,
        };
        s.arm(ctx);
        s
    }

    /// A read ([`GameMsg::Get`]), a retried input and a refused one change nothing: they say
    /// so with [`Ctx::unchanged`], so horde sends no replica for them (a snapshot of the state
    /// goes to the backup only after a change) and answers them without waiting for one.
    fn handle(&mut self, msg: GameMsg, ctx: &mut Ctx<Self>) -> GameReply {
        match msg {
            GameMsg::Get => {
                ctx.unchanged();
                Ok(self.snapshot(ctx))
            }
            GameMsg::Input(input) => {
                let before = (self.game.seq(), self.game.deadline_ms());
                if let Err(e) = self.game.apply(ctx.now_ms(), input) {
                    ctx.unchanged();
                    return Err(e);
                }
                let applied = self.game.seq() != before.0;
                if applied {
                    self.last_input_ms = ctx.now_ms();
                    self.note_over(ctx.now_ms());
                }
                let snapshot = self.snapshot(ctx);
                if applied {
                    ctx.emit(snapshot.clone());
                    // The idle timeout starts again (and the round may have changed).
                    self.arm(ctx);
                } else {
                    // A retry of an input already applied: nothing new to replicate.
                    ctx.unchanged();
                    if self.game.deadline_ms() != before.1 {
                        self.arm(ctx);
                    }
                }
                Ok(snapshot)
            }
        }
    }

    fn timer(&mut self, ctx: &mut Ctx<Self>) {
        self.on_timer(ctx, lifecycle());
    }

    fn subscribed(&self, ctx: &Ctx<Self>) -> Option<Snapshot> {
        Some(self.snapshot(ctx))
    }

    fn replication() -> Replication {
        // Every applied input reaches the backup node before its answer leaves: a crash of
        // any one node loses no acknowledged input.
        Replication::BeforeReply
    }
}

impl Session {
    /// The timer with lifecycle `l`: the round deadline, the idle timeout, the end of the
    /// retention (the game stops itself then).
    fn on_timer(&mut self, ctx: &mut Ctx<Self>, l: Lifecycle) {
        let now = ctx.now_ms();
        let mut changed = self.game.tick(now);
        if !self.is_over() && now >= self.last_input_ms.saturating_add(l.idle_timeout_ms) {
            changed |= self.game.end_idle();
            self.ended = Some(Ended::Idle);
        }
        if self.over_at_ms.is_none() && self.is_over() {
            self.over_at_ms = Some(now);
            changed = true;
        }
        if self
            .over_at_ms
            .is_some_and(|at| now >= at.saturating_add(l.retention_ms))
        {
            // Retention over: the name is removed everywhere (a tombstone), and the backup
            // drops the state.
            ctx.stop();
            return;
        }
        if changed {
            let snapshot = self.snapshot(ctx);
            ctx.emit(snapshot);
        } else {
            ctx.unchanged();
        }
        self.arm_for(ctx, l);
    }
}

impl Handoff for Session {
    const SCHEMA: u16 = STATE_SCHEMA;

    fn dehydrate(&self, ctx: &Ctx<Self>) -> Vec<u8> {
        // A Game always encodes (plain data); an empty state would be refused by rehydrate.
        self.pack(STATE_SCHEMA, ctx).unwrap_or_default()
    }

    /// A v2 build also writes v1 (without the move count), for a node of the previous version
    /// during a rollback.
    fn writes() -> Vec<u16> {
        if STATE_SCHEMA >= 2 {
            vec![2, 1]
        } else {
            vec![1]
        }
    }

    fn dehydrate_as(&self, schema: u16, ctx: &Ctx<Self>) -> Option<Vec<u8>> {
        self.pack(schema, ctx)
    }

    fn rehydrate(
        _name: &str,
        schema: u16,
        state: &[u8],
        ctx: &mut Ctx<Self>,
    ) -> Result<Self, HandoffError> {
        let corrupt = |e: postcard::Error| HandoffError::Corrupt(e.to_string());
        let (mut game, packed_at_ms, moves, rest) = match schema {
            1 => {
                let (s, rest): (StateV1, _) = postcard::take_from_bytes(state).map_err(corrupt)?;
                (s.game, s.packed_at_ms, 0, rest)
            }
            2 if STATE_SCHEMA >= 2 => {
                let (s, rest): (StateV2, _) = postcard::take_from_bytes(state).map_err(corrupt)?;
                (s.game, s.packed_at_ms, s.moves, rest)
            }
            got => {
                return Err(HandoffError::UnknownSchema {
                    got,
                    supported: if STATE_SCHEMA >= 2 {
                        "v1, v2".into()
                    } else {
                        "v1".into()
                    },
                });
            }
        };
        game.rebase(packed_at_ms, ctx.now_ms());
        // State from a build without the trailer starts the lifecycle clocks now.
        let trailer: Trailer = if rest.is_empty() {
            Trailer::default()
        } else {
            postcard::from_bytes(rest).map_err(corrupt)?
        };
        let now = ctx.now_ms();
        let mut s = Session {
            game,
            // Only a v2 build counts moves.
            moves: if STATE_SCHEMA >= 2 { moves + 1 } else { 0 },
            last_input_ms: now.saturating_sub(trailer.idle_for_ms),
            over_at_ms: trailer.over_for_ms.map(|d| now.saturating_sub(d)),
            ended: trailer.ended,
        };
        s.note_over(now);
        s.arm(ctx);
        Ok(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Action, Status};

    fn spec() -> GameSpec {
        GameSpec {
            id: "g1".into(),
            code: "ABCDEF".into(),
            round_ms: 1000,
            seed: 1,
        }
    }

    #[test]
    fn inputs_emit_the_new_state_and_arm_the_round_timer() {
        let mut ctx = Ctx::for_test("ABCDEF", 0);
        let mut s = Session::start("ABCDEF", spec(), &mut ctx);
        assert_eq!(
            ctx.timer_requested(),
            Some(Duration::from_millis(DEFAULT_IDLE_TIMEOUT_MS)),
            "no round before two players: only the idle timeout"
        );
        let mut ctx = Ctx::for_test("ABCDEF", 10);
        s.handle(
            GameMsg::Input(Input::new("ann", "1", Action::Join)),
            &mut ctx,
        )
        .unwrap();
        let mut ctx = Ctx::for_test("ABCDEF", 20);
        let r = s
            .handle(
                GameMsg::Input(Input::new("bob", "2", Action::Join)),
                &mut ctx,
            )
            .unwrap();
        assert_eq!(r.view.status, Status::Active);
        assert_eq!(ctx.emitted().len(), 1);
        assert_eq!(ctx.timer_requested(), Some(Duration::from_millis(1001)));
        // A duplicate changes nothing and emits nothing.
        let mut ctx = Ctx::for_test("ABCDEF", 30);
        let r = s
            .handle(
                GameMsg::Input(Input::new("bob", "2", Action::Join)),
                &mut ctx,
            )
            .unwrap();
        assert_eq!(r.view.seq, 2);
        assert!(ctx.emitted().is_empty());
    }

    #[test]
    fn reads_retries_and_refusals_are_unchanged_and_applied_inputs_are_not() {
        let mut s = Session::start("ABCDEF", spec(), &mut Ctx::for_test("ABCDEF", 0));
        let mut handle = |msg: GameMsg| {
            let mut ctx = Ctx::for_test("ABCDEF", 5);
            let reply = s.handle(msg, &mut ctx);
            (reply.map(|r| r.view.seq), ctx.is_changed())
        };
        let join = |p: &str| GameMsg::Input(Input::new(p, format!("{p}-j"), Action::Join));
        assert_eq!(handle(GameMsg::Get), (Ok(0), false));
        assert_eq!(handle(join("ann")), (Ok(1), true));
        assert_eq!(handle(GameMsg::Get), (Ok(1), false));
        assert_eq!(handle(join("ann")), (Ok(1), false), "a retry");
        let leave = GameMsg::Input(Input::new("zed", "z", Action::Leave));
        assert!(!handle(leave).1, "a refusal");
    }

    /// Through horde's own child core, as a node hosts the game with a backup: an applied
    /// input sends a replica (a snapshot of the state) to the backup and its answer waits for
    /// the acknowledgement; a read sends none and is answered at once.
    #[test]
    fn a_read_sends_no_replica_to_the_backup() {
        use discovery::NodeId;
        use horde::core::child_core::{
            Answer, Body, ChildCore, ChildEffect, ChildEnv, ChildInput, Envelope, ReplicaAnswer,
        };
        use horde::core::{ChildCmd, Init};
        use std::time::Instant;

        let node = |name: &str| NodeId {
            name: name.into(),
            incarnation: 1,
        };
        let now = Instant::now();
        let env = ChildEnv::open();
        let init = Init::Fresh {
            spec: postcard::to_stdvec(&spec()).unwrap().into(),
        };
        let (mut core, _) =
            ChildCore::<Session, u32>::start("ABCDEF".into(), node("a"), now, now, init, 1, false)
                .unwrap();
        // Sorts a batch of effects into (replica seqs, answered tokens).
        let sort = |effects: Vec<ChildEffect<Session, u32>>| {
            let (mut replicas, mut answered) = (Vec::new(), Vec::new());
            for effect in effects {
                match effect {
                    ChildEffect::Replicate { replica, .. } => replicas.push(replica.seq),
                    ChildEffect::Reply {
                        to,
                        answer: Answer::Reply(Ok(_)),
                    } => answered.push(to),
                    _ => {}
                }
            }
            (replicas, answered)
        };
        let backup = Some((node("b"), STATE_SCHEMA));
        let out = core.on(
            now,
            ChildInput::Cmd(ChildCmd::Backup {
                node: backup,
                lazy: false,
            }),
            &env,
        );
        assert_eq!(
            sort(out),
            (vec![1], vec![]),
            "the first state goes to the backup"
        );
        let ack = |seq| {
            ChildInput::Replica(ReplicaAnswer::Ack {
                from: node("b"),
                epoch: 1,
                seq,
            })
        };
        core.on(now, ack(1), &env);
        let call = |msg: GameMsg, token: u32| {
            ChildInput::Message(Envelope {
                body: Body::Typed(msg),
                hops: 0,
                reply: Some(token),
            })
        };
        let join = GameMsg::Input(Input::new("ann", "a1", Action::Join));

        // An applied input: a replica, and the answer waits for it.
        let out = core.on(now, call(join.clone(), 1), &env);
        assert_eq!(sort(out), (vec![2], vec![]));
        assert_eq!(sort(core.on(now, ack(2), &env)), (vec![], vec![1]));
        // Reads: no replica, answered at once.
        for token in 2..5 {
            let out = core.on(now, call(GameMsg::Get, token), &env);
            assert_eq!(sort(out), (vec![], vec![token]), "read {token}");
        }
        // A retry: likewise.
        let out = core.on(now, call(join, 5), &env);
        assert_eq!(sort(out), (vec![], vec![5]));
        // The next change is change 3: the reads took no sequence number.
        let bob = GameMsg::Input(Input::new("bob", "b1", Action::Join));
        let out = core.on(now, call(bob, 6), &env);
        assert_eq!(sort(out), (vec![3], vec![]));
    }

    #[test]
    fn the_deadline_keeps_its_time_left_across_a_move() {
        let mut ctx = Ctx::for_test("ABCDEF", 0);
        let mut s = Session::start("ABCDEF", spec(), &mut ctx);
        s.handle(
            GameMsg::Input(Input::new("ann", "1", Action::Join)),
            &mut Ctx::for_test("ABCDEF", 0),
        )
        .unwrap();
        s.handle(
            GameMsg::Input(Input::new("bob", "2", Action::Join)),
            &mut Ctx::for_test("ABCDEF", 0),
        )
        .unwrap();
        // 400 ms into a 1000 ms round on the old node (clock at 5_000_400)...
        let packed = s.dehydrate(&Ctx::for_test("ABCDEF", 400));
        // ...arrives on a node whose clock reads 77.
        let mut ctx = Ctx::for_test("ABCDEF", 77);
        let moved = Session::rehydrate("ABCDEF", STATE_SCHEMA, &packed, &mut ctx).unwrap();
        assert_eq!(moved.game.deadline_in(77), Some(600));
        assert_eq!(ctx.timer_requested(), Some(Duration::from_millis(601)));
        assert_eq!(moved.game.seq(), 2);
    }

    #[test]
    fn a_snapshot_without_ended_decodes_and_older_builds_ignore_it() {
        /// A snapshot as builds before `ended` encode it.
        #[derive(Serialize, Deserialize)]
        struct Old {
            view: GameView,
            node: String,
            schema: u16,
            moves: u64,
        }
        let s = Session::start("ABCDEF", spec(), &mut Ctx::for_test("ABCDEF", 0));
        let ctx = Ctx::for_test("ABCDEF", 5);
        let mut new = s.snapshot(&ctx);
        let old = Old {
            view: new.view.clone(),
            node: new.node.clone(),
            schema: new.schema,
            moves: 3,
        };
        let reply: GameReply =
            postcard::from_bytes(&postcard::to_stdvec(&Ok::<Old, RuleError>(old)).unwrap())
                .unwrap();
        let read = reply.unwrap();
        assert_eq!((read.moves, read.ended), (3, None));
        new.ended = Some(Ended::Idle);
        let back: Snapshot = postcard::from_bytes(&postcard::to_stdvec(&new).unwrap()).unwrap();
        assert_eq!(back, new);
        let old: Old = postcard::from_bytes(&postcard::to_stdvec(&new).unwrap()).unwrap();
        assert_eq!(old.moves, new.moves);
    }

    const SHORT: Lifecycle = Lifecycle {
        retention_ms: 500,
        idle_timeout_ms: 2_000,
    };

    fn join(s: &mut Session, who: &str, id: &str, now: u64) {
        s.handle(
            GameMsg::Input(Input::new(who, id, Action::Join)),
            &mut Ctx::for_test("ABCDEF", now),
        )
        .unwrap();
    }

    #[test]
    fn an_idle_game_ends_idle_then_stops_after_the_retention() {
        let mut s = Session::start("ABCDEF", spec(), &mut Ctx::for_test("ABCDEF", 0));
        join(&mut s, "ann", "1", 100);
        // Not idle yet at 2_099 (the join at 100 counts).
        let mut ctx = Ctx::for_test("ABCDEF", 2_099);
        s.on_timer(&mut ctx, SHORT);
        assert!(!ctx.is_changed());
        assert_eq!(ctx.timer_requested(), Some(Duration::from_millis(1)));
        let mut ctx = Ctx::for_test("ABCDEF", 2_100);
        s.on_timer(&mut ctx, SHORT);
        assert!(ctx.is_changed());
        let snap = &ctx.emitted()[0];
        assert_eq!(snap.view.status, Status::Over);
        assert_eq!(snap.ended, Some(Ended::Idle));
        assert_eq!(ctx.timer_requested(), Some(Duration::from_millis(500)));
        assert!(!ctx.is_stopping());
        // Still readable during the retention; inputs are refused.
        assert!(
            s.handle(
                GameMsg::Input(Input::new("bob", "2", Action::Join)),
                &mut Ctx::for_test("ABCDEF", 2_300),
            )
            .is_err()
        );
        let mut ctx = Ctx::for_test("ABCDEF", 2_600);
        s.on_timer(&mut ctx, SHORT);
        assert!(
            ctx.is_stopping(),
            "the game stops itself once the retention is over"
        );
    }

    #[test]
    fn a_game_over_by_its_rules_stops_after_the_retention() {
        let mut s = Session::start("ABCDEF", spec(), &mut Ctx::for_test("ABCDEF", 0));
        join(&mut s, "ann", "1", 0);
        join(&mut s, "bob", "2", 0);
        let r = s
            .handle(
                GameMsg::Input(Input::new("bob", "3", Action::Leave)),
                &mut Ctx::for_test("ABCDEF", 50),
            )
            .unwrap();
        assert_eq!(r.view.status, Status::Over);
        assert_eq!(r.ended, None);
        let mut ctx = Ctx::for_test("ABCDEF", 549);
        s.on_timer(&mut ctx, SHORT);
        assert!(!ctx.is_stopping());
        let mut ctx = Ctx::for_test("ABCDEF", 550);
        s.on_timer(&mut ctx, SHORT);
        assert!(ctx.is_stopping());
    }

    #[test]
    fn the_lifecycle_clocks_survive_a_move_and_old_state_starts_them() {
        let mut s = Session::start("ABCDEF", spec(), &mut Ctx::for_test("ABCDEF", 0));
        join(&mut s, "ann", "1", 1_000);
        // Packed 1_500 ms after the last input on a clock at 2_500...
        let packed = s.dehydrate(&Ctx::for_test("ABCDEF", 2_500));
        // ...arrives where the clock reads 10_000: idle since 8_500 there.
        let mut ctx = Ctx::for_test("ABCDEF", 10_000);
        let mut moved = Session::rehydrate("ABCDEF", STATE_SCHEMA, &packed, &mut ctx).unwrap();
        assert_eq!(moved.last_input_ms, 8_500);
        let mut ctx = Ctx::for_test("ABCDEF", 10_500);
        moved.on_timer(&mut ctx, SHORT);
        assert_eq!(moved.ended, Some(Ended::Idle));
        // Over for 200 ms when it moves again: removed 300 ms after arriving.
        let packed = moved.dehydrate(&Ctx::for_test("ABCDEF", 10_700));
        let mut ctx = Ctx::for_test("ABCDEF", 1_050);
        let mut again = Session::rehydrate("ABCDEF", STATE_SCHEMA, &packed, &mut ctx).unwrap();
        assert_eq!(again.ended, Some(Ended::Idle));
        let mut ctx = Ctx::for_test("ABCDEF", 1_349);
        again.on_timer(&mut ctx, SHORT);
        assert!(!ctx.is_stopping());
        let mut ctx = Ctx::for_test("ABCDEF", 1_350);
        again.on_timer(&mut ctx, SHORT);
        assert!(ctx.is_stopping());
        // State without the trailer (an older build): both clocks start on arrival.
        let old = postcard::to_stdvec(&StateV1 {
            game: &s.game,
            packed_at_ms: 0,
        })
        .unwrap();
        let mut ctx = Ctx::for_test("ABCDEF", 7_000);
        let s = Session::rehydrate("ABCDEF", 1, &old, &mut ctx).unwrap();
        assert_eq!(
            (s.last_input_ms, s.over_at_ms, s.ended),
            (7_000, None, None)
        );
    }

    #[test]
    fn v1_state_is_read_and_unknown_schemas_refused() {
        let v1 = postcard::to_stdvec(&StateV1 {
            game: Game::new("g", "C", 1000, 3),
            packed_at_ms: 0,
        })
        .unwrap();
        let s = Session::rehydrate("C", 1, &v1, &mut Ctx::for_test("C", 0)).unwrap();
        assert_eq!(s.game.id(), "g");
        let err = Session::rehydrate("C", 9, &v1, &mut Ctx::for_test("C", 0)).unwrap_err();
        assert!(matches!(err, HandoffError::UnknownSchema { got: 9, .. }));
        assert!(Session::rehydrate("C", 1, b"garbage", &mut Ctx::for_test("C", 0)).is_err());
    }

    #[cfg(feature = "schema-v2")]
    #[test]
    fn v2_counts_moves_from_v1_state() {
        let v1 = postcard::to_stdvec(&StateV1 {
            game: Game::new("g", "C", 1000, 3),
            packed_at_ms: 0,
        })
        .unwrap();
        let s = Session::rehydrate("C", 1, &v1, &mut Ctx::for_test("C", 0)).unwrap();
        assert_eq!(s.moves, 1);
        let again = Session::rehydrate(
            "C",
            2,
            &s.dehydrate(&Ctx::for_test("C", 0)),
            &mut Ctx::for_test("C", 0),
        )
        .unwrap();
        assert_eq!(again.moves, 2);
    }
}
