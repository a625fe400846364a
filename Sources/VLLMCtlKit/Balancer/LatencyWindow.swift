/// Times to response head: the mean over all, percentiles over the last `capacity`.
struct LatencyWindow: Sendable {
    private var ring: [Double] = []
    private var next = 0
    private(set) var count = 0
    private var sum = 0.0
    let capacity: Int

    init(capacity: Int = 1024) { self.capacity = capacity }

    mutating func add(_ seconds: Double) {
        count += 1
        sum += seconds
        if ring.count < capacity {
            ring.append(seconds)
        } else {
            ring[next] = seconds
            next = (next + 1) % capacity
        }
    }

    var mean: Double? { count == 0 ? nil : sum / Double(count) }

    /// The nearest-rank percentile `p` (0…100) of the kept samples.
    func percentile(_ p: Double) -> Double? {
        guard !ring.isEmpty else { return nil }
        let sorted = ring.sorted()
        let rank = Int((p / 100 * Double(sorted.count)).rounded(.up))
        return sorted[min(max(rank, 1), sorted.count) - 1]
    }
}
