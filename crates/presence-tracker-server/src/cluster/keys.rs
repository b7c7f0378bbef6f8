//! Key names: the layout of the module docs, in one place.

/// The keys of one deployment (one prefix).
#[derive(Clone, Debug)]
pub(crate) struct Keys {
    prefix: String,
    pub(crate) gen: String,
    pub(crate) leases: String,
    pub(crate) reap: String,
    pub(crate) tick: String,
    pub(crate) channel: String,
    pub(crate) room_channel: String,
}

impl Keys {
    pub(crate) fn new(prefix: &str) -> Self {
        Keys {
            prefix: prefix.to_owned(),
            gen: format!("{prefix}:{{c}}:gen"),
            leases: format!("{prefix}:{{c}}:leases"),
            reap: format!("{prefix}:{{c}}:reap"),
            tick: format!("{prefix}:{{c}}:tick"),
            channel: format!("{prefix}:events"),
            room_channel: format!("{prefix}:rooms"),
        }
    }

    /// The cluster-wide user hash of an encoded user id.
    pub(crate) fn user(&self, user: &str) -> String {
        format!("{}:{{u:{user}}}", self.prefix)
    }

    /// The user's sessions hash.
    pub(crate) fn sessions(&self, user: &str) -> String {
        format!("{}:{{u:{user}}}:s", self.prefix)
    }

    /// The owner record of an encoded session id.
    pub(crate) fn owner(&self, session: &str) -> String {
        format!("{}:{{s:{session}}}", self.prefix)
    }

    /// The users a node claimed sessions for.
    pub(crate) fn node_users(&self, node: &str) -> String {
        format!("{}:{{n:{node}}}:u", self.prefix)
    }

    /// A room's hash (epoch, version) of an encoded room id.
    pub(crate) fn room(&self, room: &str) -> String {
        format!("{}:{{r:{room}}}", self.prefix)
    }

    /// A room's members: user → presence, sessions, digest of their metadata.
    pub(crate) fn room_members(&self, room: &str) -> String {
        format!("{}:{{r:{room}}}:m", self.prefix)
    }

    /// One member's sessions in a room.
    pub(crate) fn room_sessions(&self, room: &str, user: &str) -> String {
        format!("{}:{{r:{room}}}:u:{user}", self.prefix)
    }

    /// The rooms and users a node wrote sessions for, as `room|user`.
    pub(crate) fn node_rooms(&self, node: &str) -> String {
        format!("{}:{{n:{node}}}:r", self.prefix)
    }

    /// The `SCAN` pattern of every room hash.
    pub(crate) fn room_pattern(&self) -> String {
        format!("{}:{{r:*}}", self.prefix)
    }

    /// The encoded room id of a room hash's key; `None` for any other key.
    pub(crate) fn room_of_key<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{r:")?
            .strip_suffix('}')
            .filter(|r| !r.contains(['{', '}']))
    }

    /// The `SCAN` pattern of every user hash (not the sessions hashes, which end in `:s`).
    pub(crate) fn user_pattern(&self) -> String {
        format!("{}:{{u:*}}", self.prefix)
    }

    /// The encoded user id of a user hash's key; `None` for any other key.
    pub(crate) fn user_of_key<'k>(&self, key: &'k str) -> Option<&'k str> {
        key.strip_prefix(self.prefix.as_str())?
            .strip_prefix(":{u:")?
            .strip_suffix('}')
            .filter(|u| !u.contains(['{', '}']))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_user_key_reads_back_and_others_do_not() {
        let keys = Keys::new("pt");
        assert_eq!(keys.user("ada"), "pt:{u:ada}");
        assert_eq!(keys.user_of_key("pt:{u:ada}"), Some("ada"));
        assert_eq!(keys.user_of_key("pt:{u:ada}:s"), None);
        assert_eq!(keys.user_of_key("pt:{u:a}b}"), None);
        assert_eq!(keys.user_of_key("other:{u:ada}"), None);
        assert_eq!(keys.room_of_key(&keys.room("doc")), Some("doc"));
        assert_eq!(keys.room_of_key(&keys.room_members("doc")), None);
    }
}
