//! SPDY/3.1 as Kubernetes uses it: the frame codec (`codec`) and the
//! session that multiplexes streams over one connection (`session`).

pub mod codec;
pub mod session;

pub use codec::*;
pub use session::*;
