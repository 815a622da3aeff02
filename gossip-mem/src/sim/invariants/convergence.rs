//! After faults stop, all live nodes converge: every running node that has
//! not left knows every other one at its current generation, sees it Live,
//! and holds all of its updates.

use gossip_core::proto::Status;

use crate::sim::Sim;

/// Returns the first disagreement, if any.
pub fn check(sim: &Sim) -> Result<(), String> {
    let up: Vec<usize> = (0..sim.len())
        .filter(|&i| {
            sim.node(i).is_some_and(|n| {
                n.member(&n.id().name)
                    .is_some_and(|m| m.status == Status::Live)
            })
        })
        .collect();
    let truth: Vec<(String, u64, u64)> = up
        .iter()
        .filter_map(|&k| {
            let n = sim.node(k)?;
            let me = n.member(&n.id().name)?;
            Some((n.id().name.clone(), n.id().generation, me.max_version))
        })
        .collect();
    for &i in &up {
        let Some(n) = sim.node(i) else { continue };
        for (name, generation, mv) in &truth {
            match n.member(name) {
                None => return Err(format!("n{i} does not know {name}")),
                Some(m) if m.id.generation != *generation => {
                    return Err(format!(
                        "n{i} holds {name} at generation {}, not {generation}",
                        m.id.generation
                    ));
                }
                Some(m) if m.status != Status::Live => {
                    return Err(format!("n{i} sees {name} as {:?}", m.status));
                }
                Some(m) if m.max_version != *mv => {
                    return Err(format!(
                        "n{i} holds {name} up to version {}, not {mv}",
                        m.max_version
                    ));
                }
                Some(_) => {}
            }
        }
    }
    Ok(())
}
