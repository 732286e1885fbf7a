//! The simulated network: delays, losses, cut-off nodes, and the transport failures a
//! requester sees.

use super::*;

impl Sim {
    pub(super) fn send(
        &mut self,
        from: NodeId,
        to: NodeId,
        incarnation: u64,
        request: RequestId,
        body: Body,
    ) {
        let lost = self.chaos && self.rng.chance(10);
        let sender_cut = from != CONTROLLER && !self.node_ref(from).reachable();
        if lost || sender_cut {
            // The requester's transport times out (a lost request, or a lost reply).
            if let Some(failure) = body.transport_failure() {
                let requester = if body.is_request() { from } else { to };
                self.net.push(Msg {
                    at: self.now + REQUEST_TIMEOUT,
                    from: to,
                    to: requester,
                    incarnation,
                    request,
                    body: failure,
                    local: true,
                });
            }
            return;
        }
        let at = self.now + ms(1 + self.rng.below(20));
        self.net.push(Msg {
            at,
            from,
            to,
            incarnation,
            request,
            body,
            local: false,
        });
    }

    pub(super) fn deliver_due(&mut self) {
        let now = self.now;
        let (mut due, rest): (Vec<Msg>, Vec<Msg>) = self.net.drain(..).partition(|m| m.at <= now);
        self.net = rest;
        for i in (1..due.len()).rev() {
            let j = usize::try_from(self.rng.below(i as u64 + 1)).unwrap();
            due.swap(i, j);
        }
        for msg in due {
            self.handle(msg);
        }
    }

    pub(super) fn handle(&mut self, msg: Msg) {
        if msg.to == CONTROLLER {
            if let Body::Alter(proposal) = msg.body {
                self.apply_alter(proposal);
            }
            return;
        }
        let to = self.node_ref(msg.to);
        if !to.alive || (to.isolated && !msg.local) {
            // A request or reply that cannot arrive: the requester's transport times out (a
            // dead requester has forgotten it).
            if let Some(failure) = msg.body.transport_failure() {
                let requester = if msg.body.is_request() {
                    msg.from
                } else {
                    msg.to
                };
                self.net.push(Msg {
                    at: self.now + REQUEST_TIMEOUT,
                    to: requester,
                    from: msg.to,
                    body: failure,
                    local: true,
                    ..msg
                });
            }
            return;
        }
        match msg.body {
            Body::AlterRejected(proposal, refusal) => {
                let now = self.now;
                if let Some(leader) = &mut self.node(msg.to).leader {
                    leader.on_alter_partition_refused(&proposal, refusal, now);
                }
                self.run_leader(msg.to);
            }
            ref body if body.is_request() => {
                let reply = self.serve(msg.to, msg.from, body);
                self.send(msg.to, msg.from, msg.incarnation, msg.request, reply);
            }
            _ => self.on_reply(msg),
        }
    }
}
