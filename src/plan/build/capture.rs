//! Image captures: an image is captured from a STOPPED instance, so the source is stopped first
//! (after its own create, update or move) and, when it should run and `restart_source` is set,
//! started again after the capture.

use super::super::desired::Power;
use super::super::{Action, Change, Kind};
use super::{instance_running, Graph};

impl Graph<'_, '_> {
    /// Order every capture this plan makes after a stop of its source.
    pub(super) fn captures(&mut self) {
        let inp = self.inp;
        for d in inp.desired.iter().filter(|d| d.kind == Kind::Image) {
            let (Some(source), Some(_)) =
                (d.captured_from.as_deref(), self.recreated.get(&d.address))
            else {
                continue;
            };
            let Some(src) = self.by_addr.get(source).copied() else {
                continue;
            };
            let capture: Vec<usize> = self.node_of[&d.address]
                .iter()
                .copied()
                .filter(|&n| {
                    matches!(
                        self.nodes[n].change.action,
                        Action::Create | Action::Replace
                    )
                })
                .collect();
            let src_nodes = self.node_of.get(source).cloned().unwrap_or_default();
            let src_stop = src_nodes
                .iter()
                .copied()
                .find(|&n| self.nodes[n].change.action == Action::Stop);
            let src_start = src_nodes
                .iter()
                .copied()
                .find(|&n| self.nodes[n].change.action == Action::Start);
            let src_live_running = self.live_of(source).is_some_and(instance_running)
                && !self.recreated.contains_key(source);
            let will_run_before_capture =
                self.recreated.contains_key(source) || src_live_running || src_start.is_some();
            let stop = match src_stop {
                Some(s) => Some(s),
                None if will_run_before_capture => {
                    let s = self.push(Change {
                        address: source.to_string(),
                        kind: Kind::Instance,
                        region: None,
                        action: Action::Stop,
                        reason: format!(
                            "`{}` is captured from it: the source must be STOPPED",
                            d.address
                        ),
                        attributes: Vec::new(),
                        id: inp.prior.get(source).and_then(|p| p.id.clone()),
                        etag: self.live_of(source).and_then(|l| l.etag.clone()),
                        request: None,
                        inputs: None,
                        depends_on: Vec::new(),
                        deposed: false,
                        observed: None,
                        pending: false,
                    });
                    Some(s)
                }
                None => None,
            };
            if let Some(stop) = stop {
                // The stop comes after every other node of the source (create, update, move, start).
                let before: Vec<usize> = src_nodes
                    .iter()
                    .copied()
                    .filter(|&n| n != stop && Some(n) != src_start)
                    .collect();
                self.nodes[stop].after.extend(before);
                if let Some(start) = src_start {
                    // The source was stopped and should run: start it after the capture instead.
                    self.nodes[start].change.reason = format!(
                        "desired state is RUNNING (after `{}` is captured)",
                        d.address
                    );
                    self.nodes[start].after.extend(capture.iter().copied());
                }
                for &c in &capture {
                    self.nodes[c].after.push(stop);
                }
                if src.power == Some(Power::Running) && d.restart_source && src_start.is_none() {
                    let s = self.push(Change {
                        address: source.to_string(),
                        kind: Kind::Instance,
                        region: None,
                        action: Action::Start,
                        reason: format!(
                            "started again after `{}` is captured (`restart_source`)",
                            d.address
                        ),
                        attributes: Vec::new(),
                        id: inp.prior.get(source).and_then(|p| p.id.clone()),
                        etag: None,
                        request: None,
                        inputs: None,
                        depends_on: Vec::new(),
                        deposed: false,
                        observed: None,
                        pending: false,
                    });
                    self.nodes[s].after.extend(capture.iter().copied());
                    self.nodes[s].after.push(stop);
                }
            } else {
                for &c in &capture {
                    self.nodes[c].after.extend(src_nodes.iter().copied());
                }
            }
        }
    }
}
