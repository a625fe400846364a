/// How one attempt of a request on a replica ended, as the table counts it.
enum AttemptOutcome: Sendable, Equatable {
    /// A whole response came back; `headSeconds` after sending.
    case responded(status: Int, headSeconds: Double)
    /// The response started, then the connection broke.
    case broken(status: Int, headSeconds: Double, reason: String)
    /// Refused, or reset/closed before any response byte: the replica leaves at once.
    case refused(String)
    /// No answer (a connect timeout): one strike, like a failed health check.
    case unanswered(String)
    /// Not the replica's doing: the connector failed on this side, or the client left.
    case notCounted
}

/// What a health check saw.
enum HealthOutcome: Sendable, Equatable {
    case healthy
    case unhealthy(String)
    /// The check could not reach the replica for a reason on this side: no change.
    case unknown(String)
}

/// One replica's state and counters.
struct ReplicaState: Sendable {
    var inRotation = true
    var draining = false
    /// Removed by `setReplicas`, kept while requests are in flight.
    var leaving = false
    var consecutiveFailures = 0
    var consecutiveSuccesses = 0
    var inFlight = 0
    var requests = 0
    var failures = 0
    var successes = 0
    var latency = LatencyWindow()
    var lastError: String?
    /// When (``MonotonicClock``, ns) the replica last showed progress: a response from it ended
    /// (whole or broken), or it got a request while it had none in flight.
    var lastProgress: UInt64 = 0

    var takesRequests: Bool { inRotation && !draining && !leaving }
}

/// The replicas, their rotation state and counters: every decision of the balancer that is
/// not I/O, so it is tested without a network. Each mutation returns the events it caused.
struct ReplicaTable: Sendable {
    private(set) var order: [Replica] = []
    private(set) var states: [Replica: ReplicaState] = [:]
    let failuresToLeave: Int
    let successesToReturn: Int

    init(failuresToLeave: Int = 2, successesToReturn: Int = 1) {
        self.failuresToLeave = max(failuresToLeave, 1)
        self.successesToReturn = max(successesToReturn, 1)
    }

    /// Makes `replicas` the set: new ones join (in rotation until seen otherwise), missing ones
    /// leave (at once when idle, else once their last request ends).
    mutating func set(_ replicas: [Replica]) -> [BalancerEvent] {
        var events: [BalancerEvent] = []
        let wanted = Set(replicas)
        for r in order where !wanted.contains(r) {
            guard var s = states[r], !s.leaving else { continue }
            s.leaving = true
            states[r] = s
            events.append(.left(r))
        }
        for r in replicas {
            if var s = states[r] {
                if s.leaving {
                    s.leaving = false
                    states[r] = s
                    events.append(.joined(r))
                }
            } else {
                states[r] = ReplicaState()
                order.append(r)
                events.append(.joined(r))
            }
        }
        removeIdleLeavers()
        return events
    }

    /// Whether `replica` is in the set (not leaving).
    func isMember(_ replica: Replica) -> Bool { states[replica].map { !$0.leaving } ?? false }

    /// The replica for the next attempt: least requests in flight among those in rotation and
    /// not in `excluding`, ties broken at random; counts the attempt.
    mutating func pick(
        excluding: Set<Replica>, using rng: inout some RandomNumberGenerator,
        now: UInt64 = MonotonicClock.now()
    ) -> Replica? {
        // One pass, nothing allocated: the k-th replica tied for least keeps the choice with
        // probability 1/k, so each of the tied ones is chosen alike.
        var chosen: Replica?
        var least = Int.max
        var ties = 0
        for r in order where !excluding.contains(r) {
            guard let s = states[r], s.takesRequests else { continue }
            if s.inFlight < least {
                least = s.inFlight
                chosen = r
                ties = 1
            } else if s.inFlight == least {
                ties += 1
                if Int.random(in: 0..<ties, using: &rng) == 0 { chosen = r }
            }
        }
        guard let chosen else { return nil }
        if states[chosen]?.inFlight == 0 { states[chosen]?.lastProgress = now }
        states[chosen]?.inFlight += 1
        states[chosen]?.requests += 1
        return chosen
    }

    /// Whether any replica takes requests now.
    var anyInRotation: Bool { states.values.contains { $0.takesRequests } }

    /// Records how an attempt picked by `pick` ended.
    mutating func finish(_ replica: Replica, _ outcome: AttemptOutcome, now: UInt64 = MonotonicClock.now())
        -> [BalancerEvent]
    {
        guard var s = states[replica] else { return [] }
        s.inFlight = max(s.inFlight - 1, 0)
        var events: [BalancerEvent] = []
        switch outcome {
        case .responded(let status, let head):
            s.lastProgress = now
            s.latency.add(head)
            if status >= 500 {
                s.failures += 1
                s.lastError = "answered \(status)"
            } else {
                s.successes += 1
            }
        case .broken(_, let head, let reason):
            s.lastProgress = now
            s.latency.add(head)
            s.failures += 1
            s.lastError = reason
        case .refused(let reason):
            s.failures += 1
            s.lastError = reason
            s.consecutiveSuccesses = 0
            s.consecutiveFailures = max(s.consecutiveFailures, failuresToLeave)
            if s.inRotation {
                s.inRotation = false
                events.append(.outOfRotation(replica, reason: reason))
            }
        case .unanswered(let reason):
            s.failures += 1
            s.lastError = reason
            events += strike(&s, replica, reason)
        case .notCounted:
            s.requests = max(s.requests - 1, 0)
        }
        states[replica] = s
        if s.draining && s.inFlight == 0 && !s.leaving { events.append(.drained(replica)) }
        removeIdleLeavers()
        return events
    }

    /// A connection to `replica` that carried no request failed because its host stopped
    /// acknowledging (an idle pooled connection's keepalive probe): out of rotation at once, as
    /// for a refusal, and nothing else counted (no request was on it).
    mutating func hostGone(_ replica: Replica, reason: String) -> [BalancerEvent] {
        guard var s = states[replica], !s.leaving else { return [] }
        s.lastError = reason
        s.consecutiveSuccesses = 0
        s.consecutiveFailures = max(s.consecutiveFailures, failuresToLeave)
        var events: [BalancerEvent] = []
        if s.inRotation {
            s.inRotation = false
            events.append(.outOfRotation(replica, reason: reason))
        }
        states[replica] = s
        return events
    }

    /// Records a health check.
    mutating func health(_ replica: Replica, _ outcome: HealthOutcome) -> [BalancerEvent] {
        guard var s = states[replica], !s.leaving else { return [] }
        var events: [BalancerEvent] = []
        switch outcome {
        case .healthy:
            s.consecutiveFailures = 0
            s.consecutiveSuccesses += 1
            if !s.inRotation && s.consecutiveSuccesses >= successesToReturn {
                s.inRotation = true
                events.append(.backInRotation(replica))
            }
        case .unhealthy(let reason):
            s.lastError = reason
            events += strike(&s, replica, reason)
        case .unknown(let reason):
            events.append(.unknown(replica, reason: reason))
        }
        states[replica] = s
        return events
    }

    /// Stops new requests to `replica`; `.drained` comes at once when it is idle.
    mutating func drain(_ replica: Replica) -> [BalancerEvent] {
        guard var s = states[replica], !s.leaving, !s.draining else { return [] }
        s.draining = true
        states[replica] = s
        return s.inFlight == 0 ? [.draining(replica), .drained(replica)] : [.draining(replica)]
    }

    /// Whether `replica` takes requests, has some in flight, and none of its attempts has ended
    /// for `seconds` (nor has it got its first request in that time): its host may have gone
    /// silent (a node whose link is down refuses nothing), so it is worth a health check now
    /// rather than at the next interval. Only a reason to look: the check decides.
    func isStalled(_ replica: Replica, for seconds: Double, now: UInt64 = MonotonicClock.now()) -> Bool {
        guard let s = states[replica], s.takesRequests, s.inFlight > 0 else { return false }
        return now >= s.lastProgress && Double(now - s.lastProgress) / 1e9 >= seconds
    }

    /// Requests in flight on `replica`; nil once it is gone.
    func inFlight(_ replica: Replica) -> Int? { states[replica]?.inFlight }

    /// Whether `replica` takes new requests now.
    func isInRotation(_ replica: Replica) -> Bool {
        states[replica].map { $0.inRotation && !$0.draining && !$0.leaving } ?? false
    }

    /// The counters of every replica, in the order they joined.
    func snapshot() -> [ReplicaStats] {
        order.compactMap { r in
            guard let s = states[r] else { return nil }
            let ended = s.successes + s.failures
            let state =
                s.leaving
                ? "leaving" : s.draining ? "draining" : s.inRotation ? "in_rotation" : "out_of_rotation"
            return ReplicaStats(
                host: r.host, port: r.port, state: state, requests: s.requests, successes: s.successes,
                failures: s.failures,
                inFlight: s.inFlight, successRate: ended == 0 ? nil : Double(s.successes) / Double(ended),
                latencyMean: s.latency.mean, latencyP50: s.latency.percentile(50),
                latencyP99: s.latency.percentile(99), consecutiveFailures: s.consecutiveFailures,
                lastError: s.lastError)
        }
    }

    private mutating func strike(_ s: inout ReplicaState, _ replica: Replica, _ reason: String)
        -> [BalancerEvent]
    {
        s.consecutiveSuccesses = 0
        s.consecutiveFailures += 1
        guard s.inRotation, s.consecutiveFailures >= failuresToLeave else { return [] }
        s.inRotation = false
        return [.outOfRotation(replica, reason: reason)]
    }

    private mutating func removeIdleLeavers() {
        let gone = order.filter { states[$0].map { $0.leaving && $0.inFlight == 0 } ?? false }
        guard !gone.isEmpty else { return }
        for r in gone { states[r] = nil }
        order.removeAll { gone.contains($0) }
    }
}
