//! The messages the scripts publish: `1|user|epoch|version|from|to|sessions|last seen|at|cause|node`.

use presence_tracker::Presence;

use super::feed::ClusterCause;

/// One published cluster transition, parsed; the user still encoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Message<'a> {
    pub(crate) user: &'a str,
    pub(crate) epoch: u64,
    pub(crate) version: u64,
    pub(crate) from: Presence,
    pub(crate) to: Presence,
    pub(crate) sessions: usize,
    pub(crate) last_seen: u64,
    pub(crate) at: u64,
    pub(crate) cause: ClusterCause,
}

/// A presence from its digit in Redis.
pub(crate) fn presence(digit: u64) -> Option<Presence> {
    Presence::ALL.get(usize::try_from(digit).ok()?).copied()
}

/// The digit of a presence in Redis (its rank, offline 0).
pub(crate) fn digit(p: Presence) -> u8 {
    Presence::ALL.iter().position(|&q| q == p).unwrap_or(0) as u8
}

impl<'a> Message<'a> {
    /// The message, or `None` if it is not one of ours (another version, garbage).
    pub(crate) fn parse(text: &'a str) -> Option<Self> {
        let mut f = text.split('|');
        if f.next()? != "1" {
            return None;
        }
        let user = f.next().filter(|u| !u.is_empty())?;
        let mut n = || f.next()?.parse::<u64>().ok();
        let (epoch, version) = (n()?, n()?);
        let (from, to) = (presence(n()?)?, presence(n()?)?);
        let sessions = usize::try_from(n()?).ok()?;
        let (last_seen, at) = (n()?, n()?);
        let cause = match f.next()? {
            "c" => ClusterCause::Claim,
            "p" => ClusterCause::Update,
            "d" => ClusterCause::Drop,
            "x" => ClusterCause::Expired,
            _ => return None,
        };
        let _node = f.next()?;
        if f.next().is_some() {
            return None;
        }
        Some(Message {
            user,
            epoch,
            version,
            from,
            to,
            sessions,
            last_seen,
            at,
            cause,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_parses_and_garbage_does_not() {
        let m = Message::parse("1|ada|17|3|0|4|2|1000|2000|c|n1").expect("parses");
        assert_eq!((m.user, m.epoch, m.version), ("ada", 17, 3));
        assert_eq!(
            (m.from, m.to, m.sessions),
            (Presence::Offline, Presence::Active, 2)
        );
        assert_eq!(m.cause, ClusterCause::Claim);
        for bad in [
            "",
            "hello",
            "2|ada|17|3|0|4|2|1000|2000|c|n1",
            "1|ada|17|3|0|9|2|1000|2000|c|n1",
            "1|ada|x|3|0|4|2|1000|2000|c|n1",
            "1|ada|17|3|0|4|2|1000|2000|q|n1",
            "1|ada|17|3|0|4|2|1000|2000|c|n1|extra",
            "1||17|3|0|4|2|1000|2000|c|n1",
        ] {
            assert_eq!(Message::parse(bad), None, "{bad}");
        }
        for p in Presence::ALL {
            assert_eq!(presence(u64::from(digit(p))), Some(p));
        }
    }
}
