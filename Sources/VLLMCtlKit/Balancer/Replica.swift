import Foundation

/// One vLLM server behind a ``Balancer``: its address as the connector's far end sees it (a
/// compute node's address from the login node, or through the SSH session from a laptop).
public struct Replica: Hashable, Sendable, Codable, CustomStringConvertible {
    /// The host, without brackets around an IPv6 address.
    public var host: String
    /// The port the server listens on.
    public var port: Int

    /// The replica at `host:port`.
    public init(host: String, port: Int) {
        self.host = host
        self.port = port
    }

    /// `host:port`, with brackets around an IPv6 address: the `Host` header sent to it.
    public var description: String { URLTarget.hostPort(host, port) }
}

/// What a ``Balancer`` tunes; the defaults are the (health every 2 s, out after 2
/// failed checks, back after 1).
public struct BalancerSettings: Sendable {
    /// Seconds between two `GET /health` checks of one replica.
    public var healthInterval: Double = 2
    /// Seconds a health check may take (connection and answer).
    public var healthTimeout: Double = 2
    /// Seconds of ``healthTimeout`` within which a health check's connection must be made
    /// (through SSH: the channel open, i.e. the login node's connect to the replica). A server
    /// that is busy or slow still has its connections accepted at once by its host's kernel,
    /// so a check whose connection is not made in this time failed (its host or link is gone);
    /// a check whose connection is made has the rest of ``healthTimeout`` for its answer.
    public var healthConnectTimeout: Double = 1
    /// Seconds a replica with requests in flight may go without a response ending before it is
    /// checked at once instead of at the next interval (a node whose link is down refuses
    /// nothing: its requests just stall). Only a reason to look, never to take it out: the
    /// check decides. Checks triggered this way are at least this far apart.
    public var stalledCheckAfter: Double = 0.5
    /// Failed health checks in a row that take a replica out of rotation.
    public var failuresToLeave: Int = 2
    /// Successful health checks in a row that bring a replica back.
    public var successesToReturn: Int = 1
    /// Seconds to connect to a replica for a request.
    public var connectTimeout: Double = 5
    /// Seconds that bytes sent to a replica may stay unacknowledged by its host's TCP stack
    /// (`TCP_USER_TIMEOUT`, on ``DirectConnector``'s connections): then the connection fails
    /// and the replica is out of rotation at once, as for a refusal; a request that had no
    /// answer yet goes to another replica. A busy server's kernel still acknowledges at once,
    /// so this only fires when the host or its link is gone. The connections also send a
    /// keepalive probe after 1 s without traffic, so one that waits for an answer or sits idle
    /// in the pool fails the same way: a gateway sees such a host gone within about 2.5 s,
    /// whatever its traffic. 0: the kernel's default (about 15 minutes) and no probes.
    /// Connections through SSH are the login node's and have neither.
    public var unacknowledgedTimeout: Double = 1.5
    /// Seconds a replica may send nothing while a request is on it: before its response head
    /// (the request then gets 504 and is not sent elsewhere, since the replica may still be
    /// working on it) or between two parts of the response (the client's connection is then
    /// cut, as for any break mid-response). Either way the replica's connection is closed (vLLM
    /// aborts the generation) and the replica gets one strike, as for a failed health check.
    /// The default, 600 s, is the OpenAI SDK's own default timeout: a non-streamed completion
    /// sends nothing until it is whole, so this must be longer than the longest generation.
    public var readTimeout: Double = 600
    /// The largest request body the endpoint buffers (for failover); a larger request is
    /// answered 413 and its connection closed.
    public var maxBufferedBody: Int = 64 << 20
    /// Idle upstream connections kept per replica for reuse.
    public var maxIdlePerReplica: Int = 64
    /// Threads of the event loop group the balancer creates (when none is passed in).
    public var threads: Int = min(2, ProcessInfo.processInfo.activeProcessorCount)

    /// The defaults.
    public init() {}
}

/// Something that happened to the set of replicas: what the balancer logs.
public enum BalancerEvent: Sendable, Equatable, CustomStringConvertible {
    /// A replica was added by ``Balancer/setReplicas(_:)`` (or at start) and is in rotation.
    case joined(Replica)
    /// A replica was removed; requests already on it finish.
    case left(Replica)
    /// A replica stopped receiving requests: failed checks, or a refusal or reset seen on a
    /// request (`reason` says which).
    case outOfRotation(Replica, reason: String)
    /// A replica passed a health check and receives requests again.
    case backInRotation(Replica)
    /// A replica is draining: no new requests go to it.
    case draining(Replica)
    /// A draining replica has no request in flight any more.
    case drained(Replica)
    /// A health check could not tell (the connector failed on this side, e.g. the SSH session
    /// to the login node is down); the replica's state is left as it was.
    case unknown(Replica, reason: String)

    /// One line for a log.
    public var description: String {
        switch self {
        case .joined(let r): return "replica \(r) joined"
        case .left(let r): return "replica \(r) left"
        case .outOfRotation(let r, let reason): return "replica \(r) is out of rotation: \(reason)"
        case .backInRotation(let r): return "replica \(r) is back in rotation"
        case .draining(let r): return "replica \(r) is draining"
        case .drained(let r): return "replica \(r) is drained (no request in flight)"
        case .unknown(let r, let reason): return "replica \(r): health unknown (\(reason)); left as it was"
        }
    }
}

/// One replica's counters, as ``Balancer/snapshot()`` returns them and
/// `GET /vllmctl/replicas` serves them.
public struct ReplicaStats: Sendable, Codable, Equatable {
    /// The replica's host.
    public var host: String
    /// The replica's port.
    public var port: Int
    /// `in_rotation`, `out_of_rotation`, `draining` or `leaving` (removed, requests in flight).
    public var state: String
    /// Requests sent to it (each attempt counts, also one that failed over elsewhere).
    public var requests: Int
    /// Attempts that ended in a whole response below 500.
    public var successes: Int
    /// Attempts that failed: refused, reset, broken, no answer, or a 5xx response.
    public var failures: Int
    /// Requests on it now.
    public var inFlight: Int
    /// Attempts that ended in a whole response below 500, over all attempts that ended; nil
    /// before any.
    public var successRate: Double?
    /// Seconds from sending a request to its response head: mean over all requests.
    public var latencyMean: Double?
    /// Median of the last 1024.
    public var latencyP50: Double?
    /// 99th percentile of the last 1024.
    public var latencyP99: Double?
    /// Failed health checks in a row.
    public var consecutiveFailures: Int
    /// The last failure seen, in words.
    public var lastError: String?

    enum CodingKeys: String, CodingKey {
        case host, port, state, requests, successes, failures
        case inFlight = "in_flight"
        case successRate = "success_rate"
        case latencyMean = "latency_mean_s"
        case latencyP50 = "latency_p50_s"
        case latencyP99 = "latency_p99_s"
        case consecutiveFailures = "consecutive_failures"
        case lastError = "last_error"
    }

    /// The replica these counters are of.
    public var replica: Replica { Replica(host: host, port: port) }
}

/// What `GET /vllmctl/replicas` on a balancer's endpoint answers: `{"replicas": [...],
/// "in_rotation": N}`.
public struct ReplicasPage: Sendable, Codable, Equatable {
    /// Every replica's counters, in the order they joined.
    public var replicas: [ReplicaStats]
    /// How many replicas take requests now.
    public var inRotation: Int

    /// The page for `replicas`.
    public init(replicas: [ReplicaStats]) {
        self.replicas = replicas
        inRotation = replicas.filter { $0.state == "in_rotation" }.count
    }

    enum CodingKeys: String, CodingKey {
        case replicas
        case inRotation = "in_rotation"
    }
}
