//! Starting services from one script, as `lunet serve` starts its hosts,
//! `lunet run` its first service and `lunet load --script` its clients:
//! build each VM, spawn it, post its start, then wait until every main
//! chunk has returned.

use std::sync::{mpsc, Arc};
use std::time::Duration;

use lunet_core::{Event, Message, Runtime};
use mlua::Lua;

use crate::host::{BuildError, LuaService, Script, StartError};
use crate::protocol::MessageKind;
use crate::settings::Settings;

/// A service of the launch could not be built.
#[derive(Debug, thiserror::Error)]
#[error("cannot build service {name} from {script}")]
pub struct LaunchError {
    pub name: String,
    pub script: String,
    #[source]
    pub source: Box<BuildError>,
}

/// Where the main chunks of a launch are.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Progress {
    /// Every main chunk has returned.
    Started,
    /// `started` of them have returned; the others are still running.
    Waiting { started: usize },
    /// Every service that had not reported has exited (`lunet.exit()` in
    /// its main chunk) without an error: no more reports will come.
    Gone { started: usize },
}

/// Services started from one script, whose main chunks run.
pub struct Launch {
    ids: Vec<u64>,
    startup: mpsc::Receiver<Result<(), StartError>>,
    started: usize,
}

/// Builds one service per name in `names` from `script`, trusted (full
/// standard library, every capability, `settings.host_memory` as its
/// memory bound, protected from sandboxed services' `lunet.kill`), spawns
/// it and posts its start. `setup(index, lua)`
/// runs on each fresh VM before the script is compiled (the way an embedder
/// adds modules of its own; see [`LuaService::with_setup`]).
pub fn launch(
    runtime: &Runtime,
    script: &Script,
    settings: &Arc<Settings>,
    names: &[String],
    setup: &dyn Fn(usize, &Lua) -> mlua::Result<()>,
) -> Result<Launch, LaunchError> {
    let (sender, startup) = mpsc::channel();
    let mut ids = Vec::with_capacity(names.len());
    for (index, name) in names.iter().enumerate() {
        let built = LuaService::with_setup(
            runtime,
            name,
            settings.clone(),
            script,
            Some(sender.clone()),
            &|lua: &Lua| setup(index, lua),
        );
        let body = match built {
            Ok(body) => body,
            Err(source) => {
                // A launch is whole or nothing: the services started so far
                // stop (a reload that fails leaves the old hosts alone).
                for id in &ids {
                    if let Some(service) = runtime.service(*id) {
                        runtime.kill(&service, Message::signal(MessageKind::Kill.code()));
                    }
                }
                return Err(LaunchError {
                    name: name.clone(),
                    script: script.path.clone(),
                    source: Box::new(source),
                });
            }
        };
        let service = runtime.spawn_service(name, Box::new(body));
        // Hosts and first services: a sandbox may not kill them.
        runtime.protect(service.id());
        runtime.post(
            &service,
            Event::Message(Message::signal(MessageKind::Start.code())),
        );
        ids.push(service.id());
    }
    Ok(Launch {
        ids,
        startup,
        started: 0,
    })
}

impl Launch {
    /// The handles of the services, in the order of their names.
    pub fn ids(&self) -> &[u64] {
        &self.ids
    }

    /// Waits until every main chunk has returned, at most `timeout` (`None`:
    /// as long as it takes). The first main chunk that fails ends the wait
    /// with its error.
    pub fn wait(&mut self, timeout: Option<Duration>) -> Result<Progress, StartError> {
        let deadline = timeout.and_then(|t| std::time::Instant::now().checked_add(t));
        while self.started < self.ids.len() {
            let report = match deadline {
                None => self
                    .startup
                    .recv()
                    .map_err(|_| mpsc::RecvTimeoutError::Disconnected),
                Some(deadline) => self
                    .startup
                    .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now())),
            };
            match report {
                Ok(Ok(())) => self.started += 1,
                Ok(Err(e)) => return Err(e),
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    return Ok(Progress::Waiting {
                        started: self.started,
                    })
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    return Ok(Progress::Gone {
                        started: self.started,
                    })
                }
            }
        }
        Ok(Progress::Started)
    }
}
