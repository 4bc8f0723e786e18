//! The one Redis handle the booking code holds: a single node ([`ConnectionManager`]) or a Redis
//! Cluster ([`ClusterConnection`]), chosen by `redis.cluster_nodes`. Both are cheap to clone and
//! reconnect on their own; [`RedisConn`] implements [`ConnectionLike`] by delegation, so commands,
//! pipelines and scripts are written once.
//!
//! What a cluster asks of the callers (and the calendar, locks, waitlists and idempotency keys
//! keep): every Lua script's keys are passed in `KEYS` and share one hash tag, and every pipeline
//! touches one slot ([`RedisConn::by_slot`] splits a batch that does not). A `SCAN` sees one node,
//! so [`RedisConn::scan`] asks every master. Scripts run by [`RedisConn::eval`]: `EVALSHA`, then
//! `EVAL` with the source where the node lacks it, never the cluster client's `SCRIPT LOAD` (it
//! sends that to every node, so it fails while a dead master is still in its map: a failover);
//! [`RedisConn::load_scripts`] warms each master's cache at start, one master at a time.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, Slot, SlotAddr};
use redis::{
    Cmd, ConnectionInfo, ErrorKind, FromRedisValue, Pipeline, RedisError, RedisFuture, Script,
    ServerErrorKind, Value,
};

/// How long the readiness check waits on one seed of a cluster (see [`RedisConn::check`]).
const SEED_TIMEOUT: Duration = Duration::from_millis(500);

/// `CLUSTER INFO` from one node, on a connection of its own, within [`SEED_TIMEOUT`].
async fn cluster_info(seed: ConnectionInfo) -> Result<String, String> {
    let ask = async {
        let client = redis::Client::open(seed)?;
        let config = redis::AsyncConnectionConfig::new()
            .set_connection_timeout(Some(SEED_TIMEOUT))
            .set_response_timeout(Some(SEED_TIMEOUT));
        let mut connection = client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        redis::cmd("CLUSTER")
            .arg("INFO")
            .query_async::<String>(&mut connection)
            .await
    };
    match tokio::time::timeout(SEED_TIMEOUT, ask).await {
        Ok(answer) => answer.map_err(|error| error.to_string()),
        Err(_) => Err(format!("no answer within {SEED_TIMEOUT:?}")),
    }
}

/// A single Redis node or a Redis Cluster.
#[derive(Clone)]
pub enum RedisConn {
    Single(ConnectionManager),
    /// The cluster client, and the seeds the readiness check asks directly.
    Cluster(ClusterConnection, Arc<[ConnectionInfo]>),
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            RedisConn::Single(connection) => connection.req_packed_command(cmd),
            RedisConn::Cluster(connection, _) => connection.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            RedisConn::Single(connection) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
            RedisConn::Cluster(connection, _) => {
                connection.req_packed_commands(pipeline, offset, count)
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            RedisConn::Single(connection) => connection.get_db(),
            RedisConn::Cluster(connection, _) => connection.get_db(),
        }
    }
}

impl RedisConn {
    /// Groups `items` (each a key and what to do with it) so that each group may go in one
    /// pipeline: one group on a single node, one per hash slot on a cluster. Items keep their
    /// order within a group.
    pub fn by_slot<T>(&self, items: Vec<(String, T)>) -> Vec<Vec<(String, T)>> {
        group_by_slot(matches!(self, RedisConn::Cluster(..)), items)
    }

    /// Where a command for every node goes: the node (`None`), or a slot of each master.
    async fn masters(&self) -> Result<Vec<Option<u16>>, RedisError> {
        Ok(match self {
            RedisConn::Single(_) => vec![None],
            RedisConn::Cluster(connection, _) => master_slots(&mut connection.clone())
                .await?
                .into_iter()
                .map(Some)
                .collect(),
        })
    }

    /// Loads `sources` into the script cache of the node, or of each master of the cluster
    /// (one by one, not the cluster client's `SCRIPT LOAD` to every node at once). A replica that
    /// just started does it before it listens: otherwise every request of its first herd sends
    /// `EVALSHA`, gets `NOSCRIPT` and sends the script again. [`RedisConn::eval`] does not depend
    /// on it.
    pub async fn load_scripts(&self, sources: &[&str]) -> Result<(), RedisError> {
        for slot in self.masters().await? {
            for source in sources {
                let mut command = redis::cmd("SCRIPT");
                command.arg("LOAD").arg(*source);
                self.on_master_of(command, slot).await?;
            }
        }
        Ok(())
    }

    /// Every key matching `pattern`: `SCAN` on the node, or on every master of the cluster.
    pub async fn scan(&self, pattern: &str) -> Result<Vec<String>, RedisError> {
        let mut keys = Vec::new();
        for slot in self.masters().await? {
            let mut cursor: u64 = 0;
            loop {
                let mut command = redis::cmd("SCAN");
                command
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(pattern)
                    .arg("COUNT")
                    .arg(1000);
                let reply = self.on_master_of(command, slot).await?;
                let (next, batch) = <(u64, Vec<String>)>::from_redis_value(reply)?;
                keys.extend(batch);
                if next == 0 {
                    break;
                }
                cursor = next;
            }
        }
        Ok(keys)
    }

    /// `command` on the node, or on a cluster on the master of `slot` (a random node without).
    async fn on_master_of(&self, command: Cmd, slot: Option<u16>) -> Result<Value, RedisError> {
        match (self, slot) {
            (RedisConn::Cluster(connection, _), Some(slot)) => {
                let route = Route::new(slot, SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                connection.clone().route_command(command, routing).await
            }
            _ => command.query_async(&mut self.clone()).await,
        }
    }

    /// Runs `script` (whose source is `source`) on `keys` with `args`: `EVALSHA`, and `EVAL` on
    /// a node that does not have it yet (a new master after a failover, a restarted node).
    pub async fn eval<T: FromRedisValue>(
        &self,
        script: &Script,
        source: &str,
        keys: &[String],
        args: &[String],
    ) -> Result<T, RedisError> {
        let command = |name: &str, head: &str| {
            let mut command = redis::cmd(name);
            command.arg(head).arg(keys.len()).arg(keys).arg(args);
            command
        };
        let mut connection = self.clone();
        match command("EVALSHA", script.get_hash())
            .query_async(&mut connection)
            .await
        {
            Err(error) if error.kind() == ErrorKind::Server(ServerErrorKind::NoScript) => {
                command("EVAL", source).query_async(&mut connection).await
            }
            answer => answer,
        }
    }

    /// Whether Redis can take commands now: `PING` on a node; on a cluster, `CLUSTER INFO` says
    /// `cluster_state:ok` (every slot served by a reachable master).
    pub async fn check(&self) -> Result<(), String> {
        match self {
            RedisConn::Single(connection) => {
                let mut connection = connection.clone();
                let reply = redis::cmd("PING")
                    .query_async::<String>(&mut connection)
                    .await
                    .map_err(|error| error.to_string())?;
                if reply == "PONG" {
                    Ok(())
                } else {
                    Err(format!("PING returned {reply:?}"))
                }
            }
            RedisConn::Cluster(_, seeds) => {
                // Asked of the seeds directly, in order, on a connection of its own: the cluster
                // client may be busy refreshing its slot map after a failover (it keeps trying a
                // dead master), and readiness is about the cluster, not about that.
                let mut info = Err("no seed answered".to_owned());
                for seed in seeds.iter() {
                    info = cluster_info(seed.clone()).await;
                    if info.is_ok() {
                        break;
                    }
                }
                let info = info?;
                let state = info
                    .lines()
                    .find_map(|line| line.trim().strip_prefix("cluster_state:"))
                    .unwrap_or("missing");
                if state == "ok" {
                    Ok(())
                } else {
                    Err(format!("cluster_state is {state:?}"))
                }
            }
        }
    }
}

/// One slot per master (the first of its first range), from `CLUSTER SLOTS`: routing a command
/// to that slot's master reaches each master once.
async fn master_slots(connection: &mut ClusterConnection) -> Result<Vec<u16>, RedisError> {
    let ranges: Vec<Value> = redis::cmd("CLUSTER")
        .arg("SLOTS")
        .query_async(connection)
        .await?;
    let mut by_master: BTreeMap<String, u16> = BTreeMap::new();
    for range in ranges {
        let Value::Array(fields) = range else {
            continue;
        };
        let (Some(start), Some(Value::Array(master))) = (fields.first(), fields.get(2)) else {
            continue;
        };
        let Ok(start) = u16::from_redis_value_ref(start) else {
            continue;
        };
        // [host, port, id, ...]: the id names the master; host and port if an old server has none.
        let name = master
            .iter()
            .take(3)
            .map(|field| String::from_redis_value_ref(field).unwrap_or_default())
            .collect::<Vec<_>>()
            .join(" ");
        by_master
            .entry(name)
            .and_modify(|slot| *slot = (*slot).min(start))
            .or_insert(start);
    }
    Ok(by_master.into_values().collect())
}

fn group_by_slot<T>(cluster: bool, items: Vec<(String, T)>) -> Vec<Vec<(String, T)>> {
    if items.is_empty() {
        return Vec::new();
    }
    if !cluster {
        return vec![items];
    }
    let mut groups: HashMap<Slot, Vec<(String, T)>> = HashMap::new();
    for (key, item) in items {
        groups
            .entry(Slot::for_key(key.as_bytes()))
            .or_default()
            .push((key, item));
    }
    groups.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_batch_is_split_by_hash_slot_and_a_node_batch_is_not() {
        let items: Vec<(String, usize)> = [
            "avail:{AVZ:JKT01/a1}:202612",
            "avail:{AVZ:JKT01/a2}:202612",
            "avail:{AVZ:JKT01/a1}:202701",
            "avail-built",
        ]
        .into_iter()
        .enumerate()
        .map(|(index, key)| (key.to_owned(), index))
        .collect();
        assert_eq!(group_by_slot(false, items.clone()), vec![items.clone()]);
        let mut groups: Vec<Vec<usize>> = group_by_slot(true, items)
            .into_iter()
            .map(|group| group.into_iter().map(|(_, index)| index).collect())
            .collect();
        groups.sort();
        // a1's two months share their tag's slot, in order; a2 and the marker have their own.
        assert_eq!(groups, [vec![0, 2], vec![1], vec![3]]);
        assert!(group_by_slot::<()>(true, Vec::new()).is_empty());
        assert!(group_by_slot::<()>(false, Vec::new()).is_empty());
    }
}
