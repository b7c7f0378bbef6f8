//! The presence-accuracy simulator (work in progress).
