//! [`Clients`]: whatever drives simulated clients (a service harness, a world's several
//! harnesses) and the one loop that runs a simulator with them.

use crate::app::App;
use crate::cluster::Sim;
use crate::event::ClientEvent;
use crate::queue::Micros;

/// A driver of simulated clients: it handles the events addressed to its clients.
pub trait Clients<A: App> {
    fn on_event(&mut self, sim: &mut Sim<A>, ev: ClientEvent<A::Response>);
}

/// Runs `sim` until `done(clients)` holds (checked after every batch of client events) or
/// virtual time `end`; returns whether `done` held.
pub fn run_clients<A: App, C: Clients<A>>(
    sim: &mut Sim<A>,
    clients: &mut C,
    end: Micros,
    done: impl Fn(&C) -> bool,
) -> bool {
    loop {
        if done(clients) {
            return true;
        }
        let events = sim.next_client_events(end);
        if events.is_empty() {
            return done(clients);
        }
        for ev in events {
            clients.on_event(sim, ev);
        }
    }
}
