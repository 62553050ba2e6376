//! lunet-core: the engine under lunet. No Lua lives here.
//!
//! Threads (see `shared/DESIGN.md`): one reactor (mio + timer wheel), N
//! workers (work stealing over services), the lane (blocking tasks) and the
//! monitor. A *service* is the scheduled unit; what runs inside it (a Lua VM)
//! is supplied by the layer above through the [`service::ServiceBody`] trait.

pub mod shared_dict;
pub mod timer_wheel;
