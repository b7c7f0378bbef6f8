//! Talking to Redis: one reconnecting connection, scripts by SHA1 in pipelines (loaded again
//! after a restart emptied the script cache), every command counted.

use std::sync::Arc;

use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use redis::Value;

use super::config::ClusterConfig;
use super::scripts::{Script, Scripts};
use super::status::Counters;
use super::ClusterError;

/// One call in a pipeline: a script, or a plain command (`args` after its name).
#[derive(Clone, Debug)]
pub(crate) enum Call {
    Script {
        script: Script,
        keys: Vec<String>,
        args: Vec<String>,
    },
    Plain {
        name: &'static str,
        args: Vec<String>,
    },
}

impl Call {
    pub(crate) fn script(script: Script, keys: Vec<String>, args: Vec<String>) -> Self {
        Call::Script { script, keys, args }
    }

    pub(crate) fn plain(name: &'static str, args: Vec<String>) -> Self {
        Call::Plain { name, args }
    }
}

/// A call's reply: a script's array (a plain command's reply as one item), or the error
/// Redis answered for this call alone.
pub(crate) type Reply = Result<Vec<Value>, String>;

/// The node's connection.
#[derive(Clone)]
pub(crate) struct Io {
    con: ConnectionManager,
    scripts: Arc<Scripts>,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for Io {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Io").finish_non_exhaustive()
    }
}

impl Io {
    /// Connects (failing if Redis cannot be reached now); later failures reconnect.
    pub(crate) async fn connect(
        config: &ClusterConfig,
        counters: Arc<Counters>,
    ) -> Result<(Io, redis::Client), ClusterError> {
        let client = redis::Client::open(config.url.as_str())?;
        let manager = ConnectionManagerConfig::new()
            .set_response_timeout(Some(config.response_timeout))
            .set_connection_timeout(Some(config.response_timeout))
            .set_number_of_retries(1)
            .set_max_delay(config.max_backoff);
        let con = ConnectionManager::new_with_config(client.clone(), manager).await?;
        let io = Io {
            con,
            scripts: Arc::new(Scripts::new()),
            counters,
        };
        Ok((io, client))
    }

    /// Runs the calls in one pipeline. `Err` if the pipeline could not be sent or answered
    /// (Redis unreachable, a timeout); otherwise one reply per call, in order.
    pub(crate) async fn run(&self, calls: &[Call]) -> Result<Vec<Reply>, ClusterError> {
        if calls.is_empty() {
            return Ok(Vec::new());
        }
        let mut replies = self.send(calls).await?;
        let missing: Vec<usize> = (0..replies.len())
            .filter(|&i| matches!(&replies[i], Err(e) if e.starts_with("NOSCRIPT")))
            .collect();
        if !missing.is_empty() {
            // A restarted Redis has an empty script cache: load them and run those again.
            let mut con = self.con.clone();
            for script in Script::ALL {
                Counters::add(&self.counters.commands, 1);
                self.scripts.get(script).load_async(&mut con).await?;
            }
            let again: Vec<Call> = missing.iter().map(|&i| calls[i].clone()).collect();
            for (i, reply) in missing.into_iter().zip(self.send(&again).await?) {
                replies[i] = reply;
            }
        }
        Ok(replies)
    }

    async fn send(&self, calls: &[Call]) -> Result<Vec<Reply>, ClusterError> {
        let mut pipe = redis::pipe();
        pipe.ignore_errors();
        for call in calls {
            match call {
                Call::Script { script, keys, args } => {
                    pipe.cmd("EVALSHA")
                        .arg(self.scripts.get(*script).get_hash())
                        .arg(keys.len())
                        .arg(keys)
                        .arg(args);
                }
                Call::Plain { name, args } => {
                    pipe.cmd(name).arg(args);
                }
            }
        }
        let values = self.query(&pipe, calls.len()).await?;
        if values.len() != calls.len() {
            return Err(ClusterError::Protocol(format!(
                "{} replies to {} commands",
                values.len(),
                calls.len()
            )));
        }
        Ok(values
            .into_iter()
            .map(|v| match v {
                Value::Array(items) => Ok(items),
                Value::ServerError(e) => Err(format!("{} {}", e.code(), e.details().unwrap_or(""))),
                other => Ok(vec![other]),
            })
            .collect())
    }

    /// Sends a pipeline of plain commands; replies in order (server errors as values).
    pub(crate) async fn query(
        &self,
        pipe: &redis::Pipeline,
        commands: usize,
    ) -> Result<Vec<Value>, ClusterError> {
        Counters::add(&self.counters.commands, commands as u64);
        let mut con = self.con.clone();
        Ok(pipe.query_async(&mut con).await?)
    }

    /// Sends one plain command.
    pub(crate) async fn cmd<T: redis::FromRedisValue>(
        &self,
        cmd: &redis::Cmd,
    ) -> Result<T, ClusterError> {
        Counters::add(&self.counters.commands, 1);
        let mut con = self.con.clone();
        Ok(cmd.query_async(&mut con).await?)
    }
}

/// A reply item as text: bulk and simple strings, and integers.
pub(crate) fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        Value::Int(i) => Some(i.to_string()),
        Value::VerbatimString { text, .. } => Some(text.clone()),
        _ => None,
    }
}

/// A reply item as a number: integers and decimal strings.
pub(crate) fn num(v: Option<&Value>) -> Option<u64> {
    match v? {
        Value::Int(i) => u64::try_from(*i).ok(),
        other => text(Some(other))?.parse().ok(),
    }
}
