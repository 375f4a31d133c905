//! Carrying out the core's effects: sends (to a peer's member, or its router for the data
//! plane), spawns of hosted children, commands to them, replies, events.

use super::*;

impl<C: Handoff> Member<C> {
    pub(super) fn member_of(state: &MemberState<C>, to: &discovery::NodeId) -> Option<MemberRef> {
        state
            .links
            .get(&to.name)
            .filter(|l| l.peer.id == *to)
            .and_then(|l| l.member.clone())
    }

    /// Where a message to `to` goes: backups' answers to the owner's router (the data plane,
    /// which hands them to the child), everything else to its member.
    pub(super) fn send(state: &MemberState<C>, to: &discovery::NodeId, env: Envelope, data: bool) {
        let link = state.links.get(&to.name).filter(|l| l.peer.id == *to);
        let target = match (data, link) {
            (true, Some(l)) => l
                .router
                .clone()
                .map(|r| ActorRef::<MemberMsg<LocalMsg>>::from(r.get_cell())),
            (false, Some(l)) => l.member.clone(),
            (_, None) => None,
        };
        if let Some(t) = target {
            let _ = t.cast(MemberMsg::Cast(env));
        }
    }

    pub(super) async fn execute(
        &self,
        myself: &ActorRef<MemberMsg<LocalMsg>>,
        state: &mut MemberState<C>,
        effects: Vec<Effect<Token>>,
        queue: &mut VecDeque<Input<Token>>,
    ) {
        let mut effects = effects.into_iter().peekable();
        while let Some(effect) = effects.next() {
            match effect {
                Effect::Send { to, wire } => {
                    let data = matches!(wire, Wire::ReplicaAck { .. } | Wire::ReplicaNack { .. });
                    match crate::protocol::encode_wire(&wire) {
                        Ok(env) => Self::send(state, &to, env, data),
                        Err(error) => warn!(%error, "cannot encode horde message"),
                    }
                }
                Effect::Broadcast { to, wire } => {
                    let env = match crate::protocol::encode_wire(&wire) {
                        Ok(env) => env,
                        Err(error) => {
                            warn!(%error, "cannot encode horde message");
                            continue;
                        }
                    };
                    for n in to {
                        if let Some(m) = Self::member_of(state, &n) {
                            let _ = m.cast(MemberMsg::Cast(env.clone()));
                        }
                    }
                }
                Effect::Spawn {
                    name,
                    init,
                    epoch,
                    pending,
                } => {
                    // Consecutive spawns (an offer's batch) start at once: each is a task
                    // switch, not CPU work.
                    let mut batch = vec![(name, init, epoch, pending)];
                    while let Some(Effect::Spawn { .. }) = effects.peek() {
                        if let Some(Effect::Spawn {
                            name,
                            init,
                            epoch,
                            pending,
                        }) = effects.next()
                        {
                            batch.push((name, init, epoch, pending));
                        }
                    }
                    self.spawn_batch(myself, state, batch, queue).await;
                }
                Effect::Serve { name } => {
                    if let Some(h) = state.children.get_mut(&name) {
                        h.pending = false;
                        state.dirty = true;
                    }
                }
                Effect::Forget { name } => {
                    if state.children.remove(&name).is_some() {
                        state.dirty = true;
                    }
                }
                Effect::ToChild { name, cmd } => {
                    if let Some(a) = state.actors.get(&name) {
                        let _ = a.cast(HostedMsg(crate::core::child_core::ChildInput::Cmd(cmd)));
                    }
                }
                Effect::Reply { to, reply } => match to {
                    Token::Local(tx) => {
                        let _ = tx.send(reply);
                    }
                    Token::Remote(port) => match reply {
                        Reply::Started(result) => reply_to(port, &Started { result }),
                        Reply::Stopped(found) => reply_to(port, &Stopped { found }),
                        Reply::Drained(_) => {}
                    },
                },
                Effect::Conflict(report) => {
                    if let Some(hook) = &self.shared.on_conflict {
                        hook(report);
                    }
                }
                Effect::Event(e) => self.shared.emit(e),
                Effect::NeedPeers => {
                    if let Some(f) = &self.need_peers {
                        f();
                    }
                }
            }
        }
    }

    pub(super) async fn spawn_batch(
        &self,
        myself: &ActorRef<MemberMsg<LocalMsg>>,
        state: &mut MemberState<C>,
        batch: Vec<(Arc<str>, crate::core::Init, u64, bool)>,
        queue: &mut VecDeque<Input<Token>>,
    ) {
        let t = now();
        let mut starts = Vec::new();
        for (name, init, epoch, pending) in batch {
            match ChildCore::<C, ReplyTo<C>>::start(
                name.clone(),
                self.shared.me.clone(),
                self.shared.clock,
                t,
                init,
                epoch,
                pending,
            ) {
                Ok((core, first)) => starts.push((name, core, first, pending)),
                Err(e) => queue.push_back(Input::Spawned {
                    name,
                    result: Err(e),
                }),
            }
        }
        let spawned =
            futures::future::join_all(starts.into_iter().map(|(name, core, first, pending)| {
                let hosted = Hosted {
                    name: name.clone(),
                    shared: self.shared.clone(),
                    member: myself.clone(),
                };
                async move {
                    // Linked: a panicking child is this actor's to restart.
                    let result =
                        Actor::spawn_linked(None, hosted, (core, first), myself.get_cell())
                            .await
                            .map(|(a, _)| a);
                    (name, pending, result)
                }
            }))
            .await;
        for (name, pending, result) in spawned {
            match result {
                Ok(actor) => {
                    state.hosting(name.clone(), actor.clone());
                    state
                        .children
                        .insert(name.clone(), Hosting { actor, pending });
                    state.dirty = true;
                    queue.push_back(Input::Spawned {
                        name,
                        result: Ok(()),
                    });
                }
                Err(e) => queue.push_back(Input::Spawned {
                    name,
                    result: Err(SpawnError::Actor(e.to_string())),
                }),
            }
        }
    }
}
