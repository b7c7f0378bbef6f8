//! Who a connection speaks for: the application's decision, never the client's claim.

use crate::wire::Refusal;

/// What a connection is, once the application has looked at its handshake.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Identity<U> {
    /// A signed-in user: its sessions count towards its presence.
    User(U),
    /// An observer: receives the state and its updates, has no presence of its own, and may
    /// send no signal (a dashboard, a status page). The integrations refuse it unless the hub
    /// takes watchers ([`HubConfig::watchers`](crate::HubConfig::watchers)).
    Watcher,
}

/// What a connection brought: its HTTP handshake (headers with cookies, the URI with its
/// query) and the token of its hello, if any.
#[derive(Clone, Copy, Debug)]
#[non_exhaustive]
pub struct Handshake<'a> {
    /// The upgrade request's headers (`Cookie`, `Authorization`, ...).
    pub headers: &'a http::HeaderMap,
    /// The upgrade request's URI.
    pub uri: &'a http::Uri,
    /// The `token` of the client's [`Hello`](crate::wire::Hello).
    pub token: Option<&'a str>,
}

impl<'a> Handshake<'a> {
    /// A handshake of these parts.
    pub fn new(headers: &'a http::HeaderMap, uri: &'a http::Uri, token: Option<&'a str>) -> Self {
        Handshake {
            headers,
            uri,
            token,
        }
    }

    /// The value of cookie `name`, if the handshake carries it.
    pub fn cookie(&self, name: &str) -> Option<&'a str> {
        self.headers
            .get_all(http::header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .filter_map(|pair| pair.trim().split_once('='))
            .find_map(|(k, v)| (k == name).then_some(v))
    }

    /// The bearer token of the `Authorization` header, or else the hello's token.
    pub fn bearer(&self) -> Option<&'a str> {
        self.headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .or(self.token)
    }
}

/// What a connection asks of a room.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RoomAccess {
    /// Its session joins the room (in a hello, or with a `join`): the room's members see it
    /// there, and it sees them.
    Join,
    /// It watches the room: it sees the members, and nobody sees it there.
    Watch,
}

/// The application's hook that decides who a connection is, from its [`Handshake`], and
/// which rooms it may join or watch.
///
/// Implemented for closures (which let every connection into every room). Refuse with a
/// [`Refusal`] (code `unauthorized`): the connection is closed with it and nothing is recorded.
///
/// Who may see whom is the application's decision: a room is a document, a channel, a call,
/// with its own readers. Implement [`authorize_room`](Self::authorize_room) on a type of
/// your own to decide it; by default every connection may join (users) and watch (everyone)
/// every room.
///
/// # Examples
///
/// ```
/// use presence_tracker_server::{wire::Refusal, Authenticate, Handshake, Identity};
///
/// // Users by a session cookie; anyone else may watch.
/// let auth = |h: &Handshake<'_>| -> Result<Identity<String>, Refusal> {
///     match h.cookie("sid") {
///         Some("s3cret-ada") => Ok(Identity::User("ada".to_string())),
///         Some(_) => Err(Refusal::new("unauthorized", "unknown session cookie")),
///         None => Ok(Identity::Watcher),
///     }
/// };
/// let mut headers = http::HeaderMap::new();
/// headers.insert(http::header::COOKIE, "theme=dark; sid=s3cret-ada".parse().unwrap());
/// let uri = http::Uri::from_static("/presence");
/// assert_eq!(auth.authenticate(&Handshake::new(&headers, &uri, None)), Ok(Identity::User("ada".into())));
/// ```
pub trait Authenticate<U>: Send + Sync + 'static {
    /// Who the connection is.
    ///
    /// # Errors
    ///
    /// A [`Refusal`] when the connection may not connect at all.
    fn authenticate(&self, handshake: &Handshake<'_>) -> Result<Identity<U>, Refusal>;

    /// Whether `identity` may join or watch `room` (a watcher never joins: that is refused
    /// before this is asked). Asked at every hello that names the room, every `join` and every
    /// `watch`; a refused one is sent its [`Refusal`] (code `forbidden` by convention) and
    /// nothing changes.
    ///
    /// # Errors
    ///
    /// A [`Refusal`] when it may not. The default allows everything.
    ///
    /// # Examples
    ///
    /// ```
    /// use presence_tracker_server::{wire::Refusal, Authenticate, Handshake, Identity, RoomAccess};
    ///
    /// /// Signed-in users by a cookie; only members of the team see `team-*` rooms.
    /// struct Teams;
    /// impl Authenticate<String> for Teams {
    ///     fn authenticate(&self, h: &Handshake<'_>) -> Result<Identity<String>, Refusal> {
    ///         Ok(h.cookie("user").map_or(Identity::Watcher, |u| Identity::User(u.to_string())))
    ///     }
    ///     fn authorize_room(&self, who: &Identity<String>, room: &str, _: RoomAccess) -> Result<(), Refusal> {
    ///         match (who, room.strip_prefix("team-")) {
    ///             (_, None) => Ok(()),
    ///             (Identity::User(user), Some(team)) if user.ends_with(&format!("@{team}")) => Ok(()),
    ///             _ => Err(Refusal::new("forbidden", "not your team's room")),
    ///         }
    ///     }
    /// }
    /// assert!(Teams.authorize_room(&Identity::User("ada@blue".into()), "team-blue", RoomAccess::Join).is_ok());
    /// assert!(Teams.authorize_room(&Identity::Watcher, "team-blue", RoomAccess::Watch).is_err());
    /// ```
    fn authorize_room(
        &self,
        identity: &Identity<U>,
        room: &str,
        access: RoomAccess,
    ) -> Result<(), Refusal> {
        let _ = (identity, room, access);
        Ok(())
    }

    /// Whether `identity` may be sent `user`'s presence: asked for each user a connection
    /// subscribes to (its hello's `users`, each `subscribe`). The users refused are left out of
    /// the subscription, and the connection is sent one [`Refusal`] (code `forbidden`) saying
    /// how many.
    ///
    /// # Errors
    ///
    /// A [`Refusal`] when it may not. The default allows everything.
    ///
    /// # Examples
    ///
    /// ```
    /// use presence_tracker_server::{wire::Refusal, Authenticate, Handshake, Identity};
    ///
    /// /// Signed-in users see each other; a watcher sees nobody.
    /// struct SignedIn;
    /// impl Authenticate<String> for SignedIn {
    ///     fn authenticate(&self, h: &Handshake<'_>) -> Result<Identity<String>, Refusal> {
    ///         Ok(h.cookie("user").map_or(Identity::Watcher, |u| Identity::User(u.to_string())))
    ///     }
    ///     fn authorize_user(&self, who: &Identity<String>, _user: &String) -> Result<(), Refusal> {
    ///         match who {
    ///             Identity::User(_) => Ok(()),
    ///             _ => Err(Refusal::new("forbidden", "sign in to see who is online")),
    ///         }
    ///     }
    /// }
    /// assert!(SignedIn.authorize_user(&Identity::Watcher, &"ada".to_string()).is_err());
    /// ```
    fn authorize_user(&self, identity: &Identity<U>, user: &U) -> Result<(), Refusal> {
        let _ = (identity, user);
        Ok(())
    }
}

impl<U, F> Authenticate<U> for F
where
    F: Fn(&Handshake<'_>) -> Result<Identity<U>, Refusal> + Send + Sync + 'static,
{
    fn authenticate(&self, handshake: &Handshake<'_>) -> Result<Identity<U>, Refusal> {
        self(handshake)
    }
}
